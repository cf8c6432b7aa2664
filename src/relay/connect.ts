/**
 * The relay's two WebSocket endpoints: `/v1/device` (a daemon's link) and `/v1/tunnel` (one
 * client tunnel). Every check that can fail runs before the upgrade, so a refusal is an HTTP
 * status with a JSON sentence the client can show.
 */
import { CLIENT_STREAM, encodeReset, ResetCode, SUBPROTOCOL } from "../protocol/frame.ts";
import { keyProblem, valueProblem } from "../protocol/props.ts";
import { serviceProblem } from "../protocol/names.ts";
import { CloseCode, WebSocketLink } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import { ago } from "../cli/output.ts";
import { checkProtocol, HttpError, isUpgrade } from "./http.ts";
import { DeviceSession } from "./device_session.ts";
import { RelayStream } from "./tunnel.ts";
import { announceProps, deviceView } from "./api.ts";
import { resolveVisible, shareAllowsService } from "./access.ts";
import type { RequestAudit } from "./audit.ts";
import { cloneRefusal } from "./enroll.ts";
import type { RelayContext } from "./context.ts";
import { metrics } from "./relay_metrics.ts";

const WS_IDLE_TIMEOUT_S = 30; // WebSocket-level ping: a silent peer is dropped within ~60 s

/** Checks that a WebSocket endpoint was asked for an upgrade with our protocol. */
function upgradeCheck(req: Request): void {
  checkProtocol(req);
  if (!isUpgrade(req)) {
    // The client's diagnostic GET after a failed upgrade ends here when nothing else is wrong.
    throw new HttpError(400, "this endpoint needs a WebSocket upgrade");
  }
}

function upgrade(req: Request): { link: WebSocketLink; response: Response } {
  const { socket, response } = Deno.upgradeWebSocket(req, {
    protocol: SUBPROTOCOL,
    idleTimeout: WS_IDLE_TIMEOUT_S,
  });
  return { link: new WebSocketLink(socket), response };
}

/**
 * GET /v1/device: a daemon's link, authenticated by its own credential and admitted at the
 * relay's pace (admission.ts) before the upgrade.
 */
export async function deviceLink(
  ctx: RelayContext,
  req: Request,
  ip: string,
  audit: RequestAudit,
): Promise<Response> {
  checkProtocol(req);
  const device = ctx.auth.device(req, ip, audit);
  const fingerprint = req.headers.get("x-od-fingerprint");
  if (fingerprint && device.fingerprint && fingerprint !== device.fingerprint) {
    throw cloneRefusal(device);
  }
  upgradeCheck(req);
  await ctx.admission.admit();
  if (fingerprint && !device.fingerprint) {
    ctx.store.devices.setFingerprint(device.rowid, fingerprint);
  }
  const { link, response } = upgrade(req);
  const session = new DeviceSession(device, link, {
    ip,
    limits: ctx.limits,
    hooks: {
      onInfo(s, info) {
        ctx.presence.info(s.record.rowid, info);
      },
      onProps(s, changes) {
        const valid = changes.filter((c) =>
          keyProblem(c.k) === null && (c.v === null || valueProblem(c.k, c.v) === null)
        );
        const { applied, rejected } = ctx.store.props.apply(s.record.rowid, valid);
        announceProps(ctx, s.record, applied, "device");
        const refused = new Set([...rejected.map((c) => c.k)]);
        for (const c of changes) if (!valid.includes(c)) refused.add(c.k);
        return [...refused];
      },
      onClose(s, code, reason) {
        metrics.deviceClosed(code);
        if (!ctx.hub.detach(s)) return;
        ctx.presence.seen(s.record.rowid, { at: Date.now() });
        ctx.events.emitSoon(s.record.accountId, s.record.name, "state", { state: "offline" });
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
  ctx.hub.attach(session);
  ctx.presence.seen(device.rowid, { at: Date.now(), ip });
  metrics.deviceConnects.inc("ok");
  session.hello();
  const props = [...ctx.store.props.load(device.rowid)].map(([k, p]) => ({ k, ...p }));
  session.pushProps(props, true);
  if (!wasOnline) {
    ctx.events.emitSoon(device.accountId, device.name, "state", { state: "online", ip });
  }
  log.info("device connected", { device: device.name, account: device.account, ip });
  return response;
}

/** GET /v1/tunnel?device=DEV&service=NAME: one client tunnel. */
export function tunnel(ctx: RelayContext, req: Request, ip: string, audit: RequestAudit): Response {
  checkProtocol(req);
  const params = new URL(req.url).searchParams;
  const deviceParam = params.get("device") ?? "";
  const service = params.get("service") ?? "";
  audit.device = deviceParam.toLowerCase().slice(0, 120);
  audit.service = service.slice(0, 40);
  const key = ctx.auth.key(req, ip, ["client", "full"], audit);
  if (serviceProblem(service)) throw new HttpError(400, serviceProblem(service)!);
  const { record, share } = resolveVisible(ctx, key, deviceParam);
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
  if (!session) {
    const seen = record.lastSeen === null ? "never connected" : `last seen ${ago(record.lastSeen)}`;
    throw new HttpError(503, `device "${shown}" is offline (${seen})`);
  }
  if (
    session.streamCount >= ctx.limits.maxStreams ||
    session.pendingOpens >= ctx.limits.maxPendingOpens
  ) {
    throw new HttpError(503, `device "${shown}" has too many open tunnels; try again later`, {
      "retry-after": "5",
    });
  }
  upgradeCheck(req);
  const { link, response } = upgrade(req);
  // Who the device is and its sshd host keys, so od pipe can pin them before ssh checks.
  const view = deviceView(ctx.hub, record, {});
  const opened = { id: view.id, account: view.account, hostKeys: view.hostKeys };
  const stream = new RelayStream(link, {
    accountId: key.accountId,
    keyId: key.id,
    device: shown,
    deviceName: record.name,
    ownerId: record.accountId,
    service,
    from: ip,
  }, opened);
  ctx.hub.addTunnel(stream);
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
  if (!session.open(stream)) {
    link.send(
      encodeReset(CLIENT_STREAM, ResetCode.LIMIT, `device "${shown}" has too many open tunnels`),
    );
    link.close(CloseCode.LIMIT, "too many tunnels");
  }
  return response;
}
