/**
 * `deno task bench`: measures od on this machine and prints one JSON line per figure on stdout,
 * each next to a baseline peer measured in the same run (progress goes to stderr):
 *
 * 1. tunnel throughput through a real `od pipe` process over ws and wss, next to a direct TCP
 *    copy and to one raw wss hop between two Deno processes;
 * 2. relay CPU seconds per GiB forwarded, next to the raw wss hop server's;
 * 3. tunnel open latency (p50/p95 of sequential `openTunnel` calls), next to a TCP connect;
 * 4. relay memory per connected idle device, next to a plain Deno WebSocket server;
 * 5. with the real ssh client: bulk upload and download through `od ssh` over ws and wss, next
 *    to direct ssh and an `ssh -R` gateway, and connect time next to direct ssh
 *    (scripts/bench/ssh.ts).
 *
 * 6. across an emulated link (scripts/linkem.ts): echo latency under a bulk transfer, ssh
 *    downloads on a long and a fast link, relay memory with 50 bulk streams, each next to
 *    direct connections through the same link (scripts/bench/links.ts).
 * 7. with a fleet of 10,000 and 18,000 idle devices: relay memory and idle CPU, tunnel opens,
 *    `od list`, and a reconnect storm after kill -9 (scripts/bench/scale.ts).
 * 8. through two relays of a mesh on PostgreSQL: tunnel throughput and open latency, next to
 *    the same through one relay of that mesh (scripts/bench/mesh.ts).
 * 9. the web dashboard in chromium: first rows of the devices page with 10,000 devices online,
 *    next to one device (scripts/bench/dashboard.ts).
 *
 * `--only core` runs figures 1–4, `--only ssh` figure 5, `--only links` figure 6, `--only fleet`
 * figure 7 (sizes from `--fleet-sizes 10000,18000`: the first gets every figure, the others
 * memory only), `--only mesh` figure 8, `--only dashboard` figure 9 (at the first fleet size);
 * without `--only` all run. Every process and server it starts is stopped on the way out, also when a
 * step fails.
 */
import { parseArgs } from "node:util";
import { tempDir } from "../tests/_harness.ts";
import { echoServer, makeTestCa, type TestCa } from "../tests/_fleet.ts";
import { type Fleet, startFleet, type Transport } from "./bench/fleet.ts";
import { feedBlock, type PipeRun, pipeRun, startWssHop, tcpRun } from "./bench/throughput.ts";
import { tcpConnects, tunnelOpens, webSocketOpens } from "./bench/latency.ts";
import { plainPerSocket, relayPerDevice } from "./bench/memory.ts";
import { sshFigures } from "./bench/ssh.ts";
import { linksFigures } from "./bench/links.ts";
import { fleetFigures } from "./bench/scale.ts";
import { meshFigures } from "./bench/mesh.ts";
import { dashboardFigures } from "./bench/dashboard.ts";
import {
  clockTicks,
  emit,
  figure,
  helper,
  percentile,
  progress,
  Reports,
  round,
} from "./bench/util.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TRANSFER = 256 * MiB; // bytes per throughput run: 1–2 s through a tunnel on loopback
const ROUNDS = 5; // throughput runs of each kind, interleaved; medians damp a busy machine
const OPENS = 200; // sequential tunnel opens per transport for the latency percentiles
const DEVICES = 1000; // idle device links held by the load process
const OPEN_P50_GOAL_MS = 5; // on loopback an open should cost next to nothing beside ssh's own
const PER_DEVICE_GOAL_KIB = 32; // 32 MiB per 1,000 devices keeps a small VM relay viable

/** The TCP sink every byte-counting run writes to, in its own process. */
interface Sink {
  proc: ReturnType<typeof helper>;
  reports: Reports;
  port: number;
}

/** Sums of CPU seconds by process over a transport's pipe runs. */
type CpuTotals = Record<keyof PipeRun["cpu"], number>;

function addCpu(totals: CpuTotals, run: PipeRun): void {
  for (const k of Object.keys(totals) as (keyof CpuTotals)[]) totals[k] += run.cpu[k];
}

