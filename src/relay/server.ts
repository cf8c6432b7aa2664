/**
 * The relay: one HTTP(S) port serving the API and the WebSockets of devices and clients, on
 * od's own HTTP server (src/transport/http_server.ts), with its store (the SQLite file in the
 * data directory, or PostgreSQL shared with other relays). `runRelay` resolves once it is
 * listening, and its `finished` promise settles after the abort signal has fired and every
 * connection is closed.
 */
import { openStore, type StoreTarget } from "../store/open.ts";
import { HEARTBEAT_MS, InvalidValue, type Store, StoreUnavailable } from "../store/types.ts";
import { CloseCode } from "../transport/link.ts";
import { ResetCode } from "../protocol/frame.ts";
import { DEAD_AFTER } from "../transport/keepalive.ts";
import { Budget } from "./tunnel.ts";
import { log } from "../shared/log.ts";
import { errorResponse, HttpError, json } from "./http.ts";
import { serveHttp, type Upgrade } from "../transport/http_server.ts";
import { Authenticator } from "./auth.ts";
import { FailureLimiter, RequestLimiter } from "./ratelimit.ts";
import { Hub } from "./hub.ts";
import { EventBus } from "./events.ts";
import { AuditWriter, type RequestAudit } from "./audit.ts";
import type { RelayContext, RelayLimits } from "./context.ts";
import { route } from "./routes.ts";
import { Admission, type AdmissionOptions } from "./admission.ts";
import { metrics, serveMetrics } from "./relay_metrics.ts";
import { PresenceWriter } from "./presence.ts";
import { defaultRelayId, Membership } from "./membership.ts";
import { PropsMirror } from "./props_push.ts";
import { watchStore } from "./watch.ts";
import { liveRelays } from "./whereabouts.ts";
import { OdError } from "../shared/errors.ts";
import { Mesh } from "./mesh.ts";
import { MeshStreamLink } from "./mesh_link.ts";
import { SessionAuth } from "./dashboard/session.ts";

/** Options for runRelay. */
export interface RelayOptions {
  hostname: string;
  port: number;
  /** The store: a data directory (SQLite) or a PostgreSQL URL. */
  store: StoreTarget;
  /** A file whose first line is the PostgreSQL password. */
  storePasswordFile?: string;
  /** This relay's id among the relays of the store (default: host name and a random suffix). */
  relayId?: string;
  /** Where other relays reach this one (the mesh); none if unset. */
  meshUrl?: string;
  /** The secret the relays of the mesh share (with meshUrl). */
  meshKey?: string;
  /** Interval of the relays' heartbeats, ms (default HEARTBEAT_MS; the same on every relay). */
  heartbeatMs?: number;
  tls?: { cert: string; key: string };
  signal?: AbortSignal;
  /** Streams open at once per device (default 1024). */
  maxStreamsPerDevice?: number;
  /** Days events are kept (default 30). */
  eventRetentionDays?: number;
  /** Days audit rows are kept (default 90). */
  auditRetentionDays?: number;
  /** Addresses of reverse proxies whose X-Forwarded-For is believed. */
  trustedProxies?: string[];
  /** Seconds between keepalive pings on links; three silent periods end a link (default 15). */
  keepalive?: number;
  /** Where to serve Prometheus metrics (GET /metrics); off when unset. */
  metrics?: { hostname: string; port: number };
  /** Rate of new device links. */
  admission?: AdmissionOptions;
  /**
   * Seconds over which daemons are asked to come back when the relay stops (default 5): each
   * is told its own random moment in the window, so a restart brings no herd.
   */
  drainS?: number;
}

/** A running relay. */
export interface RunningRelay {
  addr: Deno.NetAddr;
  url: string;
  /** This relay's id among the relays of its store. */
  relayId: string;
  /** The metrics listener's address, when --metrics is on. */
  metricsAddr?: Deno.NetAddr;
  finished: Promise<void>;
}

const SEEN_FLUSH_MS = 60_000; // how stale on:lastSeen may get in the store after a crash
const PRUNE_MS = 3_600_000; // retention is in days; hourly pruning is plenty
const DAY_MS = 86_400_000;
const SWEEP_MS = 1_000; // one pass over all links finds the silent ones; no timer per link
/** Default --drain: a small fleet is back within seconds, a large one is spread over them. */
export const DEFAULT_DRAIN_S = 5;
/** What clients and daemons are told when the relay stops (SIGTERM, SIGINT, systemctl). */
const SHUTDOWN_REASON = "the relay is shutting down (restarting or stopped); reconnect shortly";

