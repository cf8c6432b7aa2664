/**
 * One authenticated WebSocket between this relay and a peer relay of the mesh, carrying tunnel
 * streams both ways (src/protocol/mesh.ts). To a client tunnel here whose device the peer
 * holds, the link is the tunnel's DeviceSide: the RelayStream sends OPEN, DATA, CREDIT… on it
 * as it would on a device's link. A stream the peer opens toward a device held here is served
 * by a RelayStream too, whose client link is a MeshStreamLink: one stream of this link dressed
 * as a client's link. So each relay on the path runs the same credit mediation (tunnel.ts) and
 * holds at most a window per stream, and flow control stays end to end. Frames toward the peer
 * go through a LinkScheduler as on a device link (its PING probes are answered by the peer's
 * MeshLink in order), so a keystroke on one stream does not wait behind another's transfer.
 *
 * Lifecycle: frames arrive until the link closes; then every stream on it is reset on this side
 * (and the peer does the same on its side).
 */
import {
  CLIENT_STREAM,
  decodeFrame,
  encodePing,
  FrameType,
  MAX_STREAM_ID,
  peekHeader,
  ProtocolError,
  ResetCode,
  setStream,
} from "../protocol/frame.ts";
import {
  decodeMeshOpen,
  encodeMeshOpen,
  type MeshOpen,
  openedBy,
  windowOf,
} from "../protocol/mesh.ts";
import { BaseLink, CloseCode, type FrameLink } from "../transport/link.ts";
import { LinkScheduler } from "../transport/scheduler.ts";
import type { DeviceSide, RelayStream } from "./tunnel.ts";

/** What a mesh link tells the mesh. */
export interface MeshLinkHooks {
  /** The peer opened stream `id` toward device `open.device`, which it believes is held here. */
  onOpen(link: MeshLink, id: number, open: MeshOpen): void;
  /** The link closed; its streams have been reset. */
  onClose(link: MeshLink, code: number, reason: string): void;
}

/** A mesh link to one peer relay. */
export class MeshLink implements DeviceSide {
  readonly peer: string;
  readonly link: FrameLink;
  /** True if this relay dialed the link (it then opens odd stream ids, the peer even ones). */
  readonly dialer: boolean;
  /** When the peer last sent a frame (ms), for the keepalive sweep. */
  lastFrameAt = Date.now();
  #next: number;
  #outgoing = new Map<number, RelayStream>(); // streams opened here, to devices the peer holds
  #incoming = new Map<number, MeshStreamLink>(); // streams the peer opened, to devices held here
  #hooks: MeshLinkHooks;
  #scheduler: LinkScheduler;

  constructor(link: FrameLink, peer: string, dialer: boolean, hooks: MeshLinkHooks) {
    this.link = link;
    this.peer = peer;
    this.dialer = dialer;
    this.#hooks = hooks;
    this.#scheduler = new LinkScheduler(link);
    this.#next = dialer ? 1 : 2;
    link.onFrame = (raw) => this.#onFrame(raw);
    link.onClose = (code, reason) => this.#closed(code, reason);
  }

  /** Streams open on the link, both ways. */
  get streamCount(): number {
    return this.#outgoing.size + this.#incoming.size;
  }

  /** Opens a stream for a client tunnel here to a device the peer holds; false if it cannot. */
  open(tunnel: RelayStream, open: MeshOpen): boolean {
    if (!this.link.open) return false;
    if (this.#next > MAX_STREAM_ID - 1) {
      this.link.close(CloseCode.LIMIT, "stream ids exhausted; reconnect");
      return false;
    }
    const id = this.#next;
    this.#next += 2;
    this.#outgoing.set(id, tunnel);
    tunnel.attachDevice(this, id);
    this.#scheduler.urgent(encodeMeshOpen(id, open));
    return true;
  }

  /** Sends a frame of any stream on the link, scheduled; `onSent` once it reached the socket. */
  send(frame: Uint8Array, onSent?: () => void): void {
    this.#scheduler.send(frame, onSent);
  }

  /** Forgets a finished stream opened here (DeviceSide). */
  release(stream: number): void {
    this.#outgoing.delete(stream);
  }

  /** The client link of stream `id` the peer opened, to be joined to a RelayStream here. */
  serve(id: number): MeshStreamLink {
    const virtual = new MeshStreamLink(this, id);
    this.#incoming.set(id, virtual);
    return virtual;
  }

