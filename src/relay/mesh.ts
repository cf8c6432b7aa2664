/**
 * The relay's mesh: links to the other relays of the store (at most one in use per pair, see
 * `#pick`), dialed on demand when a client here wants a device another relay holds, and
 * accepted at /v1/mesh from relays that prove the mesh key (src/protocol/mesh.ts). A relay
 * without `--mesh-key` has a mesh that refuses every dial and reaches no peer.
 *
 * The two sides of a forwarded tunnel: here, `target()` gives the client's RelayStream a stream
 * on the link to the holding relay as its device side; there, `#serve` joins that stream (as a
 * client link) to a RelayStream on the device's own link. Both relays check the credit
 * arithmetic and pass credit on only for bytes written to the next socket.
 *
 * Growing windows cross the mesh unchanged: the client's relay offers the client's maxWindow in
 * the mesh OPEN, the holding relay grows only if the device can too and says so in its OPENED,
 * and the client's relay narrows its stream to that answer before the client's OPENED goes out.
 * So both relays, the client and the device agree per stream, and BLOCKED passes end to end.
 */
import {
  decodeFrame,
  encodeOpened,
  encodeReset,
  FrameType,
  MAX_FRAME_SIZE,
  ResetCode,
  STREAM_WINDOW,
  SUBPROTOCOL,
} from "../protocol/frame.ts";
import {
  encodeMeshHello,
  MESH_PATH,
  type MeshOpen,
  parseDial,
  parseMeshHello,
} from "../protocol/mesh.ts";
import { CloseCode, type FrameLink } from "../transport/link.ts";
import { openWebSocket, UpgradeRefused } from "../transport/ws_client.ts";
import { NO_PROXY_SETTING } from "../transport/proxy.ts";
import { Upgrade } from "../transport/http_server.ts";
import { DEAD_AFTER } from "../transport/keepalive.ts";
import { log } from "../shared/log.ts";
import type { DeviceRecord } from "../store/types.ts";
import { checkProtocol, HttpError, isUpgrade } from "./http.ts";
import type { RelayContext } from "./context.ts";
import type { RemoteLink } from "./whereabouts.ts";
import { type Budget, RelayStream } from "./tunnel.ts";
import { MeshKey } from "./mesh_auth.ts";
import { MeshLink } from "./mesh_link.ts";

/** Where a client tunnel's stream is opened: a device session here, or a mesh link. */
export interface StreamTarget {
  /** Streams open now (limits are checked where the device is). */
  readonly streamCount: number;
  /** Opens the relay has not had answered yet. */
  readonly pendingOpens: number;
  /** Whether the device side may grow windows (a mesh peer settles it in its OPENED). */
  readonly windows: boolean;
  /** What the device side's streams may hold here beyond their initial windows, if bounded. */
  readonly budget?: Budget;
  /** Opens the tunnel's stream; false if it cannot (at a limit, link closing). */
  open(tunnel: RelayStream): boolean;
}

// The link carries every stream between two relays; per-stream windows bound honest traffic
// far below this, so this much queued means the peer stopped reading.
const MESH_MAX_QUEUED = 128 * 1024 * 1024;
const DIAL_TIMEOUT_MS = 5_000; // a peer on the relays' network answers well within this