/** Starts a relay; resolves when it is listening. */
export async function runRelay(options: RelayOptions): Promise<RunningRelay> {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const store = await openStore(options.store, {
    passwordFile: options.storePasswordFile,
    heartbeatMs,
  });
  try {
    return await serveWith(store, options, heartbeatMs);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

async function serveWith(
  store: Store,
  options: RelayOptions,
  heartbeatMs: number,
): Promise<RunningRelay> {
  await store.props.repair(); // bounds of issue 9 on a store written before them
  const hub = new Hub();
  const auth = new Authenticator(store, new FailureLimiter());
  const limits: RelayLimits = {
    maxStreams: options.maxStreamsPerDevice ?? 1024,
    // Growing windows are what these bound: a long fat path needs a few MiB per stream, and
    // 50 bulk streams to one device must not hold a gigabyte in the relay.
    linkBudget: 32 * 1024 * 1024,
    maxPendingOpens: 64, // opens a device has not answered; more means it is stuck or attacked
    maxTunnelsPerKey: 512, // an Ansible run with many forks stays far below
  };
  const relayId = options.relayId ?? defaultRelayId();
  const meshUrl = options.meshUrl ?? "";
  const ctx = {
    store,
    hub,
    auth,
    limits,
    events: new EventBus(store),
    audit: new AuditWriter(store),
    keepaliveS: options.keepalive ?? 15,
    relayBudget: new Budget(256 * 1024 * 1024),
    admission: new Admission(options.admission),
    relayId,
    meshUrl,
    heartbeatMs,
    mirror: new PropsMirror(),
    sessions: new SessionAuth(() => store.sessions, { tls: options.tls !== undefined }),
  } as Omit<RelayContext, "members" | "mesh" | "presence"> as RelayContext;
  ctx.presence = new PresenceWriter(store, {
    get id() {
      return ctx.relayId;
    },
    get meshUrl() {
      return ctx.meshUrl;
    },
  });
  ctx.members = new Membership(ctx);
  ctx.mesh = new Mesh(ctx, options.meshKey);
  await ctx.members.start({ forgetOthers: store.kind === "sqlite" });
  const unwatch = await watchStore(ctx);
  const requests = new RequestLimiter();
  const trusted = new Set(options.trustedProxies ?? []);
  const retentionMs = (options.eventRetentionDays ?? 30) * DAY_MS;
  const auditRetentionMs = (options.auditRetentionDays ?? 90) * DAY_MS;
  const prune = async () => {
    const before = Date.now() - retentionMs;
    try {
      await store.events.prune(before);
      await store.props.pruneTombstones(before);
      await store.audit.prune(Date.now() - auditRetentionMs);
      await store.sessions.prune(Date.now());
    } catch (err) {
      log.warn("cannot prune old events and audit rows", { error: err });
    }
  };
  await prune();

  metrics.bind({
    devices: () => hub.deviceCount,
    tunnels: () => hub.tunnelCount,
    subscribers: () => ctx.events.size,
    admissionQueue: () => ctx.admission.queueLength,
  });
  const stopMetrics = new AbortController();
  const metricsServer = options.metrics && serveMetrics(options.metrics, stopMetrics.signal);
  // Stops the relay when the caller aborts, or when joining the mesh fails after listening.
  const stop = new AbortController();
  if (options.signal?.aborted) stop.abort();
  options.signal?.addEventListener("abort", () => stop.abort(), { once: true });
  const server = await serveHttp({
    hostname: options.hostname,
    port: options.port,
    tls: options.tls,
    signal: stop.signal,
    handler: (req, info) =>
      handle(ctx, requests, req, clientAddress(req, info.remoteAddr.hostname, trusted)),
  });

  const timers = [
    setInterval(() => sweepSilent(ctx), SWEEP_MS),
    setInterval(() => flushSeen(ctx), SEEN_FLUSH_MS),
    setInterval(prune, PRUNE_MS),
  ];
  stop.signal.addEventListener("abort", () => {
    stopMetrics.abort();
    ctx.admission.close();
    // Clients first, with the reason: closing the devices would tell them "device disconnected".
    // That includes tunnels peer relays forward here, whose clients learn it through the peer.
    hub.closeTunnels(() => true, SHUTDOWN_REASON, ResetCode.CANCELLED);
    ctx.mesh.close();
    const drainMs = (options.drainS ?? DEFAULT_DRAIN_S) * 1000;
    for (const session of [...hub.sessions()]) {
      session.drain(Math.floor(Math.random() * drainMs));
      session.link.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON);
    }
  }, { once: true });

  const finished = Promise.all([server.finished, metricsServer?.finished]).finally(async () => {
    timers.forEach(clearInterval);
    unwatch();
    await flushSeen(ctx);
    await ctx.events.flush();
    ctx.events.close();
    ctx.mirror.close();
    await ctx.audit.close();
    await ctx.auth.flush();
    ctx.presence.close();
    await ctx.members.leave();
    await store.close();
  });
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `${options.tls ? "https" : "http"}://${host}:${addr.port}`;
  if (options.meshKey && !options.meshUrl) {
    // Peers reach this relay where it listens (the command refuses a wildcard address here).
    ctx.meshUrl = url;
    await ctx.members.beat();
  }
  try {
    await ctx.mesh.join((await liveRelays(ctx)).values());
  } catch (err) {
    stop.abort();
    await finished.catch(() => {});
    throw new OdError((err as Error).message);
  }
  return {
    addr,
    url,
    relayId,
    metricsAddr: metricsServer ? metricsServer.addr : undefined,
    finished: finished.then(() => {}),
  };
}

/**
 * Closes links whose peer has been silent for DEAD_AFTER keepalive periods: daemons and od pipe
 * ping every period, so silence that long means the network between us is gone.
 */
function sweepSilent(ctx: RelayContext): void {
  ctx.mesh.sweep();
  const bound = DEAD_AFTER * ctx.keepaliveS;
  const limit = Date.now() - bound * 1000;
  for (const s of [...ctx.hub.sessions()]) {
    if (s.lastFrameAt < limit) s.link.close(CloseCode.TIMEOUT, `no keepalive for ${bound} s`);
  }
  for (const t of [...ctx.hub.tunnels()]) {
    // A tunnel a peer relay forwards here has its client's keepalive checked by that relay;
    // here the mesh link's own keepalive (Mesh.sweep) covers it.
    if (t.client instanceof MeshStreamLink) continue;
    if (t.client && t.lastFrameAt < limit) {
      t.reset(ResetCode.TIMEOUT, `the client sent nothing for ${bound} s`);
    }
  }
}

/**
 * The address a request comes from: the peer's, or, when the peer is a trusted reverse proxy,
 * the last address that proxy appended to X-Forwarded-For (earlier entries are the client's
 * word and could be forged).
 */
function clientAddress(req: Request, peer: string, trusted: Set<string>): string {
  if (!trusted.has(peer)) return peer;
  const forwarded = req.headers.get("x-forwarded-for")?.split(",").map((s) => s.trim());
  return forwarded?.at(-1) || peer;
}

async function handle(
  ctx: RelayContext,
  requests: RequestLimiter,
  req: Request,
  ip: string,
): Promise<Response | Upgrade> {
  const audit: RequestAudit = { ip, action: "request" };
  try {
    const wait = requests.take(audit.ip);
    if (wait > 0) {
      metrics.throttled.inc("address");
      throw new HttpError(429, `too many requests from ${audit.ip}; retry in ${wait} s`, {
        "retry-after": String(wait),
      });
    }
    return await route(ctx, req, audit);
  } catch (caught) {
    let err = caught;
    if (err instanceof StoreUnavailable) {
      log.warn("store unavailable", { path: new URL(req.url).pathname, error: err });
      err = new HttpError(
        503,
        "the relay cannot reach its store right now; try again in a few seconds",
        { "retry-after": "5" },
      );
    }
    if (err instanceof InvalidValue) err = new HttpError(400, err.message);
    if (err instanceof HttpError) {
      metrics.refused(audit.action, err.status);
      // Every refusal is audited once; throttled floods (and devices told to come back later by
      // admission control) are merged into counted rows.
      const throttled = err.status === 429 ||
        (err.status === 503 && audit.action === "device-link");
      if (!err.audited) {
        ctx.audit.record(audit, throttled ? "throttled" : "refused", { reason: err.message });
      }
      return errorResponse(err);
    }
    log.error("request failed", { path: new URL(req.url).pathname, ip: audit.ip, error: err });
    ctx.audit.record(audit, "error", { reason: "internal error" });
    return json({ error: "internal error" }, 500);
  }
}

/** Refreshes on:lastSeen of every connected device, in one transaction. */
function flushSeen(ctx: RelayContext): Promise<void> {
  const now = Date.now();
  for (const s of ctx.hub.sessions()) ctx.presence.seen(s.record.rowid, { at: now });
  return ctx.presence.flush();
}
