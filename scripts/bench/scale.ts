/**
 * `deno task bench --only fleet`: the relay with a large fleet of idle devices, each figure next
 * to a baseline measured in the same run:
 *
 * - relay RSS per idle device at each size, ws and wss, next to a plain Deno server holding as
 *   many sockets from the same load processes;
 * - relay CPU at idle over a minute with the main size (the daemon's default keepalive), next to
 *   the plain server's;
 * - tunnel open p50/p99 with the main fleet connected, next to the same relay with 1 device;
 * - `od list --json` and `od list site=x` (10 matches) at the main size, next to a relay with 1;
 * - a reconnect storm: kill -9 of the relay holding the main fleet and a restart on the same data
 *   directory: seconds until 50/99/100% are back (next to the first connect of the same fleet),
 *   the relay's peak RSS, and tunnel open p99 for a client opening tunnels meanwhile.
 *
 * The fleet is enrolled in the store ahead of time and held by load processes (fleet_load.ts)
 * that behave like daemons; the relay trusts 127.0.0.1 as a proxy so each device is throttled as
 * its own address. Graceful restart (`--drain`) is not measured yet.
 */
import { tempDir } from "../../tests/_harness.ts";
import { clientEnv, echoServer, startDaemon, type TestCa } from "../../tests/_fleet.ts";
import { openTunnel } from "../../src/client/pipe.ts";
import type { RelayTarget } from "../../src/transport/dial.ts";
import {
  cpuSeconds,
  emit,
  figure,
  helper,
  percentile,
  progress,
  Reports,
  round,
  rssKiB,
} from "./util.ts";
import {
  type FleetStore,
  type MeteredRelay,
  metric,
  prepareStore,
  SITE_MATCHES,
  startLoad,
  startMeteredRelay,
  until,
} from "./scale_setup.ts";
import { type Transport } from "./fleet.ts";
import { listWallMs, storm } from "./storm.ts";

const OPENS = 200; // sequential tunnel opens for each latency percentile
const IDLE_S = 60; // the idle CPU window
const SETTLE_MS = 2_000; // lets a server finish the work the connects left behind
const RSS_GOAL_KIB = 32;
const IDLE_CPU_GOAL = 5; // % of one core
const LIST_GOAL_MS = 300;
const FILTER_GOAL_MS = 100;
const OPEN_RATIO_GOAL = 1.5;
const STORM_99_GOAL_S = 60;
const STORM_OPEN_GOAL_MS = 1_000;
const WARMUP = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Generous time for N links to come up: the relay admits 500 a second by default. */
const connectTimeout = (n: number) => 60_000 + n * 20;

/** Open times (ms) of `count` tunnels to the echo service of device `bench`. */
export async function opens(target: RelayTarget, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const started = performance.now();
    const { link } = await openTunnel(target, "bench", "echo");
    if (i >= WARMUP) times.push(performance.now() - started);
    link.close();
    await link.flushed();
  }
  return times;
}

/** Memory and idle CPU of a server process holding `count` links of the load. */
async function hold(
  pid: number,
  load: Awaited<ReturnType<typeof startLoad>>,
  count: number,
  check: () => Promise<boolean>,
) {
  await sleep(SETTLE_MS);
  const baseKiB = rssKiB(pid);
  const connectMs = await load.go(connectTimeout(count));
  await until(`${count} links`, check, 60_000);
  await sleep(SETTLE_MS);
  const loadedKiB = rssKiB(pid);
  return { baseKiB, loadedKiB, perKiB: (loadedKiB - baseKiB) / count, connectMs };
}

/** CPU of `pid` over IDLE_S seconds, as % of one core. */
async function idleCpu(pid: number, ticks: number): Promise<number> {
  const before = cpuSeconds(pid, ticks);
  await sleep(IDLE_S * 1000);
  return ((cpuSeconds(pid, ticks) - before) / IDLE_S) * 100;
}

