/**
 * Shared pieces of the benchmark: the figure line format, progress messages, process CPU (of
 * one process or a whole tree) and memory from /proc, percentiles, helper processes that report
 * JSON lines on stdout, and stopping a process with everything it started.
 */
import { Proc } from "../../tests/_harness.ts";

/** One measured figure next to the baseline it was measured against in the same run. */
export interface Figure {
  figure: string;
  value: number;
  unit: string;
  peer: string;
  peerValue: number;
  /** value / peerValue. */
  ratio: number;
  /** The goal in words, or null when the figure is informational. */
  target: string | null;
  /** Whether the goal was met, or null when there is none. */
  met: boolean | null;
}

/** Builds a figure, rounding for readability; `meets` judges the value and ratio. */
export function figure(
  name: string,
  value: number,
  unit: string,
  peer: string,
  peerValue: number,
  goal?: { target: string; meets: (value: number, ratio: number) => boolean },
): Figure {
  const ratio = peerValue === 0 ? Infinity : value / peerValue;
  return {
    figure: name,
    value: round(value),
    unit,
    peer,
    peerValue: round(peerValue),
    ratio: round(ratio),
    target: goal?.target ?? null,
    met: goal ? goal.meets(value, ratio) : null,
  };
}

/** Rounds to four significant digits, enough for a benchmark line. */
export function round(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(4)) : x;
}

/** Prints a figure as one JSON line on stdout. */
export function emit(f: Figure): void {
  console.log(JSON.stringify(f));
}

/** Prints a progress message on stderr. */
export function progress(message: string): void {
  console.error(`bench: ${message}`);
}

/** The p-th percentile (0..100) of `values`, nearest-rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Clock ticks per second, as `getconf CLK_TCK` reports it. */
export async function clockTicks(): Promise<number> {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
  const ticks = Number(new TextDecoder().decode(out.stdout).trim());
  if (!(ticks > 0)) throw new Error("getconf CLK_TCK gave no tick rate");
  return ticks;
}

