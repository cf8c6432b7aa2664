/**
 * The relay's Prometheus metrics and the separate listener that serves them
 * (`od serve --metrics HOST:PORT`, GET /metrics; nothing on the public port). Hooks are one-line
 * calls at the places where things happen (see the list in `metrics` below); gauges that mirror
 * live state are read from the relay at scrape time. Every label has a fixed set of values, so
 * the series do not grow with devices, keys or addresses.
 */
import { CloseCode } from "../transport/link.ts";
import { setTransactionObserver } from "../store/observe.ts";
import { log } from "../shared/log.ts";
import { Counter, EXPOSITION_TYPE, Gauge, Histogram, Registry } from "./metrics.ts";

/** Why a device link ended, as the disconnect counter's `reason` label says it. */
export const DISCONNECT_REASONS = [
  "closed", // the daemon or the relay closed it normally (1000, 1001)
  "replaced", // the device connected again
  "timeout", // keepalive or handshake timeout
  "protocol", // a malformed or forbidden frame
  "limit", // too many streams, frames or control messages
  "revoked", // removed or revoked
  "lost", // the connection dropped without a close handshake
  "other",
] as const;

/** How a tunnel open ended, for the `result` label. */
export const OPEN_RESULTS = ["ok", "refused", "offline", "throttled", "failed"] as const;

/** Which limit throttled a request. */
export const LIMITERS = ["address", "auth", "key", "admission"] as const;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];
const LAG_SAMPLE_MS = 500; // a timer this often; its lateness is the event loop's lag
const LAG_WINDOW = 10; // samples kept: the gauge shows the worst of the last 5 s

/** Live state the scrape-time gauges read. */
export interface MetricSources {
  devices(): number;
  tunnels(): number;
  subscribers(): number;
  admissionQueue(): number;
}

function reasonOf(code: number): (typeof DISCONNECT_REASONS)[number] {
  switch (code) {
    case 1000:
    case 1001:
      return "closed";
    case CloseCode.REPLACED:
      return "replaced";
    case CloseCode.TIMEOUT:
      return "timeout";
    case CloseCode.PROTOCOL:
      return "protocol";
    case CloseCode.LIMIT:
      return "limit";
    case CloseCode.REVOKED:
      return "revoked";
    case 0: // Deno reports a connection that died without a close frame as 0 or 1006
    case 1005:
    case 1006:
      return "lost";
    default:
      return "other";
  }
}

