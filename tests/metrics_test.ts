/**
 * Prometheus metrics and admission control, with real processes: a relay with `--metrics`
 * scraped by Debian's own `prometheus` server (its own config, data dir and free port in a temp
 * dir), PromQL through its HTTP API; the public port does not serve /metrics; the series stay
 * the same however many devices and keys there are; and a relay busy admitting a flood of
 * device links still answers /v1/health and opens a client tunnel ahead of the queue.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  clientEnv,
  echoServer,
  enrollByApi,
  type Relay,
  relaySocket,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { encodeControl } from "../src/protocol/frame.ts";

/** Starts a relay with a metrics listener on a free port; returns it and the metrics URL. */
async function relayWithMetrics(dataDir: string, extraArgs: string[] = []) {
  const relay = await startRelay(dataDir, {
    extraArgs: ["--metrics", "127.0.0.1:0", ...extraArgs],
  });
  const m = await relay.proc.waitFor(/metrics listening url=(\S+)/);
  return { relay, metricsUrl: m[1] };
}

/** The exposition text of the metrics listener. */
async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  const text = await res.text();
  assertEquals(res.status, 200, text);
  ok(res.headers.get("content-type")?.startsWith("text/plain; version=0.0.4"));
  return text;
}

/** The value of one sample line (`name{labels}`) in an exposition, or NaN. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

/** A port free right now on 127.0.0.1, for a server that cannot report the port it chose. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts `prometheus` scraping `target` (host:port) every second, in `dir`. */
async function startPrometheus(dir: string, target: string): Promise<{ proc: Proc; api: string }> {
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: od",
      "    metrics_path: /metrics",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const port = freePort();
  const proc = new Proc("prometheus", [
    `--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/tsdb`,
    `--web.listen-address=127.0.0.1:${port}`,
  ], { cmd: "prometheus", cwd: dir });
  await proc.waitFor(/Server is ready to receive web requests/, 60_000).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  return { proc, api: `http://127.0.0.1:${port}/api/v1` };
}

/** Runs an instant PromQL query; returns the first result's value, or NaN when there is none. */
async function promql(api: string, query: string): Promise<number> {
  const res = await fetch(`${api}/query?query=${encodeURIComponent(query)}`);
  const body = await res.json();
  assertEquals(body.status, "success", JSON.stringify(body));
  const first = body.data.result[0];
  return first ? Number(first.value[1]) : NaN;
}

Deno.test("a real Prometheus scrapes the relay: connected devices and a counted tunnel", async () => {
  await using dir = await tempDir();
  const { relay, metricsUrl } = await relayWithMetrics(`${dir}/data`);
  await using _relay = relay;
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const daemons: Proc[] = [];
  try {
    for (const id of ["m-1", "m-2", "m-3"]) {
      daemons.push(
        await startDaemon(relay, {
          key: keys.deviceKey,
          id,
          stateDir: `${dir}/state-${id}`,
          services: { echo: echo.port },
        }),
      );
    }
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const out = await od(["pipe", "m-2", "echo"], { env, stdin: "counted" });
    assertEquals([out.code, out.stdout], [0, "counted"], out.stderr);

    await Deno.mkdir(`${dir}/prom`);
    const prom = await startPrometheus(`${dir}/prom`, new URL(metricsUrl).host);
    try {
      await eventually(
        "Prometheus to see 3 connected devices",
        async () => await promql(prom.api, 'od_devices_connected{job="od"}') === 3,
        30_000,
      );
      await eventually(
        "Prometheus to count the tunnel",
        async () => await promql(prom.api, 'od_tunnel_opens_total{result="ok"}') === 1,
        30_000,
      );
      const up = await promql(
        prom.api,
        'sum(od_forwarded_bytes_total{direction="client_to_device"})',
      );
      assertEquals(up, "counted".length);
      ok(await promql(prom.api, "od_tunnel_open_seconds_count") === 1);
      ok(await promql(prom.api, "process_resident_memory_bytes") > 10_000_000);
    } finally {
      await prom.proc.stop();
    }
    // Metrics are not on the public port.
    const res = await fetch(`${relay.url}/metrics`);
    await res.body?.cancel();
    assertEquals(res.status, 404);
  } finally {
    for (const d of daemons) await d.stop();
  }
});

/** Series names with their labels, without values or comments. */
function seriesOf(text: string): string[] {
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) =>
    l.slice(0, l.lastIndexOf(" "))
  ).sort();
}

