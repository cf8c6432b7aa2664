/**
 * Throughput runs: the same bytes through a real `od pipe` process, straight over TCP from a
 * separate process, and over one raw wss hop between two Deno processes. Every run is timed by
 * its receiver, from the first byte counted to the last, so process start-up and tunnel set-up
 * are not part of it.
 */
import { OD, Proc } from "../../tests/_harness.ts";
import type { TestCa } from "../../tests/_fleet.ts";
import { DEVICE, type Fleet } from "./fleet.ts";
import { cpuSince, cpuUsed, helper, Reports, start } from "./util.ts";
import { randomBlock, type SinkReport } from "./tcp_peer.ts";

const MiB = 1024 * 1024;
const FEED_CHUNK = MiB; // one stdin write: large enough that the writes cost nothing
const RUN_TIMEOUT_MS = 60_000; // 256 MiB at even 10 MiB/s finishes well within this

/** FEED_CHUNK bytes of random data, the block `od pipe`'s stdin is fed with again and again. */
export function feedBlock(): Uint8Array {
  return randomBlock(FEED_CHUNK);
}

/** A receiver's report turned into MiB/s; throws if bytes went missing. */
function rate(report: SinkReport, total: number, what: string): number {
  if (report.bytes !== total) throw new Error(`${what}: sink counted ${report.bytes}/${total}`);
  return total / MiB / (report.ms / 1000);
}

/** One pipe run's speed and the CPU seconds each process of the chain spent on it. */
export interface PipeRun {
  mibps: number;
  cpu: { relay: number; daemon: number; pipe: number; sink: number; feeder: number };
}

async function feed(proc: Proc, data: Uint8Array, total: number): Promise<void> {
  const w = proc.child.stdin.getWriter();
  for (let sent = 0; sent < total; sent += data.length) {
    await w.write(data.subarray(0, Math.min(data.length, total - sent)));
  }
  await w.close();
}

/** Sends `total` bytes through `od pipe DEVICE sink`, fed from this process. */
export async function pipeRun(
  fleet: Fleet,
  sink: { proc: Proc; reports: Reports },
  data: Uint8Array,
  total: number,
  ticks: number,
): Promise<PipeRun> {
  const used = cpuSince({
    relay: fleet.relay.proc.pid,
    daemon: fleet.daemon.pid,
    sink: sink.proc.pid,
    feeder: Deno.pid, // this process, feeding stdin
  }, ticks);
  await using pipe = start("od pipe", [OD, "pipe", DEVICE, "sink"], {
    env: fleet.env,
    stdin: true,
    timed: true,
  });
  const failed = (async () => {
    const fed = await feed(pipe, data, total).then(() => null, (err) => err);
    const { code, stderr } = await pipe.output();
    return code !== 0 || fed ? `od pipe exited ${code} (${fed ?? "all fed"}): ${stderr}` : null;
  })();
  // A pipe that fails makes the sink wait forever, so its exit is raced against the report.
  const report = await Promise.race([
    sink.reports.next<SinkReport>(RUN_TIMEOUT_MS),
    failed.then((why) => why ? Promise.reject(new Error(why)) : new Promise<never>(() => {})),
  ]);
  const cpu = used();
  const why = await failed;
  if (why) throw new Error(why);
  return { mibps: rate(report, total, "od pipe"), cpu: { ...cpu, pipe: cpuUsed(pipe) } };
}

/** Sends `total` bytes straight to the sink from a separate process. */
export async function tcpRun(sink: { port: number; reports: Reports }, total: number) {
  await using sender = helper("tcp send", "tcp_peer.ts", [
    "send",
    String(sink.port),
    String(total),
  ]);
  const report = await sink.reports.next<SinkReport>(RUN_TIMEOUT_MS);
  const { code, stderr } = await sender.output();
  if (code !== 0) throw new Error(`tcp send exited ${code}: ${stderr}`);
  return { mibps: rate(report, total, "direct TCP") };
}

/** A raw wss server process that runs can be made against. */
export interface WssHop extends AsyncDisposable {
  /** Sends `total` bytes over one wss hop; the speed and the CPU seconds of both ends. */
  run(total: number): Promise<{ mibps: number; serverCpu: number; senderCpu: number }>;
}

/** Starts the raw wss hop's server with the test CA's certificate. */
export async function startWssHop(ca: TestCa, ticks: number): Promise<WssHop> {
  const server = helper("ws sink", "ws_peer.ts", ["sink", ca.certFile, ca.keyFile]);
  const reports = new Reports(server);
  const { port } = await reports.next<{ port: number }>();
  return {
    async run(total) {
      const used = cpuSince({ server: server.pid }, ticks);
      const url = `wss://localhost:${port}/`;
      const args = ["send", url, ca.caFile, String(total)];
      await using sender = helper("ws send", "ws_peer.ts", args, { timed: true });
      const report = await reports.next<SinkReport>(RUN_TIMEOUT_MS);
      const serverCpu = used().server;
      const { code, stderr } = await sender.output();
      if (code !== 0) throw new Error(`ws send exited ${code}: ${stderr}`);
      const senderCpu = cpuUsed(sender);
      return { mibps: rate(report, total, "raw wss hop"), serverCpu, senderCpu };
    },
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}
