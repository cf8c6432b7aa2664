/**
 * `deno task bench --only ssh`: the real OpenSSH client through `od ssh`, over a plain
 * WebSocket relay and over a TLS relay, next to the same client reaching the same sshd directly
 * and through the classic `ssh -R` gateway (a second sshd to which the "device" keeps a reverse
 * forward open). Figures:
 *
 * 1. bulk upload and download of TRANSFER bytes in MiB/s, the median of ROUNDS interleaved
 *    rounds, each timed by the receiving `dd` from the first byte to the last;
 * 2. connect time of `ssh … true` in ms (p50 and p95 of CONNECTS interleaved runs), wall clock
 *    from spawning the client until it exits.
 *
 * Every contender moves zeros from `head -c … /dev/zero` with ssh compression off, so what
 * crosses each path is ciphertext of the same data. Progress lines give each path's CPU
 * seconds per GiB by process: `client` is the local shell pipeline (ssh, `od ssh`, head or dd),
 * `od_pipe` the ProxyCommand, the rest the servers on the path, each with its children.
 * Every process started here is stopped on the way out.
 */
import { OD, type Proc, tempDir } from "../../tests/_harness.ts";
import type { TestCa } from "../../tests/_fleet.ts";
import { startSshd } from "../../tests/_sshd.ts";
import { clientOptions, knownHosts, reverseForward, sshdPid } from "./gateway.ts";
import { DEVICE, startFleet } from "./fleet.ts";
import {
  cpuSeconds,
  cpuUsed,
  descendants,
  emit,
  figure,
  finish,
  percentile,
  progress,
  round,
  start,
  treeCpuSince,
} from "./util.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TRANSFER = GiB; // bytes per transfer run: long enough that set-up is noise
const ROUNDS = 3; // transfer runs per contender and direction, interleaved; the median is kept
const CONNECTS = 20; // measured `ssh … true` runs per contender, interleaved
const CONNECT_WARMUP = 2; // unmeasured runs first: they pin host keys and warm Deno's code cache
const RUN_TIMEOUT_MS = 300_000; // one transfer: 1 GiB at even 4 MiB/s fits
const CONNECT_TIMEOUT_MS = 30_000; // ssh's own connect takes well under a second on loopback
const SAMPLE_MS = 100; // od pipe's CPU is sampled this often: a run misses at most its last slice
const WS_GOAL = 0.8; // od over plain ws keeps at least this share of direct ssh's speed
const CONNECT_GOAL = 1.25; // od ssh may take at most this many times direct ssh's connect time

/** The directions of a transfer, from the client's point of view. */
const WAYS = ["upload", "download"] as const;
type Way = (typeof WAYS)[number];

// The receiver reads the first byte with a one-byte dd, so the timed dd runs from the first byte
// to the last: ssh's connection set-up and the remote command's start are not part of it.
const RECEIVE = "dd bs=1 count=1 of=/dev/null status=none && exec dd of=/dev/null bs=1M";
const UPLOAD = `head -c "$0" /dev/zero | "$@"`; // local source; the remote command receives
const DOWNLOAD = `"$@" | { ${RECEIVE}; }`; // remote source; the local dd receives
const DD_REPORT = /^(\d+) bytes .* copied, ([\d.e+-]+) s,/gm; // dd's summary in the C locale

/** One way of reaching the device's sshd with the real ssh client. */
interface Contender {
  name: string;
  /** The client command up to and including the destination. */
  argv: string[];
  env: Record<string, string>;
  /** The processes on the path besides the client, by role, whose CPU is accounted. */
  path: Record<string, number>;
}

