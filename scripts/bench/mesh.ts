/**
 * `deno task bench --only mesh`: what forwarding through a second relay costs. Two relays on
 * one PostgreSQL (tests/_mesh.ts), one daemon holding its link to relay B with a TCP sink and
 * an echo service; the same `od pipe` runs and tunnel opens go once through relay B alone (the
 * client and the device on one relay: the peer) and once through relay A, which forwards over
 * its mesh link to B. Rounds of both are interleaved, so a busy machine slows both alike.
 */
import { clientEnv, echoServer, startDaemon } from "../../tests/_fleet.ts";
import { tempDir } from "../../tests/_harness.ts";
import { meshStack, onlineVia } from "../../tests/_mesh.ts";
import { DEVICE, type Fleet } from "./fleet.ts";
import { feedBlock, pipeRun } from "./throughput.ts";
import { tunnelOpens } from "./latency.ts";
import { cpuSince, emit, figure, helper, percentile, progress, Reports, round } from "./util.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TRANSFER = 256 * MiB; // per run, as the core throughput figure
const ROUNDS = 5; // interleaved runs of each path; medians damp a busy machine
const OPENS = 200; // sequential opens per path

/** The mesh figures: throughput, relay CPU per GiB and open latency, two relays next to one. */
export async function meshFigures(ticks: number): Promise<void> {
  await using dir = await tempDir("od-bench-mesh-");
  await using stack = await meshStack(dir);
  const a = await stack.startRelay("relay-a");
  const b = await stack.startRelay("relay-b");
  const keys = JSON.parse((await stack.admin(["account", "add", "bench", "--json"])).stdout);
  await using sinkProc = helper("tcp sink", "tcp_peer.ts", ["sink"]);
  const reports = new Reports(sinkProc);
  const sink = { proc: sinkProc, reports, port: (await reports.next<{ port: number }>()).port };
  await using echo = echoServer();
  await using daemon = await startDaemon(b, {
    key: keys.deviceKey,
    id: DEVICE,
    stateDir: `${dir}/state`,
    services: { sink: sink.port, echo: echo.port },
  });
  await onlineVia(a, keys.clientKey, DEVICE);
  const path = (relay: typeof a, name: string): Fleet => ({
    relay,
    keys,
    dir,
    transport: "ws",
    daemon,
    env: clientEnv(relay, keys.clientKey, `${dir}/config-${name}`),
    target: { url: relay.url, secret: keys.clientKey },
    [Symbol.asyncDispose]: async () => {},
  });
  const one = path(b, "one");
  const two = path(a, "two");
  progress("two relays on PostgreSQL and a daemon on relay B up; measuring throughput");
  const feed = feedBlock();
  const speeds = { one: [] as number[], two: [] as number[] };
  const cpu = { one: 0, two: 0 }; // relay CPU seconds, all relays of the path
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [name, fleet] of [["one", one], ["two", two]] as const) {
      // pipeRun counts the client's relay; on the mesh path relay B forwards too.
      const holder = cpuSince({ b: b.proc.pid }, ticks);
      const run = await pipeRun(fleet, sink, feed, TRANSFER, ticks);
      speeds[name].push(run.mibps);
      cpu[name] += run.cpu.relay + (name === "two" ? holder().b : 0);
    }
    progress(
      `mesh throughput round ${r}/${ROUNDS} (MiB/s): one relay ${
        Math.round(speeds.one.at(-1)!)
      }, ` +
        `two relays ${Math.round(speeds.two.at(-1)!)}`,
    );
  }
  const median = (v: number[]) => percentile(v, 50);
  emit(figure(
    "mesh_tunnel_throughput_two_relays",
    median(speeds.two),
    "MiB/s",
    "one_relay",
    median(speeds.one),
  ));
  const gib = (ROUNDS * TRANSFER) / GiB;
  progress(
    `relay CPU s/GiB: one relay ${round(cpu.one / gib)}, two relays ${round(cpu.two / gib)}`,
  );
  progress("measuring tunnel open latency");
  const opens = { one: await tunnelOpens(one, OPENS), two: await tunnelOpens(two, OPENS) };
  for (const p of [50, 95]) {
    emit(figure(
      `mesh_tunnel_open_p${p}_two_relays`,
      percentile(opens.two, p),
      "ms",
      `one_relay_p${p}`,
      percentile(opens.one, p),
    ));
  }
}
