/**
 * The relay: one HTTP(S) port serving the API and the WebSockets of devices and clients.
 * `runRelay` resolves once it is listening, like Deno.serve, and its `finished` promise settles
 * after the abort signal has fired and every connection is closed.
 */
import { Store } from "../store/store.ts";
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { CloseCode } from "../transport/link.ts";
import { log } from "../cli/log.ts";
import { VERSION } from "../version.ts";
import { errorResponse, HttpError, json } from "./http.ts";
import { Authenticator } from "./auth.ts";
import { FailureLimiter } from "./ratelimit.ts";
import { Hub } from "./hub.ts";
import { EventBus } from "./events.ts";
import type { RelayContext } from "./context.ts";
import { getDevice, listDevices, patchProps, removeDevice, renameDevice, whoami } from "./api.ts";
import { clone, enroll } from "./enroll.ts";
import { deviceLink, tunnel } from "./connect.ts";
import { streamEvents } from "./events_api.ts";

/** Options for runRelay. */
export interface RelayOptions {
  hostname: string;
  port: number;
  dataDir: string;
  tls?: { cert: string; key: string };
  signal?: AbortSignal;
  /** Streams open at once per device (default 1024). */
  maxStreamsPerDevice?: number;
  /** Days events are kept (default 30). */
  eventRetentionDays?: number;
}

/** A running relay. */
export interface RunningRelay {
  addr: Deno.NetAddr;
  url: string;
  finished: Promise<void>;
}

const SEEN_FLUSH_MS = 60_000; // how stale on:lastSeen may get in the store after a crash
const WATCH_MS = 1_000; // how quickly revocations made by `od admin` take effect
const PRUNE_MS = 3_600_000; // retention is in days; hourly pruning is plenty
const DAY_MS = 86_400_000;

/** Starts a relay; resolves when it is listening. */
export function runRelay(options: RelayOptions): Promise<RunningRelay> {
  const store = Store.open(options.dataDir);
  const hub = new Hub();
  const auth = new Authenticator(store, new FailureLimiter());
  const limits = { maxStreams: options.maxStreamsPerDevice ?? 1024 };
  const ctx: RelayContext = { store, hub, auth, limits, events: new EventBus(store) };
  const retentionMs = (options.eventRetentionDays ?? 30) * DAY_MS;
  const prune = () => {
    const before = Date.now() - retentionMs;
    store.events.prune(before);
    store.props.pruneTombstones(before);
  };
  prune();

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
    setInterval(prune, PRUNE_MS),
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

async function handle(ctx: RelayContext, req: Request, remote: Deno.NetAddr): Promise<Response> {
  const ip = remote.hostname;
  try {
    return await route(ctx, req, ip);
  } catch (err) {
    if (err instanceof HttpError) return errorResponse(err);
    log.error("request failed", { path: new URL(req.url).pathname, ip, error: err });
    return json({ error: "internal error" }, 500);
  }
}

async function route(ctx: RelayContext, req: Request, ip: string): Promise<Response> {
  const { pathname, searchParams } = new URL(req.url);
  const method = req.method;
  const client = () => ctx.auth.key(req, ip, ["client", "full"]);
  if (pathname === "/v1/health" && method === "GET") {
    return json({ ok: true, version: VERSION, protocol: SUBPROTOCOL });
  }
  if (pathname === "/v1/device" && method === "GET") return deviceLink(ctx, req, ip);
  if (pathname === "/v1/tunnel" && method === "GET") return tunnel(ctx, req, ip);
  if (pathname === "/v1/enroll" && method === "POST") {
    return await enroll(ctx, ctx.auth.key(req, ip, ["device", "full"]), req);
  }
  if (pathname === "/v1/clone" && method === "POST") {
    return await clone(ctx, ctx.auth.device(req, ip), req);
  }
  if (pathname === "/v1/devices" && method === "GET") return listDevices(ctx, client());
  if (pathname === "/v1/events" && method === "GET") return streamEvents(ctx, client(), req);
  const m = /^\/v1\/devices\/([^/]+)(\/props|\/rename)?$/.exec(pathname);
  if (m) {
    const ref = decodeURIComponent(m[1]);
    if (!m[2] && method === "GET") return getDevice(ctx, client(), ref);
    if (m[2] === "/props" && method === "PATCH") return await patchProps(ctx, client(), ref, req);
    const full = () => ctx.auth.key(req, ip, ["full"]);
    if (m[2] === "/rename" && method === "POST") return await renameDevice(ctx, full(), ref, req);
    if (!m[2] && method === "DELETE") {
      return removeDevice(ctx, full(), ref, searchParams.get("force") === "1");
    }
  }
  if (pathname === "/v1/whoami" && method === "GET") {
    return whoami(ctx.auth.key(req, ip, ["client", "device", "full"]));
  }
  if (pathname === "/" && method === "GET") {
    return new Response(`od relay ${VERSION}\n`, { headers: { "content-type": "text/plain" } });
  }
  throw new HttpError(404, `no such endpoint: ${method} ${pathname}`);
}

function flushSeen(ctx: RelayContext): void {
  const now = Date.now();
  for (const s of ctx.hub.sessions()) ctx.store.devices.markSeen(s.record.rowid, { at: now });
}

function watchRevocations(ctx: RelayContext): ReturnType<typeof setInterval> {
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