/** Opens a device link for `credential` and reports like a daemon; resolves at the hello. */
async function deviceSocket(relay: Relay, credential: string): Promise<WebSocket> {
  const s = await relaySocket(relay, credential, "/v1/device");
  if (!s.ws) throw new Error(`device link refused with ${s.status}`);
  s.ws.send(encodeControl({ t: "info", version: "test", services: ["ssh"], hostKeys: [] }));
  await s.answered;
  return s.ws;
}

Deno.test("the metric series are the same with 20 devices and several keys as with 1", async () => {
  await using dir = await tempDir();
  const { relay, metricsUrl } = await relayWithMetrics(`${dir}/data`);
  await using _relay = relay;
  const keys = await addAccount(relay.dataDir, "acme");
  const sockets: WebSocket[] = [];
  try {
    sockets.push(await deviceSocket(relay, await enrollByApi(relay, keys.deviceKey, "one")));
    const before = await scrape(metricsUrl);
    assertEquals(sample(before, "od_devices_connected"), 1);
    for (let i = 2; i <= 20; i++) {
      sockets.push(await deviceSocket(relay, await enrollByApi(relay, keys.deviceKey, `d-${i}`)));
    }
    for (let i = 0; i < 3; i++) {
      const { key } = await addKey(relay.dataDir, "acme", "client");
      const res = await fetch(`${relay.url}/v1/devices`, {
        headers: { authorization: `Bearer ${key}` },
      });
      assertEquals(res.status, 200);
      await res.body?.cancel();
      // And a refused tunnel and a bad key, so labelled counters move too.
      const refused = await relaySocket(relay, key, "/v1/tunnel?device=nope&service=ssh");
      assertEquals(refused.status, 404);
    }
    const bad = await fetch(`${relay.url}/v1/devices`, {
      headers: { authorization: "Bearer od_client_wrong" },
    });
    await bad.body?.cancel();
    const after = await scrape(metricsUrl);
    assertEquals(sample(after, "od_devices_connected"), 20);
    ok(sample(after, 'od_tunnel_opens_total{result="refused"}') >= 3);
    ok(sample(after, "od_auth_failures_total") >= 1);
    assertEquals(seriesOf(after), seriesOf(before));
  } finally {
    for (const ws of sockets) ws.close();
  }
});

Deno.test("under admission control the relay still answers /v1/health and opens a tunnel at once", async () => {
  await using dir = await tempDir();
  // Two device links a second, and a queue of two: a flood of 40 is mostly told to come back.
  const { relay, metricsUrl } = await relayWithMetrics(`${dir}/data`, ["--admit-rate", "2"]);
  await using _relay = relay;
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge",
    stateDir: `${dir}/state`,
    services: { echo: echo.port },
  });
  const flood: Promise<number>[] = [];
  const sockets: WebSocket[] = [];
  try {
    const credentials = [];
    for (let i = 0; i < 40; i++) {
      credentials.push(await enrollByApi(relay, keys.deviceKey, `f-${i}`));
    }
    for (const c of credentials) {
      flood.push(
        relaySocket(relay, c, "/v1/device").then((s) => {
          if (s.ws) sockets.push(s.ws);
          return s.status;
        }),
      );
    }
    // Wait until the flood is being held back: links queued or told to retry.
    await eventually("admission control to hold the flood back", async () => {
      const text = await scrape(metricsUrl);
      return sample(text, 'od_throttled_requests_total{limiter="admission"}') > 0;
    });
    const health = await fetch(`${relay.url}/v1/health`);
    assertEquals(health.status, 200);
    assertEquals((await health.json()).ok, true);
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const out = await od(["pipe", "edge", "echo"], { env, stdin: "ahead of the queue" });
    assertEquals([out.code, out.stdout], [0, "ahead of the queue"], out.stderr);
    // Most of the flood was told to come back later; none of that reached the client.
    const statuses = await Promise.all(flood);
    ok(statuses.filter((s) => s === 503).length >= 20, `statuses: ${statuses}`);
    const text = await scrape(metricsUrl);
    assertEquals(sample(text, 'od_tunnel_opens_total{result="ok"}'), 1);
    assertEquals(sample(text, 'od_tunnel_opens_total{result="offline"}'), 0);
  } finally {
    for (const ws of sockets) ws.close();
    await daemon.stop();
  }
});