  /** Forgets a finished stream the peer opened. */
  forget(id: number): void {
    this.#incoming.delete(id);
  }

  /** Sends a keepalive PING. */
  ping(): void {
    this.#scheduler.urgent(
      encodePing(FrameType.PING, crypto.getRandomValues(new Uint8Array(8))),
    );
  }

  /** What the link's scheduler measured: bytes in flight, its cap, RTT (for tests, metrics). */
  get linkState(): { inflight: number; cap: number; rttMs: number | null } {
    const s = this.#scheduler;
    return { inflight: s.inflight, cap: s.cap, rttMs: s.rttMs };
  }

  #onFrame(raw: Uint8Array): void {
    this.lastFrameAt = Date.now();
    const head = peekHeader(raw);
    if (head && head.stream !== 0 && head.type !== FrameType.OPEN) {
      // Checked by the RelayStream it belongs to; frames of finished streams are dropped, as a
      // RESET may cross data in flight.
      const served = this.#incoming.get(head.stream);
      if (served) return served.fromPeer(raw);
      const opened = this.#outgoing.get(head.stream);
      if (!opened) return;
      const frame = decodeFrame(raw);
      // The holding relay says in OPENED how far this stream's windows may grow.
      if (frame.type === FrameType.OPENED) opened.limitWindow(windowOf(frame.info));
      return opened.fromDevice(raw, frame);
    }
    const frame = decodeFrame(raw); // a throw closes the link (FrameLink contract)
    switch (frame.type) {
      case FrameType.PING:
        return this.#scheduler.urgent(encodePing(FrameType.PONG, frame.nonce));
      case FrameType.PONG:
        this.#scheduler.pong(frame.nonce);
        return;
      case FrameType.CONTROL: // the hello was read before; newer relays may add messages
        return;
      case FrameType.OPEN: {
        const mine = this.dialer ? "dialer" : "acceptor";
        if (openedBy(frame.stream) === mine) {
          throw new ProtocolError("the peer opened a stream with this relay's ids");
        }
        if (this.#incoming.has(frame.stream)) throw new ProtocolError("a stream was opened twice");
        return this.#hooks.onOpen(this, frame.stream, decodeMeshOpen(raw));
      }
      default:
        throw new ProtocolError(`frame type ${frame.type} is not valid on stream 0`);
    }
  }

  #closed(code: number, reason: string): void {
    for (const t of [...this.#outgoing.values()]) {
      t.reset(ResetCode.DEVICE_GONE, `the link to relay ${this.peer} closed`);
    }
    this.#outgoing.clear();
    for (const v of [...this.#incoming.values()]) v.peerGone(code, reason);
    this.#incoming.clear();
    this.#hooks.onClose(this, code, reason);
  }
}

/**
 * One stream the peer opened, as the client link of the RelayStream that serves it here: frames
 * go out on the mesh link with the stream's id, frames in are handed over as stream 1.
 */
export class MeshStreamLink extends BaseLink implements FrameLink {
  readonly #mesh: MeshLink;
  readonly #id: number;

  constructor(mesh: MeshLink, id: number) {
    super();
    this.#mesh = mesh;
    this.#id = id;
  }

  /** Sends a frame of this stream to the peer; `onSent` once it reached the mesh socket. */
  send(frame: Uint8Array, onSent?: () => void): void {
    if (this.closed) return;
    setStream(frame, this.#id);
    this.#mesh.send(frame, onSent);
  }

  /** What the mesh link has queued (shared by all its streams). */
  get bufferedAmount(): number {
    return this.#mesh.link.bufferedAmount;
  }

  /** Ends this stream's client side here; the peer has been told by RESET or EOF already. */
  close(code: number = CloseCode.NORMAL, reason = ""): void {
    if (this.closed) return;
    this.#mesh.forget(this.#id);
    this.finish(code, reason);
  }

  /** A frame of this stream from the peer. */
  fromPeer(raw: Uint8Array): void {
    setStream(raw, CLIENT_STREAM);
    this.deliver(raw);
  }

  /** The mesh link closed: the client side of this stream is gone. */
  peerGone(code: number, reason: string): void {
    this.finish(code, reason);
  }
}