/** The relay's metrics. */
export class RelayMetrics {
  readonly registry = new Registry();
  #sources: MetricSources = {
    devices: () => 0,
    tunnels: () => 0,
    subscribers: () => 0,
    admissionQueue: () => 0,
  };
  #lags: number[] = [];

  readonly devicesConnected = this.#gauge(
    "od_devices_connected",
    "Device links open now.",
    () => this.#sources.devices(),
  );
  readonly deviceConnects = this.registry.add(
    new Counter("od_device_connects_total", "Device link attempts, by result.", {
      name: "result",
      values: ["ok", "refused", "throttled"],
    }),
  );
  readonly deviceDisconnects = this.registry.add(
    new Counter("od_device_disconnects_total", "Device links ended, by reason.", {
      name: "reason",
      values: DISCONNECT_REASONS,
    }),
  );
  readonly tunnelsOpen = this.#gauge(
    "od_tunnels_open",
    "Client tunnels open now.",
    () => this.#sources.tunnels(),
  );
  readonly tunnelOpens = this.registry.add(
    new Counter("od_tunnel_opens_total", "Tunnel open attempts, by result.", {
      name: "result",
      values: OPEN_RESULTS,
    }),
  );
  readonly tunnelOpenSeconds = this.registry.add(
    new Histogram(
      "od_tunnel_open_seconds",
      "Time from a tunnel request being accepted to the device's answer.",
      LATENCY_BUCKETS,
    ),
  );
  readonly forwardedBytes = this.registry.add(
    new Counter("od_forwarded_bytes_total", "Payload bytes forwarded through tunnels.", {
      name: "direction",
      values: ["client_to_device", "device_to_client"],
    }),
  );
  readonly authFailures = this.registry.add(
    new Counter("od_auth_failures_total", "Requests refused for a missing or invalid secret."),
  );
  readonly throttled = this.registry.add(
    new Counter("od_throttled_requests_total", "Requests refused by a rate limit, by limit.", {
      name: "limiter",
      values: LIMITERS,
    }),
  );
  readonly admissionQueue = this.#gauge(
    "od_admission_queue_length",
    "Device links waiting for admission.",
    () => this.#sources.admissionQueue(),
  );
  readonly storeTransactionSeconds = this.registry.add(
    new Histogram("od_store_transaction_seconds", "Store transaction latency.", STORE_BUCKETS),
  );
  readonly eventSubscribers = this.#gauge(
    "od_event_subscribers",
    "Clients following events now.",
    () => this.#sources.subscribers(),
  );
  readonly rss = this.#gauge(
    "process_resident_memory_bytes",
    "Resident memory of the relay process.",
    () => Deno.memoryUsage().rss,
  );
  readonly eventLoopLag = this.#gauge(
    "od_event_loop_lag_seconds",
    "Worst lateness of a 500 ms timer over the last 5 s.",
    () => Math.max(0, ...this.#lags),
  );

  #gauge(name: string, help: string, collect: () => number): Gauge {
    return this.registry.add(new Gauge(name, help, collect));
  }

  /** Connects the scrape-time gauges to a running relay. */
  bind(sources: MetricSources): void {
    this.#sources = sources;
  }

  /** Counts a device link that ended with WebSocket close `code`. */
  deviceClosed(code: number): void {
    this.deviceDisconnects.inc(reasonOf(code));
  }

  /** Counts a tunnel the device answered, timing it from `startedMs` (Date.now()). */
  tunnelOpened(startedMs: number): void {
    this.tunnelOpens.inc("ok");
    this.tunnelOpenSeconds.observe((Date.now() - startedMs) / 1000);
  }

  /** Counts a refused request by what it asked for and the status it got. */
  refused(action: string, status: number): void {
    const result = status === 429 ? "throttled" : "refused";
    if (action === "device-link") this.deviceConnects.inc(status === 503 ? "throttled" : result);
    if (action === "tunnel") this.tunnelOpens.inc(status === 503 ? "offline" : result);
  }

  /** Samples the event loop's lag until `signal` aborts. */
  sampleLag(signal: AbortSignal): void {
    let expected = performance.now() + LAG_SAMPLE_MS;
    const timer = setInterval(() => {
      const now = performance.now();
      this.#lags.push(Math.max(0, now - expected) / 1000);
      if (this.#lags.length > LAG_WINDOW) this.#lags.shift();
      expected = now + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS);
    signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  }
}

/** The process's relay metrics; hooks call into this. */
export const metrics = new RelayMetrics();
setTransactionObserver((seconds) => metrics.storeTransactionSeconds.observe(seconds));

/**
 * Serves GET /metrics on its own listener until `signal` aborts; resolves once listening.
 * Everything else is 404, so the listener shows nothing but the metrics.
 */
export function serveMetrics(
  where: { hostname: string; port: number },
  signal: AbortSignal,
): { addr: Deno.NetAddr; finished: Promise<void> } {
  metrics.sampleLag(signal);
  const server = Deno.serve({
    ...where,
    signal,
    onListen: () => {},
    onError: (err) => {
      log.error("metrics request failed", { error: err });
      return new Response("internal error\n", { status: 500 });
    },
  }, (req) => {
    const path = new URL(req.url).pathname;
    if (path !== "/metrics") return new Response("not found\n", { status: 404 });
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    return new Response(req.method === "HEAD" ? null : metrics.registry.render(), {
      headers: { "content-type": EXPOSITION_TYPE, "cache-control": "no-store" },
    });
  });
  return { addr: server.addr as Deno.NetAddr, finished: server.finished };
}
