/**
 * The relay's two WebSocket endpoints: `/v1/device` (a daemon's link) and `/v1/tunnel` (one
 * client tunnel). Every check that can fail runs before the upgrade, so a refusal is an HTTP
 * status with a JSON sentence the client can show; what runs after it (`onOpen`) cannot fail on
 * input a peer controls, and the server closes just that link if it does.
 *
 * A tunnel is opened with the device before the client is answered: the 101 goes out together
 * with OPENED in one write, and a device that refuses (service not exposed, dial failed) is an
 * HTTP refusal with its sentence.
 */
import {
  MAX_FRAME_SIZE,
  MAX_WINDOW,
  ResetCode,
  STREAM_WINDOW,
  SUBPROTOCOL,
  WINDOWS_HEADER,
} from "../protocol/frame.ts";
import { serviceProblem } from "../protocol/names.ts";
import { fingerprintProblem } from "../protocol/api.ts";
import { Upgrade } from "../transport/http_server.ts";
import { CloseCode } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import { ago } from "../cli/output.ts";
import { checkProtocol, HttpError, isUpgrade } from "./http.ts";
import { DeviceSession } from "./device_session.ts";
import { RelayStream } from "./tunnel.ts";
import { deviceView } from "./device_view.ts";
import { greeting, handleDaemonMessage } from "./device_control.ts";
import { resolveVisible, shareAllowsService } from "./access.ts";
import type { RequestAudit } from "./audit.ts";
import type { DeviceRecord, KeyInfo } from "../store/types.ts";
import { cloneRefusal } from "./enroll.ts";
import type { RelayContext } from "./context.ts";
import { metrics } from "./relay_metrics.ts";
import { remoteLinks } from "./whereabouts.ts";
import type { StreamTarget } from "./mesh.ts";

/** Checks that a WebSocket endpoint was asked for an upgrade with our protocol. */
function upgradeCheck(req: Request): void {
  checkProtocol(req);
  if (!isUpgrade(req)) {
    // The client's diagnostic GET after a failed upgrade ends here when nothing else is wrong.
    throw new HttpError(400, "this endpoint needs a WebSocket upgrade");
  }
}

// A device link carries many streams; this much queued toward a device that stopped reading
// means it is gone (per-stream windows bound what honest traffic can queue far below it).
const DEVICE_MAX_QUEUED = 64 * 1024 * 1024;
// A client link carries one stream: a window of data plus a little control traffic. The window
// can grow to MAX_WINDOW, and all of it may wait here for a client slow to read (a busy
// machine): 4 MiB once closed such a client's 64 MiB transfer mid-way ("the peer stopped
// reading") after its window had grown past it.
const CLIENT_MAX_QUEUED = MAX_WINDOW + 1024 * 1024;

/**
 * GET /v1/device: a daemon's link, authenticated by its own credential (by the router) and
 * admitted at the relay's pace (admission.ts) before the upgrade.
 */
export async function deviceLink(
  ctx: RelayContext,
  req: Request,
  ip: string,
  device: DeviceRecord,
): Promise<Upgrade> {
  const fingerprint = req.headers.get("x-od-fingerprint");
  if (fingerprint !== null && fingerprintProblem(fingerprint)) {
    throw new HttpError(400, fingerprintProblem(fingerprint)!);
  }
  if (fingerprint && device.fingerprint && fingerprint !== device.fingerprint) {
    throw cloneRefusal(device);
  }
  upgradeCheck(req);
  await ctx.admission.admit();
  if (fingerprint && !device.fingerprint) {
    await ctx.store.devices.setFingerprint(device.rowid, fingerprint);
  }
  // Built before the upgrade: whatever a stored value looks like, encoding fails here or not
  // at all, and the device learns its identity and properties in the 101's write.
  const hello = await greeting(ctx, device);
  const windows = req.headers.get(WINDOWS_HEADER) === "1";
  return new Upgrade({
    protocol: SUBPROTOCOL,
    maxMessage: MAX_FRAME_SIZE,
    maxQueued: DEVICE_MAX_QUEUED,
    first: hello.frames,
    onOpen(link) {
      const session = new DeviceSession(device, link, {
        ip,
        limits: ctx.limits,
        windows,
        hooks: {
          onMessage: (s, message) => handleDaemonMessage(ctx, s, message),
          onClose(s, code, reason) {
            metrics.deviceClosed(code);
            ctx.members.release(s);
            if (!ctx.hub.detach(s)) return;
            ctx.presence.seen(s.record.rowid, { at: Date.now() });
            // Replaced by a newer link on another relay: the device is online there.
            if (code !== CloseCode.REPLACED) {
              ctx.events.emitSoon(s.record.accountId, s.record.name, "state", {
                state: "offline",
              });
            }
            log.info("device disconnected", {
              device: s.record.name,
              account: s.record.account,
              code,
              reason,
            });
          },
        },
      });
      const wasOnline = ctx.hub.get(device.rowid) !== undefined;
      ctx.mirror.init(ctx, session, hello.props, hello.readAt);
      ctx.hub.attach(session);
      ctx.members.claim(session);
      ctx.presence.seen(device.rowid, { at: Date.now(), ip });
      metrics.deviceConnects.inc("ok");
      if (!wasOnline) {
        ctx.events.emitSoon(device.accountId, device.name, "state", { state: "online", ip });
      }
      log.info("device connected", { device: device.name, account: device.account, ip });
    },
  });
}