/** Starts sshd, the gateway and both relays with a daemon; `stack` stops them all. */
async function startContenders(dir: string, ca: TestCa, stack: AsyncDisposableStack) {
  const sshd = stack.use(await startSshd(`${dir}/sshd`));
  const gateway = stack.use(await startSshd(`${dir}/gateway`));
  const pids = { sshd: await sshdPid(`${dir}/sshd`), gateway: await sshdPid(`${dir}/gateway`) };
  const known = `${dir}/known_hosts`;
  const forward = await reverseForward(gateway, sshd.port, known);
  stack.use(forward.proc);
  const hostKey = ["--host-key", sshd.hostKeyPub];
  const ws = stack.use(await startFleet("ws", ca, { ssh: sshd.port }, hostKey));
  const wss = stack.use(await startFleet("wss", ca, { ssh: sshd.port }, hostKey));
  const client = clientOptions(sshd.clientKey);
  const checked = [...client, ...knownHosts(known)];
  const baseline = (port: number) => ["ssh", ...checked, "-p", String(port), "root@127.0.0.1"];
  const contenders: Contender[] = [
    { name: "direct", argv: baseline(sshd.port), env: {}, path: { sshd: pids.sshd } },
    {
      name: "gateway",
      argv: baseline(forward.port),
      env: {},
      path: { gateway: pids.gateway, device_ssh: forward.proc.pid, sshd: pids.sshd },
    },
    ...[ws, wss].map((fleet) => ({
      name: `od_${fleet.transport}`,
      argv: [OD, "ssh", ...client, `root@${DEVICE}`],
      env: fleet.env,
      path: { relay: fleet.relay.proc.pid, daemon: fleet.daemon.pid, sshd: pids.sshd },
    })),
  ];
  return contenders;
}

/** Runs `ssh … true` once; milliseconds from spawn to exit. */
async function connectOnce(c: Contender): Promise<number> {
  const started = performance.now();
  await using proc: Proc = start(`${c.name} true`, [...c.argv, "true"], { env: c.env });
  const { code, stderr } = await finish(proc, CONNECT_TIMEOUT_MS);
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`${c.name}: ssh … true exited ${code}: ${stderr}`);
  return ms;
}

/** Figure 2: connect time of od over ws and wss next to direct ssh, interleaved runs. */
async function connectFigures(contenders: Contender[]) {
  const times = new Map(contenders.map((c) => [c.name, [] as number[]]));
  for (let i = 0; i < CONNECT_WARMUP + CONNECTS; i++) {
    for (const c of contenders) {
      const ms = await connectOnce(c);
      if (i >= CONNECT_WARMUP) times.get(c.name)!.push(ms);
    }
  }
  const direct = times.get("direct")!;
  for (const t of ["ws", "wss"]) {
    const od = times.get(`od_${t}`)!;
    const goal = {
      target: `<= ${CONNECT_GOAL} x direct ssh`,
      meets: (_: number, ratio: number) => ratio <= CONNECT_GOAL,
    };
    const [p50, p95] = [percentile(od, 50), percentile(od, 95)];
    const peer = { p50: percentile(direct, 50), p95: percentile(direct, 95) };
    emit(figure(`ssh_connect_p50_od_${t}`, p50, "ms", "direct_ssh_connect_p50", peer.p50, goal));
    emit(figure(`ssh_connect_p95_od_${t}`, p95, "ms", "direct_ssh_connect_p95", peer.p95));
  }
}

/**
 * Samples the CPU seconds of `od pipe` processes started under `root` until the function
 * returned is called; that gives their total. ssh signals its ProxyCommand when it is done but
 * never reaps it, so `times` in the run's shell never counts od pipe's CPU.
 */
function watchPipes(root: number, ticks: number): () => Promise<number> {
  const last = new Map<number, number>();
  let stopped = false;
  const sample = () => {
    for (const pid of new Set([...last.keys(), ...descendants(root)])) {
      try {
        const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
        if (argv.includes("pipe") && argv.some((a) => a.endsWith("main.ts"))) {
          last.set(pid, cpuSeconds(pid, ticks));
        }
      } catch {
        // gone since the last sample, which stands
      }
    }
  };
  const sampling = (async () => {
    for (let i = 0; i < RUN_TIMEOUT_MS / SAMPLE_MS && !stopped; i++) {
      sample();
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
    }
  })();
  return async () => {
    stopped = true;
    await sampling;
    sample();
    return [...last.values()].reduce((a, b) => a + b, 0);
  };
}