/** Interleaved rounds of every throughput run; returns MiB/s lists and CPU totals. */
async function throughputRounds(sink: Sink, fleets: Fleet[], ca: TestCa, ticks: number) {
  const feed = feedBlock();
  const speeds: Record<string, number[]> = { tcp: [], hop: [], ws: [], wss: [] };
  const hopCpu = { server: 0, sender: 0 };
  const cpu = new Map<Transport, CpuTotals>();
  await using hop = await startWssHop(ca, ticks);
  for (let round = 1; round <= ROUNDS; round++) {
    speeds.tcp.push((await tcpRun(sink, TRANSFER)).mibps);
    const h = await hop.run(TRANSFER);
    speeds.hop.push(h.mibps);
    hopCpu.server += h.serverCpu;
    hopCpu.sender += h.senderCpu;
    for (const fleet of fleets) {
      const run = await pipeRun(fleet, sink, feed, TRANSFER, ticks);
      speeds[fleet.transport].push(run.mibps);
      const totals = cpu.get(fleet.transport) ??
        { relay: 0, daemon: 0, pipe: 0, sink: 0, feeder: 0 };
      addCpu(totals, run);
      cpu.set(fleet.transport, totals);
    }
    const last = Object.entries(speeds).map(([k, v]) => `${k} ${Math.round(v.at(-1)!)}`);
    progress(`throughput round ${round}/${ROUNDS} (MiB/s): ${last.join(", ")}`);
  }
  return { speeds, hopCpu, cpu };
}

/** Figures 1 and 2: throughput and relay CPU per GiB. */
async function throughputFigures(sink: Sink, fleets: Fleet[], ca: TestCa, ticks: number) {
  const { speeds, hopCpu, cpu } = await throughputRounds(sink, fleets, ca, ticks);
  const median = (k: string) => percentile(speeds[k], 50);
  emit(figure("tunnel_throughput_ws", median("ws"), "MiB/s", "direct_tcp_copy", median("tcp")));
  emit(figure("tunnel_throughput_wss", median("wss"), "MiB/s", "raw_wss_hop", median("hop"), {
    target: ">= 0.5 x raw wss hop",
    meets: (_, ratio) => ratio >= 0.5,
  }));
  emit(figure("raw_wss_hop_throughput", median("hop"), "MiB/s", "direct_tcp_copy", median("tcp")));
  const gib = (ROUNDS * TRANSFER) / GiB;
  const hopTotal = (hopCpu.server + hopCpu.sender) / gib;
  cpuBudget("raw wss hop", { server: hopCpu.server, sender: hopCpu.sender }, gib);
  for (const [transport, totals] of cpu) {
    const total = cpuBudget(`${transport} tunnel`, totals, gib);
    if (transport === "wss") {
      progress(`the wss tunnel needs ${round(total / hopTotal)} x the CPU per byte of the raw hop`);
    }
  }
  emit(figure(
    "relay_cpu_per_gib_wss",
    cpu.get("wss")!.relay / gib,
    "s/GiB",
    "raw_wss_hop_server",
    hopCpu.server / gib,
  ));
}

/**
 * Logs CPU seconds per GiB by process, and the speed all cores could reach if CPU were the only
 * limit (every process of a chain runs at once on a shared machine); returns the total.
 */
function cpuBudget(what: string, seconds: Record<string, number>, gib: number): number {
  const total = Object.values(seconds).reduce((a, b) => a + b, 0) / gib;
  const parts = Object.entries(seconds).map(([k, s]) => `${k} ${round(s / gib)}`);
  const ceiling = (navigator.hardwareConcurrency / total) * (GiB / MiB);
  progress(
    `CPU s/GiB, ${what}: ${parts.join(", ")}; total ${round(total)}, so at most ` +
      `${Math.round(ceiling)} MiB/s on ${navigator.hardwareConcurrency} cores`,
  );
  return total;
}

/** Figure 3: tunnel open latency per transport, and a raw wss open for context. */
async function latencyFigures(fleets: Fleet[], echoPort: number, ca: TestCa) {
  const tcp = await tcpConnects(echoPort, OPENS);
  const tcpP = { p50: percentile(tcp, 50), p95: percentile(tcp, 95) };
  for (const fleet of fleets) {
    const opens = await tunnelOpens(fleet, OPENS);
    const t = fleet.transport;
    emit(figure(`tunnel_open_p50_${t}`, percentile(opens, 50), "ms", "tcp_connect_p50", tcpP.p50, {
      target: `p50 < ${OPEN_P50_GOAL_MS} ms`,
      meets: (v) => v < OPEN_P50_GOAL_MS,
    }));
    emit(figure(`tunnel_open_p95_${t}`, percentile(opens, 95), "ms", "tcp_connect_p95", tcpP.p95));
  }
  await using server = helper("ws hold", "ws_peer.ts", ["hold", ca.certFile, ca.keyFile]);
  const { port } = await new Reports(server).next<{ port: number }>();
  const caPem = await Deno.readTextFile(ca.caFile);
  const raw = await webSocketOpens(`wss://localhost:${port}/`, caPem, OPENS);
  emit(figure("raw_wss_open_p50", percentile(raw, 50), "ms", "tcp_connect_p50", tcpP.p50));
  emit(figure("raw_wss_open_p95", percentile(raw, 95), "ms", "tcp_connect_p95", tcpP.p95));
}