/** The HTTP status a client gets when the device refuses to open a stream. */
function refusalStatus(code: number): number {
  switch (code) {
    case ResetCode.NOT_EXPOSED:
      return 404;
    case ResetCode.REFUSED:
      return 403;
    case ResetCode.DIAL_FAILED:
      return 502;
    case ResetCode.TIMEOUT:
      return 504;
    default:
      return 503;
  }
}

/** GET /v1/tunnel?device=DEV&service=NAME: one client tunnel, for a key the router checked. */
export async function tunnel(
  ctx: RelayContext,
  req: Request,
  audit: RequestAudit,
  key: KeyInfo,
): Promise<Upgrade> {
  const ip = audit.ip;
  const params = new URL(req.url).searchParams;
  const deviceParam = params.get("device") ?? "";
  const service = params.get("service") ?? "";
  if (serviceProblem(service)) throw new HttpError(400, serviceProblem(service)!);
  const { record, share } = await resolveVisible(ctx, key, deviceParam);
  audit.ownerId = record.accountId;
  const shown = deviceParam.toLowerCase();
  if (share && !shareAllowsService(share, service)) {
    throw new HttpError(403, `the share of "${shown}" does not include service "${service}"`);
  }
  if (ctx.hub.tunnelsOfKey(key.id) >= ctx.limits.maxTunnelsPerKey) {
    metrics.throttled.inc("key");
    throw new HttpError(429, `key ${key.id} has too many open tunnels`, { "retry-after": "5" });
  }
  const session = ctx.hub.get(record.rowid);
  const remote = session ? undefined : (await remoteLinks(ctx, [record.rowid])).get(record.rowid);
  if (!session && !remote) {
    // A device that just left may have its last sighting still waiting in the presence batch.
    const lastSeen = ctx.presence.pendingSeen(record.rowid) ?? record.lastSeen;
    const seen = lastSeen === null ? "never connected" : `last seen ${ago(lastSeen)}`;
    throw new HttpError(503, `device "${shown}" is offline (${seen})`);
  }
  // A device another relay holds is reached through the mesh link to that relay.
  const target: StreamTarget = session ?? await ctx.mesh.target(remote!, record, shown);
  if (
    target.streamCount >= ctx.limits.maxStreams ||
    target.pendingOpens >= ctx.limits.maxPendingOpens
  ) {
    throw new HttpError(503, `device "${shown}" has too many open tunnels; try again later`, {
      "retry-after": "5",
    });
  }
  upgradeCheck(req);
  // Who the device is and its sshd host keys, so od pipe can pin them before ssh checks.
  const view = deviceView(ctx.hub, record, {});
  // Windows grow only where the client, the device and every relay on the way can; through
  // the mesh, the relay holding the device settles it when it answers (Mesh.target).
  const growing = target.windows && req.headers.get(WINDOWS_HEADER) === "1";
  const maxWindow = growing ? MAX_WINDOW : STREAM_WINDOW;
  // keepalive: the client pings at least this often, or the relay's sweep ends the tunnel.
  const opened = {
    id: view.id,
    account: view.account,
    hostKeys: view.hostKeys,
    ...(growing ? { maxWindow } : {}),
    keepalive: ctx.keepaliveS,
  };
  const stream = new RelayStream(
    {
      accountId: key.accountId,
      keyId: key.id,
      device: shown,
      deviceName: record.name,
      ownerId: record.accountId,
      service,
      from: ip,
    },
    opened,
    {
      maxWindow,
      budgets: target.budget ? [target.budget, ctx.relayBudget] : [ctx.relayBudget],
    },
  );
  ctx.hub.addTunnel(stream, record.rowid);
  stream.onEnd = (end) => {
    ctx.hub.removeTunnel(stream);
    if (!stream.opened) metrics.tunnelOpens.inc("failed");
    ctx.audit.record(audit, end.result, {
      reason: end.reason,
      durationMs: end.durationMs,
      bytesUp: end.bytesUp,
      bytesDown: end.bytesDown,
    });
    log.info("tunnel closed", {
      device: shown,
      service,
      key: key.id,
      ip,
      result: end.result,
      reason: end.reason || undefined,
      up: end.bytesUp,
      down: end.bytesDown,
      ms: end.durationMs,
    });
  };
  if (!target.open(stream)) {
    stream.reset(ResetCode.LIMIT, `device "${shown}" has too many open tunnels`);
  }
  const result = await stream.opened;
  if (!result.ok) {
    // Already audited by onEnd; the client gets the device's sentence as an HTTP answer.
    const refusal = new HttpError(
      refusalStatus(result.code),
      `cannot open ${service} on "${shown}": ${result.reason}`,
    );
    refusal.audited = true;
    throw refusal;
  }
  return new Upgrade({
    protocol: SUBPROTOCOL,
    maxMessage: MAX_FRAME_SIZE,
    maxQueued: CLIENT_MAX_QUEUED,
    first: [stream.openedFrame()],
    onOpen(link) {
      stream.attachClient(link);
    },
  });
}