/** User plus system CPU seconds a process has used, from /proc/PID/stat. */
export function cpuSeconds(pid: number, ticks: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may contain spaces: the state
  // is field 3, so utime (field 14) and stime (field 15) are at 11 and 12 here.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

/** Snapshots the CPU seconds of `pids`; the function returned gives what each used since. */
export function cpuSince<K extends string>(pids: Record<K, number>, ticks: number) {
  const keys = Object.keys(pids) as K[];
  const before = keys.map((k) => cpuSeconds(pids[k], ticks));
  return (): Record<K, number> => {
    const used = keys.map((k, i) => [k, cpuSeconds(pids[k], ticks) - before[i]]);
    return Object.fromEntries(used) as Record<K, number>;
  };
}

/** Pids of the live children of `pid`, from /proc/PID/task/TID/children (none once it is gone). */
export function childPids(pid: number): number[] {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/task`)].flatMap((t) =>
      Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim().split(" ")
        .filter((p) => p !== "").map(Number)
    );
  } catch {
    return []; // exited while being read
  }
}

/**
 * CPU seconds of a process and all its descendants: its own, its reaped children's (cutime and
 * cstime, fields 16 and 17) and, recursively, its live children's. sshd forks a process per
 * connection, so only the whole tree shows what a connection cost it.
 */
export function treeCpuSeconds(pid: number, ticks: number): number {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return 0; // exited between listing and reading; its parent's cutime has it once reaped
  }
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // as in cpuSeconds
  const own = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / ticks;
  return childPids(pid).reduce((sum, child) => sum + treeCpuSeconds(child, ticks), own);
}

/** As `cpuSince`, for whole process trees (`treeCpuSeconds`). */
export function treeCpuSince<K extends string>(pids: Record<K, number>, ticks: number) {
  const keys = Object.keys(pids) as K[];
  const before = keys.map((k) => treeCpuSeconds(pids[k], ticks));
  return (): Record<K, number> => {
    const used = keys.map((k, i) => [k, treeCpuSeconds(pids[k], ticks) - before[i]]);
    return Object.fromEntries(used) as Record<K, number>;
  };
}

/** Resident memory of a process in KiB, from VmRSS in /proc/PID/status. */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]);
}

const POLL_MS = 10; // how often helper stdout is checked; timing happens in the helpers

// Runs a command under sh so that `times` reports the CPU it used once it has exited. The command
// runs in the background, so that sh can pass SIGTERM on; sh would give a background job
// /dev/null as stdin, so the real one is handed over as fd 3.
const WITH_TIMES = `exec 3<&0
"$0" "$@" <&3 3<&- & p=$!
trap 'kill $p' TERM
wait $p; s=$?
times >&2
exit $s`;

/** Options for processes the bench starts. */
export interface StartOptions {
  env?: Record<string, string>;
  /** Pipe stdin so the bench can write to it. */
  stdin?: boolean;
  /** Report the CPU used on stderr when done; read it with `cpuUsed`. */
  timed?: boolean;
}

/** Starts `argv` as its own process. */
export function start(name: string, argv: string[], options: StartOptions = {}): Proc {
  const [cmd, ...args] = options.timed ? ["sh", "-c", WITH_TIMES, ...argv] : argv;
  // stdout is always collected: Proc's dispose fails on a process with a "null" stdout.
  return new Proc(name, args, { cmd, env: options.env, stdin: options.stdin ? "piped" : "null" });
}

/** User plus system seconds of a finished `timed` process, from what `times` printed. */
export function cpuUsed(proc: Proc): number {
  const line = proc.stderr.trimEnd().split("\n").at(-1) ?? "";
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + +m[2]);
  if (parts.length !== 2) throw new Error(`${proc.name}: no CPU times on stderr:\n${proc.stderr}`);
  return parts[0] + parts[1];
}

/** Every live descendant of `pid`. */
export function descendants(pid: number): number[] {
  return childPids(pid).flatMap((child) => [child, ...descendants(child)]);
}

/** Stops a process and everything it started: SIGTERM to each descendant by pid, then `stop`. */
export async function stopTree(proc: Proc): Promise<void> {
  for (const pid of descendants(proc.pid)) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  await proc.stop();
}

/** Waits for `proc` to exit; past `timeoutMs` stops it and all it started, and throws. */
export async function finish(proc: Proc, timeoutMs: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const out = await Promise.race([proc.output(), late]);
  clearTimeout(timer);
  if (out) return out;
  await stopTree(proc);
  throw new Error(`${proc.name} did not finish within ${timeoutMs / 1000} s:\n${proc.stderr}`);
}

/** A helper Deno script under scripts/bench/ run as its own process. */
export function helper(name: string, script: string, args: string[], options: StartOptions = {}) {
  const path = new URL(script, import.meta.url).pathname;
  return start(
    name,
    [Deno.execPath(), "run", "--no-prompt", "--allow-all", path, ...args],
    options,
  );
}

/** Reads a helper's stdout reports, one JSON line each, in order. */
export class Reports {
  #proc: Proc;
  #read = 0; // lines already returned

  constructor(proc: Proc) {
    this.#proc = proc;
  }

  /** Waits for the next report line and parses it. */
  async next<T>(timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.#proc.status.then(() => (exited = true));
    while (true) {
      const lines = this.#proc.stdout.split("\n"); // the last part is an unfinished line
      if (lines.length > this.#read + 1) return JSON.parse(lines[this.#read++]) as T;
      if (exited || Date.now() > deadline) {
        const why = exited ? "exited" : "timed out";
        throw new Error(
          `${this.#proc.name} ${why} before report ${this.#read + 1}:\n` +
            this.#proc.stderr,
        );
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}

/** Sends one line to a helper's stdin. */
export async function tell(proc: Proc, line: string): Promise<void> {
  const w = proc.child.stdin.getWriter();
  await w.write(new TextEncoder().encode(line + "\n"));
  w.releaseLock();
}
