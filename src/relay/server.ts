/**
 * The relay: one HTTP(S) port serving the API and the WebSockets of devices and clients.
 * `runRelay` resolves once it is listening, like Deno.serve, and its `finished` promise settles
 * after the abort signal has fired and every connection is closed.
 */
import { Store } from "../store/store.ts";
import {
  CLIENT_STREAM,
  encodeControl,
  encodeReset,
  ResetCode,
  SUBPROTOCOL,
} from "../protocol/frame.ts";
import { serviceProblem } from "../protocol/names.ts";
import { CloseCode, WebSocketLink } from "../transport/link.ts";
import { log } from "../cli/log.ts";
import { ago } from "../cli/output.ts";
import { VERSION } from "../version.ts";
import { checkProtocol, errorResponse, HttpError, isUpgrade, json } from "./http.ts";
import { Authenticator } from "./auth.ts";
import { FailureLimiter } from "./ratelimit.ts";
import { Hub } from "./hub.ts";
import { DeviceSession } from "./device_session.ts";
import { RelayStream } from "./tunnel.ts";
import { deviceView, enroll, getDevice, listDevices, resolveDevice, whoami } from "./api.ts";

/** Options for runRelay. */
export interface RelayOptions {
  hostname: string;
  port: number;
  dataDir: string;
  tls?: { cert: string; key: string };
  signal?: AbortSignal;
  /** Streams open at once per device (default 1024). */
  maxStreamsPerDevice?: number;
}

/** A running relay. */
export interface RunningRelay {
  addr: Deno.NetAddr;
  url: string;
  finished: Promise<void>;
}

const SEEN_FLUSH_MS = 60_000; // how stale on:lastSeen may get in the store after a crash
const WATCH_MS = 1_000; // how quickly revocations made by `od admin` take effect
const WS_IDLE_TIMEOUT_S = 30; // WebSocket-level ping: a silent peer is dropped within ~60 s