/** A plain Deno server holding `count` idle sockets of the load: memory, and idle CPU. */
async function plainHold(
  t: Transport,
  ca: TestCa,
  fleet: FleetStore,
  count: number,
  ticks: number,
  cpu: boolean,
) {
  const tls = t === "wss" ? [ca.certFile, ca.keyFile] : [];
  await using server = helper("ws hold", "ws_peer.ts", ["hold", ...tls]);
  const { port } = await new Reports(server).next<{ port: number }>();
  const url = `${t === "wss" ? "https://localhost" : "http://127.0.0.1"}:${port}`;
  await using load = await startLoad(
    "plain",
    url,
    fleet.credsFile,
    count,
    t === "wss" ? ca.caFile : undefined,
  );
  const held = await hold(server.pid, load, count, () => Promise.resolve(true));
  const cpuPct = cpu ? await idleCpu(server.pid, ticks) : NaN;
  progress(
    `plain ${t} server with ${count}: ${round(held.perKiB)} KiB per socket` +
      (cpu ? `, idle CPU ${round(cpuPct)}%` : ""),
  );
  return { ...held, cpuPct };
}

/** Median wall time of `od list` runs against a relay with one device (the list baselines). */
async function listBaselines(dir: string) {
  const fleet = prepareStore(`${dir}/one`, 1);
  await using relay = await startMeteredRelay(fleet.dataDir);
  const env = clientEnv(relay, fleet.keys.clientKey, `${dir}/one/config`);
  return {
    json: await listWallMs(["list", "--json"], env, 1),
    filter: await listWallMs(["list", "site=s0"], env, 1),
  };
}

/** The main fleet over ws with a real daemon: memory, idle CPU, opens, listing and the storm. */
async function mainFleet(dir: string, size: number, ticks: number) {
  progress(`enrolling ${size} devices in a new store`);
  const fleet = prepareStore(`${dir}/main`, size);
  const lists = await listBaselines(dir);
  await using echo = echoServer();
  let relay: MeteredRelay = await startMeteredRelay(fleet.dataDir);
  try {
    await using _daemon = await startDaemon(relay, {
      key: fleet.keys.deviceKey,
      id: "bench",
      stateDir: `${dir}/main/state`,
      services: { echo: echo.port },
    });
    const target = { url: relay.url, secret: fleet.keys.clientKey };
    const one = await opens(target, OPENS);
    await using load = await startLoad("od", relay.url, fleet.credsFile, size);
    const metricsUrl = relay.metricsUrl;
    const held = await hold(
      relay.proc.pid,
      load,
      size,
      async () => await metric(metricsUrl, "od_devices_connected") === size + 1,
    );
    progress(
      `${size} devices up in ${round(held.connectMs / 1000)} s; relay ${
        round(held.perKiB)
      } KiB each`,
    );
    const cpuPct = await idleCpu(relay.proc.pid, ticks);
    const many = await opens(target, OPENS);
    const env = clientEnv(relay, fleet.keys.clientKey, `${dir}/main/config`);
    const listJson = await listWallMs(["list", "--json"], env, size + 1);
    const listFilter = await listWallMs(["list", "site=s7"], env, SITE_MATCHES);
    progress(`storm: kill -9 of the relay holding ${size + 1} devices`);
    const steadyKiB = rssKiB(relay.proc.pid);
    const s = await storm(relay, fleet.dataDir, size + 1, target);
    relay = s.relay;
    return { held, cpuPct, one, many, listJson, listFilter, lists, storm: s, steadyKiB, fleet };
  } finally {
    await relay[Symbol.asyncDispose]();
  }
}

/** Relay memory per idle device for one size and transport (no daemon, no CPU window). */
async function relayHold(t: Transport, ca: TestCa, fleet: FleetStore) {
  await using relay = await startMeteredRelay(fleet.dataDir, { tls: t === "wss" ? ca : undefined });
  await using load = await startLoad("od", relay.url, fleet.credsFile, fleet.count, relay.ca);
  const held = await hold(
    relay.proc.pid,
    load,
    fleet.count,
    async () => await metric(relay.metricsUrl, "od_devices_connected") === fleet.count,
  );
  progress(
    `relay over ${t} with ${fleet.count}: ${round(held.perKiB)} KiB per device, up in ${
      round(held.connectMs / 1000)
    } s`,
  );
  return held;
}

function rssFigure(t: Transport, size: number, relayKiB: number, plainKiB: number): void {
  emit(
    figure(
      `relay_rss_per_device_${t}_${size}`,
      relayKiB,
      "KiB",
      `plain_${t}_server_per_socket_${size}`,
      plainKiB,
      {
        target: `<= ${RSS_GOAL_KIB} KiB`,
        meets: (v) => v <= RSS_GOAL_KIB,
      },
    ),
  );
}

