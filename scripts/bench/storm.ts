/**
 * The reconnect storm of the fleet benchmark: kill -9 of a relay holding a fleet, a restart on
 * the same data directory and port, and how the fleet comes back, read from the new relay's
 * metrics listener; meanwhile a client opens tunnels one after another. Also the wall time of
 * `od list` runs, as a user sees it.
 */
import { od } from "../../tests/_harness.ts";
import { openTunnel } from "../../src/client/pipe.ts";
import { RelayError, type RelayTarget } from "../../src/transport/dial.ts";
import { percentile } from "./util.ts";
import { type Load, type MeteredRelay, metric, startMeteredRelay } from "./scale_setup.ts";

const POLL_MS = 100; // how often the storm's progress is read
const STORM_TIMEOUT_MS = 300_000; // a storm not over in five minutes is a failure
const RETRY_MS = 50; // between tunnel attempts while the device is away
const LIST_RUNS = 5; // od list runs per figure; the median is reported

/** Peak resident memory of a process (VmHWM) in KiB. */
export function peakRssKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!m) throw new Error(`no VmHWM for process ${pid}`);
  return Number(m[1]);
}

/** What a storm showed. */
export interface Storm {
  /** The restarted relay, still running; the caller disposes of it. */
  relay: MeteredRelay;
  /** Seconds from the kill until 50, 99 and 100% of `expected` were connected. */
  online: Record<50 | 99 | 100, number>;
  restartS: number;
  peakKiB: number;
  /** Open times (ms) of the tunnels opened during the storm. */
  opens: number[];
  /** Times (ms) until the relay answered each attempt, opened or refused (device away). */
  answers: number[];
  failures: number;
  firstOpenS: number;
}

/** Kills `relay`, restarts it on the same port and data, and follows the fleet back. */
export async function storm(
  relay: MeteredRelay,
  dataDir: string,
  expected: number,
  target: RelayTarget,
  extraArgs: string[] = [],
): Promise<Storm> {
  const t0 = performance.now();
  const since = () => (performance.now() - t0) / 1000;
  relay.proc.signal("SIGKILL");
  await relay.proc.output();
  const next = await startMeteredRelay(dataDir, { port: relay.port, extraArgs });
  const restartS = since();
  const online: Partial<Record<50 | 99 | 100, number>> = {};
  const opens: number[] = [];
  const answers: number[] = [];
  let failures = 0;
  let firstOpenS = NaN;
  let done = false;
  const client = (async () => {
    while (!done) {
      const started = performance.now();
      try {
        const { link } = await openTunnel(target, "bench", "echo");
        opens.push(performance.now() - started);
        answers.push(performance.now() - started);
        if (Number.isNaN(firstOpenS)) firstOpenS = since();
        link.close();
        await link.flushed();
      } catch (err) {
        // A refusal (the device is still away) is an answer too; a network error is not.
        if (err instanceof RelayError && err.status > 0) answers.push(performance.now() - started);
        failures++;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  })();
  try {
    const deadline = Date.now() + STORM_TIMEOUT_MS;
    while (online[100] === undefined) {
      if (Date.now() > deadline) {
        throw new Error(`the fleet did not come back: ${JSON.stringify(online)}`);
      }
      const n = await metric(next.metricsUrl, "od_devices_connected").catch(() => 0);
      for (const q of [50, 99, 100] as const) {
        if (online[q] === undefined && n >= Math.ceil((q / 100) * expected)) online[q] = since();
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    done = true;
    await client;
  }
  return {
    relay: next,
    online: online as Storm["online"],
    restartS,
    peakKiB: peakRssKiB(next.proc.pid),
    opens,
    answers,
    failures,
    firstOpenS,
  };
}

/** What a graceful restart showed. */
export interface DrainRestart {
  /** The restarted relay, still running; the caller disposes of it. */
  relay: MeteredRelay;
  /** Seconds from SIGTERM until every device was connected again. */
  allBackS: number;
  /** The longest any one device was without a link, in seconds. */
  maxOfflineS: number;
}

/**
 * SIGTERM to a relay started with `--drain drainS`, an immediate restart on the same data and
 * port (with the same --drain), and how long devices stayed away, as the load processes saw it.
 */
export async function drainRestart(
  relay: MeteredRelay,
  dataDir: string,
  expected: number,
  load: Load,
  drainS: number,
): Promise<DrainRestart> {
  await load.stats(true);
  const t0 = performance.now();
  relay.proc.signal("SIGTERM");
  await relay.proc.output();
  const next = await startMeteredRelay(dataDir, {
    port: relay.port,
    extraArgs: ["--drain", String(drainS)],
  });
  const deadline = Date.now() + STORM_TIMEOUT_MS;
  while (await metric(next.metricsUrl, "od_devices_connected").catch(() => 0) < expected) {
    if (Date.now() > deadline) throw new Error("the fleet did not come back after the drain");
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const allBackS = (performance.now() - t0) / 1000;
  const stats = await load.stats();
  const maxOfflineS = Math.max(...stats.map((s) => s.maxOfflineMs)) / 1000;
  return { relay: next, allBackS, maxOfflineS };
}

/** Median wall time (ms) of `od ARGS`, checking it printed `rows` devices (JSON or a table). */
export async function listWallMs(
  args: string[],
  env: Record<string, string>,
  rows: number,
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < LIST_RUNS; i++) {
    const started = performance.now();
    const out = await od(args, { env });
    times.push(performance.now() - started);
    if (out.code !== 0) throw new Error(`od ${args.join(" ")} failed: ${out.stderr}`);
    const n = args.includes("--json")
      ? (JSON.parse(out.stdout) as unknown[]).length
      : out.stdout.trimEnd().split("\n").length - 1;
    if (n !== rows) throw new Error(`od ${args.join(" ")} listed ${n} devices, not ${rows}`);
  }
  return percentile(times, 50);
}
