/**
 * The relay: one HTTP(S) port serving the API and the WebSockets of devices and clients.
 * `runRelay` resolves once it is listening, like Deno.serve, and its `finished` promise settles
 * after the abort signal has fired and every connection is closed.
 */
import { Store } from "../store/store.ts";
import { CloseCode } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import { errorResponse, HttpError, json } from "./http.ts";
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
  /** Days audit rows are kept (default 90). */
  auditRetentionDays?: number;
  /** Addresses of reverse proxies whose X-Forwarded-For is believed. */
  trustedProxies?: string[];
  /** Where to serve Prometheus metrics (GET /metrics); off when unset. */
  metrics?: { hostname: string; port: number };
  /** Rate of new device links. */
  admission?: AdmissionOptions;
}

/** A running relay. */
export interface RunningRelay {
  addr: Deno.NetAddr;
  url: string;
  /** The metrics listener's address, when --metrics is on. */
  metricsAddr?: Deno.NetAddr;
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
  const limits: RelayLimits = {
    maxStreams: options.maxStreamsPerDevice ?? 1024,
    maxPendingOpens: 64, // opens a device has not answered; more means it is stuck or attacked
    maxTunnelsPerKey: 512, // an Ansible run with many forks stays far below
  };
  const ctx: RelayContext = {
    store,
    hub,
    auth,
    limits,
    events: new EventBus(store),
    audit: new AuditWriter(store),
    admission: new Admission(options.admission),
    presence: new PresenceWriter(store),
  };
  const requests = new RequestLimiter();
  const trusted = new Set(options.trustedProxies ?? []);
  const retentionMs = (options.eventRetentionDays ?? 30) * DAY_MS;
  const auditRetentionMs = (options.auditRetentionDays ?? 90) * DAY_MS;
  const prune = () => {
    const before = Date.now() - retentionMs;
    store.events.prune(before);
    store.props.pruneTombstones(before);
    store.audit.prune(Date.now() - auditRetentionMs);
  };
  prune();

  metrics.bind({
    devices: () => hub.deviceCount,
    tunnels: () => hub.tunnelCount,
    subscribers: () => ctx.events.size,
    admissionQueue: () => ctx.admission.queueLength,
  });
  const stopMetrics = new AbortController();
  const metricsServer = options.metrics && serveMetrics(options.metrics, stopMetrics.signal);
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
  }, (req, info) => {
    const remote = (info.remoteAddr as Deno.NetAddr).hostname;
    return handle(ctx, requests, req, clientAddress(req, remote, trusted));
  });

  const timers = [
    setInterval(() => flushSeen(ctx), SEEN_FLUSH_MS),
    setInterval(prune, PRUNE_MS),
    watchRevocations(ctx),
  ];
  options.signal?.addEventListener("abort", () => {
    stopMetrics.abort();
    ctx.admission.close();
    for (const session of [...hub.sessions()]) {
      session.link.close(CloseCode.GOING_AWAY, "the relay is shutting down");
    }
  }, { once: true });

  const finished = Promise.all([server.finished, metricsServer?.finished]).finally(() => {
    timers.forEach(clearInterval);
    flushSeen(ctx);
    ctx.events.flush();
    ctx.audit.close();
    store.close();
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `${options.tls ? "https" : "http"}://${host}:${addr.port}`;
  return Promise.resolve({
    addr,
    url,
    metricsAddr: metricsServer ? metricsServer.addr : undefined,
    finished: finished.then(() => {}),
  });
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
): Promise<Response> {
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
  } catch (err) {
    if (err instanceof HttpError) {
      metrics.refused(audit.action, err.status);
      // Every refusal is audited; throttled floods (and devices told to come back later by
      // admission control) are merged into counted rows.
      const throttled = err.status === 429 ||
        (err.status === 503 && audit.action === "device-link");
      ctx.audit.record(audit, throttled ? "throttled" : "refused", {
        reason: err.message,
      });
      return errorResponse(err);
    }
    log.error("request failed", { path: new URL(req.url).pathname, ip: audit.ip, error: err });
    ctx.audit.record(audit, "error", { reason: "internal error" });
    return json({ error: "internal error" }, 500);
  }
}

/** Refreshes on:lastSeen of every connected device, in one transaction. */
function flushSeen(ctx: RelayContext): void {
  const now = Date.now();
  for (const s of ctx.hub.sessions()) ctx.presence.seen(s.record.rowid, { at: now });
  ctx.presence.flush();
}

/** Applies revocations and removals that `od admin` made in the store while the relay runs. */
function watchRevocations(ctx: RelayContext): ReturnType<typeof setInterval> {
  const started = Date.now();
  const handled = new Set<string>();
  let version = ctx.store.dataVersion();
  return setInterval(() => {
    const v = ctx.store.dataVersion();
    if (v === version) return;
    version = v;
    // Devices removed behind the relay's back (od admin account rm) lose their links.
    for (const s of [...ctx.hub.sessions()]) {
      const current = ctx.store.devices.get(s.record.accountId, s.record.name);
      if (current?.rowid !== s.record.rowid) {
        s.link.close(CloseCode.REVOKED, "the device was removed from its account");
      }
    }
    const fresh = ctx.store.accounts.revokedSince(started).filter((id) => !handled.has(id));
    if (fresh.length === 0) return;
    fresh.forEach((id) => handled.add(id));
    const revoked = new Set(fresh);
    const n = ctx.hub.closeTunnels((t) => revoked.has(t.info.keyId), "the key was revoked");
    log.info("keys revoked", { keys: fresh.join(","), tunnelsClosed: n });
  }, WATCH_MS);
}