/** Every fleet figure; `sizes` are the main size first, then the others for memory only. */
export async function fleetFigures(ca: TestCa, ticks: number, sizes: number[]): Promise<void> {
  await using dir = await tempDir("od-bench-fleet-");
  const [main, ...others] = sizes;
  const m = await mainFleet(dir, main, ticks);
  const plain = await plainHold("ws", ca, m.fleet, main, ticks, true);
  rssFigure("ws", main, m.held.perKiB, plain.perKiB);
  emit(
    figure(
      `relay_idle_cpu_ws_${main}`,
      m.cpuPct,
      "% of a core",
      `plain_ws_server_idle_cpu_${main}`,
      plain.cpuPct,
      {
        target: `<= ${IDLE_CPU_GOAL}%`,
        meets: (v) => v <= IDLE_CPU_GOAL,
      },
    ),
  );
  const p = (xs: number[], q: number) => percentile(xs, q);
  emit(
    figure(
      `tunnel_open_p50_with_${main}`,
      p(m.many, 50),
      "ms",
      "tunnel_open_p50_with_1",
      p(m.one, 50),
      {
        target: `<= ${OPEN_RATIO_GOAL} x with 1`,
        meets: (_, r) => r <= OPEN_RATIO_GOAL,
      },
    ),
  );
  emit(
    figure(
      `tunnel_open_p99_with_${main}`,
      p(m.many, 99),
      "ms",
      "tunnel_open_p99_with_1",
      p(m.one, 99),
    ),
  );
  emit(figure(`od_list_json_${main}`, m.listJson, "ms", "od_list_json_1", m.lists.json, {
    target: `<= ${LIST_GOAL_MS} ms`,
    meets: (v) => v <= LIST_GOAL_MS,
  }));
  emit(
    figure(
      `od_list_filter_${SITE_MATCHES}_of_${main}`,
      m.listFilter,
      "ms",
      "od_list_filter_1",
      m.lists.filter,
      {
        target: `<= ${FILTER_GOAL_MS} ms`,
        meets: (v) => v <= FILTER_GOAL_MS,
      },
    ),
  );
  const s = m.storm;
  const first = m.held.connectMs / 1000;
  for (const [q, goal] of [[50, null], [99, STORM_99_GOAL_S], [100, null]] as const) {
    emit(
      figure(
        `storm_online_${q}pct_s_${main}`,
        s.online[q],
        "s",
        "first_connect_all_s",
        first,
        goal === null ? undefined : {
          target: `<= ${goal} s`,
          meets: (v) => v <= goal,
        },
      ),
    );
  }
  emit(
    figure(
      `storm_relay_peak_rss_${main}`,
      s.peakKiB / 1024,
      "MiB",
      "steady_rss_connected",
      m.steadyKiB / 1024,
    ),
  );
  emit(
    figure(
      `storm_tunnel_open_p99_${main}`,
      p(s.opens, 99),
      "ms",
      `idle_tunnel_open_p99_${main}`,
      p(m.many, 99),
      {
        target: `<= ${STORM_OPEN_GOAL_MS} ms`,
        meets: (v) => v <= STORM_OPEN_GOAL_MS,
      },
    ),
  );
  emit(
    figure(
      `storm_tunnel_answer_p99_${main}`,
      p(s.answers, 99),
      "ms",
      `idle_tunnel_open_p99_${main}`,
      p(m.many, 99),
      {
        target: `<= ${STORM_OPEN_GOAL_MS} ms`,
        meets: (v) => v <= STORM_OPEN_GOAL_MS,
      },
    ),
  );
  progress(
    `storm: ${s.opens.length} tunnels opened during it, ${s.failures} attempts refused while the daemon was away (first open at ${
      round(s.firstOpenS)
    } s), relay restarted in ${round(s.restartS)} s`,
  );
  for (const size of [main, ...others]) {
    const fleet = size === main ? m.fleet : prepareStore(`${dir}/f${size}`, size);
    for (const t of ["ws", "wss"] as const) {
      if (size === main && t === "ws") continue; // measured above
      const relay = await relayHold(t, ca, fleet);
      const plainT = await plainHold(t, ca, fleet, size, ticks, false);
      rssFigure(t, size, relay.perKiB, plainT.perKiB);
    }
  }
}