/** Figure 4: relay memory per idle device, per transport. */
async function memoryFigures(ca: TestCa) {
  for (const t of ["ws", "wss"] as const) {
    const relay = await relayPerDevice(t, ca, DEVICES);
    progress(
      `relay RSS over ${t}: ${relay.freshKiB} KiB fresh, ${relay.baseKiB} KiB after enrolling ` +
        `${DEVICES} devices, ${relay.loadedKiB} KiB with them connected`,
    );
    const plain = await plainPerSocket(t, ca, DEVICES);
    progress(
      `plain server RSS over ${t}: ${plain.baseKiB} KiB idle, ${plain.loadedKiB} KiB loaded`,
    );
    emit(figure(
      `relay_rss_per_device_${t}`,
      relay.perConnKiB,
      "KiB",
      `plain_${t}_server_per_socket`,
      plain.perConnKiB,
      { target: `<= ${PER_DEVICE_GOAL_KIB} KiB`, meets: (v) => v <= PER_DEVICE_GOAL_KIB },
    ));
  }
}

/** The groups of figures `--only` can pick. */
const SUITES = ["core", "ssh", "links", "fleet", "mesh", "dashboard"] as const;
const FLEET_SIZES = [10_000, 18_000]; // the sizes; 18,000 fits 20,000 descriptors
type Suite = (typeof SUITES)[number];

/** The suites named by `--only` (repeatable, or comma-separated; all when none is named). */
function chosenSuites(args: string[]): { suites: Set<Suite>; sizes: number[] } {
  const usage = `usage: deno task bench [--only ${SUITES.join("|")}]… [--fleet-sizes N,N…]`;
  let values;
  try {
    values = parseArgs({
      args,
      options: { only: { type: "string", multiple: true }, "fleet-sizes": { type: "string" } },
    }).values;
  } catch (err) {
    throw new Error(`${(err as Error).message}; ${usage}`);
  }
  const names = (values.only ?? [...SUITES]).flatMap((o) => o.split(","));
  const unknown = names.filter((n) => !(SUITES as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`unknown suite ${unknown.join(", ")}; ${usage}`);
  const sizes = values["fleet-sizes"]?.split(",").map(Number) ?? FLEET_SIZES;
  if (!sizes.every((n) => Number.isInteger(n) && n >= 10 && n <= 19_000)) {
    throw new Error(`--fleet-sizes takes sizes from 10 to 19000; ${usage}`);
  }
  return { suites: new Set(names as Suite[]), sizes };
}

/** Figures 1–4, against relays and daemons exposing a TCP sink and an echo service. */
async function coreFigures(ca: TestCa, ticks: number): Promise<void> {
  {
    await using sinkProc = helper("tcp sink", "tcp_peer.ts", ["sink"]);
    const reports = new Reports(sinkProc);
    const sink = { proc: sinkProc, reports, port: (await reports.next<{ port: number }>()).port };
    await using echo = echoServer();
    const ports = { sink: sink.port, echo: echo.port };
    await using ws = await startFleet("ws", ca, ports);
    await using wss = await startFleet("wss", ca, ports);
    progress("relays and daemons up; measuring throughput");
    await throughputFigures(sink, [ws, wss], ca, ticks);
    progress("measuring tunnel open latency");
    await latencyFigures([ws, wss], echo.port, ca);
  }
  progress(`measuring memory with ${DEVICES} idle devices`);
  await memoryFigures(ca);
}

async function main(suites: Set<Suite>, sizes: number[]): Promise<void> {
  const started = performance.now();
  const ticks = await clockTicks();
  await using dir = await tempDir("od-bench-");
  const ca = await makeTestCa(dir);
  if (suites.has("core")) await coreFigures(ca, ticks);
  if (suites.has("ssh")) await sshFigures(ca, ticks);
  if (suites.has("links")) await linksFigures(dir, ticks);
  if (suites.has("fleet")) await fleetFigures(ca, ticks, sizes);
  if (suites.has("mesh")) await meshFigures(ticks);
  if (suites.has("dashboard")) await dashboardFigures(sizes[0]);
  progress(`done in ${Math.round((performance.now() - started) / 1000)} s`);
}

if (import.meta.main) {
  let chosen: ReturnType<typeof chosenSuites>;
  try {
    chosen = chosenSuites(Deno.args);
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    Deno.exit(2); // a usage error, as od's own commands exit
  }
  await main(chosen.suites, chosen.sizes);
}