/** Starts a relay; resolves when it is listening. */
export function runRelay(options: RelayOptions): Promise<RunningRelay> {
  const store = Store.open(options.dataDir);
  const hub = new Hub();
  const auth = new Authenticator(store, new FailureLimiter());
  const limits = { maxStreams: options.maxStreamsPerDevice ?? 1024 };
  const ctx: Context = { store, hub, auth, limits };

  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    ...(options.tls ?? {}),
    signal: options.signal,
    onListen: () => {},
    onError: (err) => {
      log.error("request failed", { error: err });
      return json({ error: "internal error" }, 500);
    },
  }, (req, info) => handle(ctx, req, info.remoteAddr as Deno.NetAddr));

  const timers = [
    setInterval(() => flushSeen(ctx), SEEN_FLUSH_MS),
    watchRevocations(ctx),
  ];
  options.signal?.addEventListener("abort", () => {
    for (const session of [...hub.sessions()]) {
      session.link.close(CloseCode.GOING_AWAY, "the relay is shutting down");
    }
  }, { once: true });

  const finished = server.finished.finally(() => {
    timers.forEach(clearInterval);
    flushSeen(ctx);
    store.close();
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `${options.tls ? "https" : "http"}://${host}:${addr.port}`;
  return Promise.resolve({ addr, url, finished });
}

interface Context {
  store: Store;
  hub: Hub;
  auth: Authenticator;
  limits: { maxStreams: number };
}

async function handle(ctx: Context, req: Request, remote: Deno.NetAddr): Promise<Response> {
  const ip = remote.hostname;
  try {
    return await route(ctx, req, ip);
  } catch (err) {
    if (err instanceof HttpError) return errorResponse(err);
    log.error("request failed", { path: new URL(req.url).pathname, ip, error: err });
    return json({ error: "internal error" }, 500);
  }
}

async function route(ctx: Context, req: Request, ip: string): Promise<Response> {
  const { pathname } = new URL(req.url);
  const method = req.method;
  if (pathname === "/v1/health" && method === "GET") {
    return json({ ok: true, version: VERSION, protocol: SUBPROTOCOL });
  }
  if (pathname === "/v1/device" && method === "GET") return deviceLink(ctx, req, ip);
  if (pathname === "/v1/tunnel" && method === "GET") return tunnel(ctx, req, ip);
  if (pathname === "/v1/enroll" && method === "POST") {
    return await enroll(ctx.store, ctx.auth.key(req, ip, ["device", "full"]), req);
  }
  if (pathname === "/v1/devices" && method === "GET") {
    return listDevices(ctx.store, ctx.hub, ctx.auth.key(req, ip, ["client", "full"]));
  }
  const one = /^\/v1\/devices\/([^/]+)$/.exec(pathname);
  if (one && method === "GET") {
    return getDevice(ctx.store, ctx.hub, ctx.auth.key(req, ip, ["client", "full"]), one[1]);
  }
  if (pathname === "/v1/whoami" && method === "GET") {
    return whoami(ctx.auth.key(req, ip, ["client", "device", "full"]));
  }
  if (pathname === "/" && method === "GET") {
    return new Response(`od relay ${VERSION}\n`, { headers: { "content-type": "text/plain" } });
  }
  throw new HttpError(404, `no such endpoint: ${method} ${pathname}`);
}

/** Checks that a WebSocket endpoint was asked for an upgrade with our protocol. */
function upgradeCheck(req: Request): void {
  checkProtocol(req);
  if (!isUpgrade(req)) {
    // The client's diagnostic GET after a failed upgrade ends here when nothing else is wrong.
    throw new HttpError(400, "this endpoint needs a WebSocket upgrade");
  }
}

function deviceLink(ctx: Context, req: Request, ip: string): Response {
  checkProtocol(req);
  const device = ctx.auth.device(req, ip);
  upgradeCheck(req);
  const { socket, response } = Deno.upgradeWebSocket(req, {
    protocol: SUBPROTOCOL,
    idleTimeout: WS_IDLE_TIMEOUT_S,
  });
  const link = new WebSocketLink(socket);
  const session = new DeviceSession(device, link, {
    ip,
    limits: ctx.limits,
    hooks: {
      onInfo(s, info) {
        ctx.store.devices.setInfo(s.record.rowid, info);
      },
      onClose(s, code, reason) {
        if (ctx.hub.detach(s)) {
          ctx.store.devices.markSeen(s.record.rowid, { at: Date.now() });
          log.info("device disconnected", {
            device: s.record.name,
            account: s.record.account,
            code,
            reason,
          });
        }
      },
    },
  });
  ctx.hub.attach(session);
  ctx.store.devices.markSeen(device.rowid, { at: Date.now(), ip });
  session.hello();
  log.info("device connected", { device: device.name, account: device.account, ip });
  return response;
}

function tunnel(ctx: Context, req: Request, ip: string): Response {
  checkProtocol(req);
  const key = ctx.auth.key(req, ip, ["client", "full"]);
  const params = new URL(req.url).searchParams;
  const deviceParam = params.get("device") ?? "";
  const service = params.get("service") ?? "";
  const record = resolveDevice(ctx.store, key, deviceParam);
  if (serviceProblem(service)) throw new HttpError(400, serviceProblem(service)!);
  const shown = deviceParam.toLowerCase();
  const session = ctx.hub.get(record.rowid);
  if (!session) {
    const seen = record.lastSeen === null ? "never connected" : `last seen ${ago(record.lastSeen)}`;
    throw new HttpError(503, `device "${shown}" is offline (${seen})`);
  }
  if (session.streamCount >= ctx.limits.maxStreams) {
    throw new HttpError(503, `device "${shown}" has too many open tunnels; try again later`, {
      "retry-after": "5",
    });
  }
  upgradeCheck(req);
  const { socket, response } = Deno.upgradeWebSocket(req, {
    protocol: SUBPROTOCOL,
    idleTimeout: WS_IDLE_TIMEOUT_S,
  });
  const link = new WebSocketLink(socket);
  // Who the device is and its sshd host keys, so od pipe can pin them before ssh checks.
  const view = deviceView(ctx.hub, record);
  link.send(
    encodeControl({ t: "device", id: view.id, account: view.account, hostKeys: view.hostKeys }),
  );
  const stream = new RelayStream(link, {
    accountId: key.accountId,
    keyId: key.id,
    device: shown,
    service,
    from: ip,
  });
  ctx.hub.addTunnel(stream);
  stream.onEnd = (end) => {
    ctx.hub.removeTunnel(stream);
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

function flushSeen(ctx: Context): void {
  const now = Date.now();
  for (const s of ctx.hub.sessions()) ctx.store.devices.markSeen(s.record.rowid, { at: now });
}

function watchRevocations(ctx: Context): ReturnType<typeof setInterval> {
  const started = Date.now();
  const handled = new Set<string>();
  let version = ctx.store.dataVersion();
  return setInterval(() => {
    const v = ctx.store.dataVersion();
    if (v === version) return;
    version = v;
    const fresh = ctx.store.accounts.revokedSince(started).filter((id) => !handled.has(id));
    if (fresh.length === 0) return;
    fresh.forEach((id) => handled.add(id));
    const n = ctx.hub.closeTunnelsOfKeys(new Set(fresh), "the key was revoked");
    log.info("keys revoked", { keys: fresh.join(","), tunnelsClosed: n });
  }, WATCH_MS);
}