/** One transfer through a contender: the receiver's MiB/s and CPU seconds by process. */
async function transfer(c: Contender, way: Way, ticks: number) {
  const [script, remote] = way === "upload"
    ? [UPLOAD, `export LC_ALL=C; ${RECEIVE}`]
    : [DOWNLOAD, `head -c ${TRANSFER} /dev/zero`];
  const used = treeCpuSince(c.path, ticks);
  const argv = ["sh", "-c", script, String(TRANSFER), ...c.argv, remote];
  const env = { ...c.env, LC_ALL: "C" }; // dd's summary in the format DD_REPORT reads
  await using proc = start(`${c.name} ${way}`, argv, { env, timed: true });
  const pipes = watchPipes(proc.pid, ticks);
  const { code, stderr } = await finish(proc, RUN_TIMEOUT_MS);
  const pipeCpu = await pipes(); // zero for the baselines, which run no od pipe
  const cpu: Record<string, number> = {
    client: cpuUsed(proc),
    ...(pipeCpu > 0 ? { od_pipe: pipeCpu } : {}),
    ...used(),
  };
  const report = [...stderr.matchAll(DD_REPORT)].at(-1);
  if (code !== 0 || Number(report?.[1]) !== TRANSFER - 1) {
    throw new Error(`${c.name} ${way} exited ${code} without moving ${TRANSFER} bytes: ${stderr}`);
  }
  return { mibps: Number(report![1]) / MiB / Number(report![2]), cpu };
}

/** Interleaved transfer rounds; MiB/s and summed CPU seconds by `WAY CONTENDER`. */
async function transferRounds(contenders: Contender[], ticks: number) {
  const speeds = new Map<string, number[]>();
  const cpu = new Map<string, Record<string, number>>();
  for (let r = 1; r <= ROUNDS; r++) {
    for (const way of WAYS) {
      for (const c of contenders) {
        const run = await transfer(c, way, ticks);
        const key = `${way} ${c.name}`;
        speeds.set(key, [...speeds.get(key) ?? [], run.mibps]);
        const sum = cpu.get(key) ?? {};
        for (const [k, s] of Object.entries(run.cpu)) sum[k] = (sum[k] ?? 0) + s;
        cpu.set(key, sum);
      }
      const last = contenders.map((c) =>
        `${c.name} ${Math.round(speeds.get(`${way} ${c.name}`)!.at(-1)!)}`
      );
      progress(`${way} round ${r}/${ROUNDS} (MiB/s): ${last.join(", ")}`);
    }
  }
  return { speeds, cpu };
}

/** Logs CPU seconds per GiB by process for each path and direction. */
function cpuReport(cpu: Map<string, Record<string, number>>): void {
  const gib = (ROUNDS * TRANSFER) / GiB;
  for (const [key, seconds] of cpu) {
    const parts = Object.entries(seconds).map(([k, s]) => `${k} ${round(s / gib)}`);
    const total = Object.values(seconds).reduce((a, b) => a + b, 0) / gib;
    progress(`CPU s/GiB, ${key}: ${parts.join(", ")}; total ${round(total)}`);
  }
}

/** Figure 1: bulk transfer speeds of od over ws and wss, next to direct ssh and the gateway. */
async function transferFigures(contenders: Contender[], ticks: number) {
  const { speeds, cpu } = await transferRounds(contenders, ticks);
  cpuReport(cpu);
  for (const way of WAYS) {
    const median = (name: string) => percentile(speeds.get(`${way} ${name}`)!, 50);
    const [direct, gateway] = [median("direct"), median("gateway")];
    emit(figure(`ssh_${way}_od_ws`, median("od_ws"), "MiB/s", `direct_ssh_${way}`, direct, {
      target: `>= ${WS_GOAL} x direct ssh`,
      meets: (_, ratio) => ratio >= WS_GOAL,
    }));
    emit(figure(`ssh_${way}_od_wss`, median("od_wss"), "MiB/s", `ssh_R_gateway_${way}`, gateway, {
      target: ">= ssh -R gateway",
      meets: (_, ratio) => ratio >= 1,
    }));
    emit(figure(`ssh_R_gateway_${way}`, gateway, "MiB/s", `direct_ssh_${way}`, direct));
  }
}

/** Runs the ssh figures; everything it starts is stopped when it returns or throws. */
export async function sshFigures(ca: TestCa, ticks: number): Promise<void> {
  await using dir = await tempDir("od-bench-ssh-");
  await using stack = new AsyncDisposableStack();
  const contenders = await startContenders(dir, ca, stack);
  for (const c of contenders) await connectOnce(c); // pins host keys before anything is timed
  progress("sshd, ssh -R gateway, relays and daemons up; measuring ssh connect time");
  await connectFigures(contenders.filter((c) => c.name !== "gateway"));
  progress(`measuring ssh transfers of ${TRANSFER / MiB} MiB`);
  await transferFigures(contenders, ticks);
}