/** This relay's links to its peers. */
export class Mesh {
  #ctx: RelayContext;
  #key: MeshKey | null;
  #links = new Map<string, Set<MeshLink>>();
  #dialing = new Map<string, Promise<MeshLink>>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `secret` is the mesh key (`--mesh-key`); without it the relay forwards nothing. */
  constructor(ctx: RelayContext, secret: string | undefined) {
    this.#ctx = ctx;
    this.#key = secret ? new MeshKey(secret) : null;
    if (this.#key) this.#timer = setInterval(() => this.#keepalive(), ctx.keepaliveS * 1000);
  }

  /** Mesh links open now. */
  get linkCount(): number {
    let n = 0;
    for (const set of this.#links.values()) n += set.size;
    return n;
  }

  /** The target for a tunnel to a device `remote` says another relay holds. */
  async target(remote: RemoteLink, record: DeviceRecord, shown: string): Promise<StreamTarget> {
    const where = `device "${shown}" is connected to relay ${remote.relayId}`;
    if (!this.#key) throw new HttpError(503, `${where}, and this relay has no mesh to reach it`);
    if (!remote.meshUrl) throw new HttpError(503, `${where}, which has no mesh URL`);
    const link = await this.#linkTo(remote.relayId, remote.meshUrl, where);
    // Limits and the per-device budget are the holding relay's; here the relay's own budget.
    return {
      streamCount: 0,
      pendingOpens: 0,
      windows: true,
      open: (tunnel) => {
        const open: MeshOpen = {
          device: record.rowid,
          ref: shown,
          service: tunnel.info.service,
          from: tunnel.info.from,
          account: tunnel.info.accountId,
          key: tunnel.info.keyId,
          owner: tunnel.info.ownerId,
          ...(tunnel.growing ? { maxWindow: tunnel.maxWindow } : {}),
        };
        return link.open(tunnel, open);
      },
    };
  }

  /** GET /v1/mesh: a peer relay's link, admitted only with a proof of the mesh key. */
  async accept(req: Request): Promise<Upgrade> {
    if (!this.#key) throw new HttpError(403, "this relay is not part of a mesh (no --mesh-key)");
    const dial = parseDial(req.headers);
    if (typeof dial === "string") throw new HttpError(401, `${dial}; only relays use ${MESH_PATH}`);
    const problem = await this.#key.checkDial(dial, this.#ctx.relayId);
    if (problem) {
      log.warn("mesh link refused", { from: dial.relay, reason: problem });
      throw new HttpError(401, problem);
    }
    checkProtocol(req);
    if (!isUpgrade(req)) throw new HttpError(400, "this endpoint needs a WebSocket upgrade");
    const proof = await this.#key.answer(this.#ctx.relayId, dial.relay, dial.nonce);
    return new Upgrade({
      protocol: SUBPROTOCOL,
      maxMessage: MAX_FRAME_SIZE,
      maxQueued: MESH_MAX_QUEUED,
      first: [encodeMeshHello(this.#ctx.relayId, proof)],
      onOpen: (socket) => this.#register(new MeshLink(socket, dial.relay, false, this.#hooks)),
    });
  }

  /**
   * Proves this relay's mesh key to the live relays of the store as it joins; rejects with a
   * sentence if one of them says the key differs (a relay with another key would hold devices
   * nobody else reaches). Peers that cannot be reached now are skipped: they check us later.
   */
  async join(live: Iterable<{ id: string; meshUrl: string }>): Promise<void> {
    if (!this.#key) return;
    for (const peer of live) {
      if (peer.id === this.#ctx.relayId || !peer.meshUrl) continue;
      try {
        await this.#linkTo(peer.id, peer.meshUrl, `relay ${peer.id}`);
      } catch (err) {
        if (err instanceof KeyMismatch) {
          throw new Error(
            `relay ${peer.id} refused this relay's mesh key; every relay of a store must use ` +
              `the same --mesh-key`,
          );
        }
        log.warn("cannot reach a peer relay as this one joins", { peer: peer.id, error: err });
      }
    }
  }

  /** Closes every link (the relay is stopping). */
  close(): void {
    clearInterval(this.#timer);
    for (const set of this.#links.values()) {
      for (const l of set) l.link.close(CloseCode.GOING_AWAY, "the relay is shutting down");
    }
  }

  /** Closes links silent for DEAD_AFTER keepalive periods, and spare idle ones. */
  sweep(): void {
    const limit = Date.now() - DEAD_AFTER * this.#ctx.keepaliveS * 1000;
    for (const [peer, set] of this.#links) {
      const preferred = this.#pick(peer);
      for (const l of set) {
        if (l.lastFrameAt < limit) l.link.close(CloseCode.TIMEOUT, "the peer relay went silent");
        else if (l !== preferred && l.streamCount === 0) {
          l.link.close(CloseCode.NORMAL, "one mesh link per pair of relays");
        }
      }
    }
  }

  #hooks = {
    onOpen: (link: MeshLink, id: number, open: MeshOpen) => {
      this.#serve(link, id, open).catch((err) => {
        log.error("cannot serve a mesh stream", { peer: link.peer, error: err });
        link.send(encodeReset(id, ResetCode.CANCELLED, "the relay holding the device failed"));
      });
    },
    onClose: (link: MeshLink, code: number, reason: string) => {
      this.#links.get(link.peer)?.delete(link);
      if (this.#links.get(link.peer)?.size === 0) this.#links.delete(link.peer);
      log.info("mesh link closed", { peer: link.peer, code, reason: reason || undefined });
    },
  };

  #register(link: MeshLink): void {
    let set = this.#links.get(link.peer);
    if (!set) this.#links.set(link.peer, set = new Set());
    set.add(link);
    log.info("mesh link open", { peer: link.peer, dialed: link.dialer });
  }

  /**
   * The link to use for new streams to `peer`: of two (both relays dialed at once) the one the
   * relay with the smaller id dialed, so both relays choose the same one and the other empties.
   */
  #pick(peer: string): MeshLink | undefined {
    const open = [...this.#links.get(peer) ?? []].filter((l) => l.link.open);
    const weDial = this.#ctx.relayId < peer;
    return open.find((l) => l.dialer === weDial) ?? open[0];
  }

  async #linkTo(peer: string, url: string, where: string): Promise<MeshLink> {
    const existing = this.#pick(peer);
    if (existing) return existing;
    let dialing = this.#dialing.get(peer);
    if (!dialing) {
      dialing = this.#dial(peer, url, where).finally(() => this.#dialing.delete(peer));
      this.#dialing.set(peer, dialing);
    }
    return await dialing;
  }

  async #dial(peer: string, url: string, where: string): Promise<MeshLink> {
    const self = this.#ctx.relayId;
    const { headers, nonce } = await this.#key!.dialHeaders(self, peer);
    let socket;
    try {
      socket = await openWebSocket({
        url: new URL(MESH_PATH, url),
        protocol: SUBPROTOCOL,
        headers,
        timeoutMs: DIAL_TIMEOUT_MS,
        maxQueued: MESH_MAX_QUEUED,
        // Peers are on the relays' own network: an HTTP(S)_PROXY meant for the relay's other
        // traffic would only stand in between.
        proxy: NO_PROXY_SETTING,
      });
    } catch (err) {
      const why = err instanceof UpgradeRefused ? refusal(err) : (err as Error).message;
      log.warn("cannot open a mesh link", { peer, url, error: why });
      if (err instanceof UpgradeRefused && err.status === 401) {
        throw new KeyMismatch(503, `${where}, which refused this relay's mesh key (${why})`);
      }
      throw new HttpError(503, `${where}, which this relay cannot reach: ${why}`);
    }
    const hello = await firstFrame(socket);
    const ok = hello !== null && hello.relay === peer &&
      await this.#key!.checkAnswer(peer, self, nonce, hello.proof);
    if (!ok) {
      socket.close(CloseCode.PROTOCOL, "the mesh hello does not prove the mesh key");
      log.warn("mesh peer failed to prove the mesh key", { peer, url });
      throw new KeyMismatch(503, `${where}, which does not prove this relay's mesh key`);
    }
    const link = new MeshLink(socket, peer, true, this.#hooks);
    this.#register(link);
    return link;
  }

  /** Serves stream `id` the peer opened toward a device held here. */
  async #serve(link: MeshLink, id: number, open: MeshOpen): Promise<void> {
    const ctx = this.#ctx;
    const session = ctx.hub.get(open.device);
    const refuse = (code: number, reason: string) => link.send(encodeReset(id, code, reason));
    if (!session) {
      return refuse(
        ResetCode.DEVICE_GONE,
        `device "${open.ref}" is not connected to relay ${ctx.relayId} any more`,
      );
    }
    if (
      session.streamCount >= ctx.limits.maxStreams ||
      session.pendingOpens >= ctx.limits.maxPendingOpens
    ) {
      return refuse(ResetCode.LIMIT, `device "${open.ref}" has too many open tunnels`);
    }
    // Windows grow where the client (as its relay offered) and the device both can.
    const maxWindow = session.windows && open.maxWindow ? open.maxWindow : STREAM_WINDOW;
    const stream = new RelayStream(
      {
        accountId: open.account,
        keyId: open.key,
        device: open.ref,
        deviceName: session.record.name,
        ownerId: open.owner,
        service: open.service,
        from: open.from,
      },
      {},
      { maxWindow, budgets: [session.budget, ctx.relayBudget] },
    );
    const client = link.serve(id);
    ctx.hub.addTunnel(stream, open.device);
    stream.onEnd = (end) => {
      ctx.hub.removeTunnel(stream);
      client.close();
      log.debug("mesh stream closed", {
        peer: link.peer,
        device: open.ref,
        result: end.result,
        reason: end.reason || undefined,
      });
    };
    if (!session.open(stream)) {
      stream.reset(ResetCode.LIMIT, `device "${open.ref}" has too many open tunnels`);
    }
    const result = await stream.opened;
    if (!result.ok) return refuse(result.code, result.reason);
    client.send(encodeOpened(1, stream.growing ? { maxWindow: stream.maxWindow } : undefined));
    stream.attachClient(client);
  }

  #keepalive(): void {
    for (const set of this.#links.values()) for (const l of set) l.ping();
  }
}

/** A peer and this relay do not share the mesh key (a 503 for the client who needed it). */
class KeyMismatch extends HttpError {}

/** The sentence of a refused dial. */
function refusal(err: UpgradeRefused): string {
  try {
    const body = JSON.parse(err.body) as { error?: unknown };
    if (typeof body.error === "string") return `HTTP ${err.status}: ${body.error}`;
  } catch {
    // not JSON
  }
  return `HTTP ${err.status}`;
}

/** The acceptor's hello: the first frame of a dialed link, or null if it is not one. */
function firstFrame(socket: FrameLink): Promise<ReturnType<typeof parseMeshHello>> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), DIAL_TIMEOUT_MS);
    socket.onClose = () => {
      clearTimeout(timer);
      resolve(null);
    };
    socket.onFrame = (raw) => {
      clearTimeout(timer);
      socket.onFrame = null; // later frames wait for the MeshLink's handler
      socket.onClose = null;
      try {
        const frame = decodeFrame(raw);
        resolve(frame.type === FrameType.CONTROL ? parseMeshHello(frame.message) : null);
      } catch {
        resolve(null);
      }
    };
  });
}
