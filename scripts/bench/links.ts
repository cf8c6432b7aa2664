/**
 * `deno task bench --only links`: od across an emulated link (scripts/linkem.ts) between the
 * device side and the relay side, each figure next to baselines measured through the same link
 * in the same run (issue 15):
 *
 * 1. echo round trips of 1-byte messages through one `od pipe` while another `od` tunnel to the
 *    same device carries a bulk download, p50 and p99; next to an echo and a bulk download on
 *    two direct TCP connections across the link, and next to an `ssh -R` gateway carrying both
 *    as channels of its one ssh connection across the link (20 Mbit/s, 25 ms each way, 100
 *    packets of queue). Also the idle echo of od and direct for context.
 * 2. an `od ssh` bulk download (real ssh, real sshd on the device side) next to direct ssh
 *    across the link, at 100 Mbit/s with 100 ms each way and at 1 Gbit/s with 1 ms;
 * 3. the relay's resident memory with 50 concurrent bulk streams, uploads and downloads, on
 *    a 20 Mbit/s 25 ms link, next to its idle resident memory.
 *
 * The daemon's link crosses the emulator, the clients and the gateway's clients sit on the
 * relay side; the link's settings change between parts without restarting anything.
 */
import { OD } from "../../tests/_harness.ts";
import { type Sshd, startSshd } from "../../tests/_sshd.ts";
import {
  DEVICE,
  echoUnderBulk,
  type LinkFleet,
  odBulk,
  odEcho,
  startLinkFleet,
  tcpBulk,
  tcpEcho,
} from "../../tests/_links.ts";
import type { LinkOptions } from "../linkem/control.ts";
import { clientOptions, knownHosts } from "./gateway.ts";
import { linkMemory } from "./links_memory.ts";
import { cpuSeconds, emit, figure, finish, percentile, progress, round, start } from "./util.ts";

const MiB = 1024 * 1024;
/** The interactive-under-bulk link of the issue. */
const ECHO_LINK: LinkOptions = { rate: 20e6, delayMs: 25, queue: 100 };
const LONG_LINK: LinkOptions = { rate: 100e6, delayMs: 100, queue: 100 };
const FAST_LINK: LinkOptions = { rate: 1e9, delayMs: 1, queue: 100 };
// Echo sampling: a few seconds each, and the bulk download under way for half a second of
// the link's bytes first, so every queue on the path has filled.
const ECHO_PLAN = { samples: 200, maxMs: 5000, settleBytes: (ECHO_LINK.rate / 8) * 0.5 };
const IDLE_SAMPLES = 20;
const ECHO_GOAL_MS = 30; // od's p99 may exceed the direct p99 by this much (issue 15)
const LONG_GOAL = 0.9; // od ssh keeps this share of direct ssh on the long link
// On the fast link od ssh ran at 0.96–0.97 x direct ssh before issue 15's flow control (three
// runs, README); "no slower than before" allows for that spread.
const FAST_FLOOR = 0.94;
// Downloads sized for 5–10 s: 48 MiB is 4 s at 100 Mbit/s; 768 MiB is 6.5 s at 1 Gbit/s.
const LONG_BYTES = 48 * MiB;
const FAST_BYTES = 768 * MiB;
const ROUNDS = 3; // downloads per contender and link, interleaved; the median is kept
const SLOWEST_MIBPS = 0.5; // a download slower than this is stuck: stop it and fail
const RECEIVE = "dd bs=1 count=1 of=/dev/null status=none && exec dd of=/dev/null bs=1M";
const DOWNLOAD = `"$@" | { ${RECEIVE}; }`; // the local dd times first byte to last (see ssh.ts)
const DD_REPORT = /^(\d+) bytes .* copied, ([\d.e+-]+) s,/gm;

/** One way of reaching the device's sshd with the real ssh client. */
interface SshPath {
  name: string;
  argv: string[];
  env: Record<string, string>;
}

/** `ssh -N -R 0:127.0.0.1:ECHO -R 0:127.0.0.1:BULK` from the device side to the gateway. */
async function gatewayForwards(fleet: LinkFleet, gateway: Sshd) {
  const targets = { echo: fleet.servers.echo.port, bulk: fleet.servers.bulk.port };
  const proc = start("ssh -R", [
    "ssh",
    ...clientOptions(gateway.clientKey),
    ...knownHosts(`${fleet.dir}/gateway_known_hosts`),
    ...["-N", "-o", "ExitOnForwardFailure=yes"],
    ...Object.values(targets).flatMap((p) => ["-R", `0:127.0.0.1:${p}`]),
    ...["-p", String(fleet.emu.ports.gateway), "root@127.0.0.1"],
  ]);
  try {
    const ports: Record<string, number> = {};
    for (const [name, target] of Object.entries(targets)) {
      const re = new RegExp(
        `Allocated port (\\d+) for remote forward to 127\\.0\\.0\\.1:${target}`,
      );
      ports[name] = Number((await proc.waitFor(re, 30_000))[1]);
    }
    return { proc, echo: ports.echo, bulk: ports.bulk };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/**
 * Waits until the link is idle again: what the previous run's transfer left in the emulator's
 * queue and its sender's socket drains for a second or more after the transfer ends (the ssh -R
 * gateway's 840 ms of backlog plus its 2 MiB channel window), and the next run's first samples
 * would wait behind it. An echo alone does not show it: the emulator serves connections in
 * turn, so a new connection's echo is quick while another still drains at half the link (od's
 * first echoes then took up to 111 ms). So: until the link carries almost nothing (under 10 KB
 * in 100 ms, three times in a row), then until a direct echo is back at its idle time.
 */
async function quiet(fleet: LinkFleet, idleMs: number) {
  const deadline = Date.now() + 30_000;
  const moved = async () => {
    const { up, down } = await fleet.emu.stats();
    return up.bytes + down.bytes;
  };
  let last = await moved();
  for (let calm = 0; calm < 3 && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await moved();
    calm = now - last < 10_000 ? calm + 1 : 0;
    last = now;
  }
  await using echo = await tcpEcho(fleet.emu.ports.echo);
  for (let calm = 0; calm < 3 && Date.now() < deadline;) {
    calm = (await echo.roundTrip()) <= idleMs + 5 ? calm + 1 : 0;
  }
}

/** Figure 1: echo under bulk through od, direct TCP and the ssh -R gateway. */
async function echoFigures(fleet: LinkFleet, gateway: { echo: number; bulk: number }) {
  const idle = async (echo: () => Promise<{ roundTrip(): Promise<number> } & AsyncDisposable>) => {
    await using e = await echo();
    await e.roundTrip(); // set-up
    const times = [];
    for (let i = 0; i < IDLE_SAMPLES; i++) times.push(await e.roundTrip());
    return times;
  };
  const idleDirect = await idle(() => tcpEcho(fleet.emu.ports.echo));
  const idleOd = await idle(() => odEcho(fleet.env));
  const runs: Record<string, number[]> = {};
  for (
    const [name, open] of Object.entries({
      direct: () => Promise.all([tcpBulk(fleet.emu.ports.bulk), tcpEcho(fleet.emu.ports.echo)]),
      gateway: () => Promise.all([tcpBulk(gateway.bulk), tcpEcho(gateway.echo)]),
      od: () => Promise.all([odBulk(fleet.env), odEcho(fleet.env)]),
    })
  ) {
    await quiet(fleet, percentile(idleDirect, 50));
    const [bulk, echo] = await open();
    await using _b = bulk;
    await using _e = echo;
    runs[name] = await echoUnderBulk(echo, bulk, ECHO_PLAN);
    progress(
      `echo under bulk, ${name}: p50 ${round(percentile(runs[name], 50))} ms, p99 ` +
        `${round(percentile(runs[name], 99))} ms over ${runs[name].length} samples, in order: ` +
        runs[name].map(Math.round).join(" "),
    );
  }
  const p = (xs: number[], q: number) => percentile(xs, q);
  emit(
    figure(
      "links_echo_idle_p50_od",
      p(idleOd, 50),
      "ms",
      "direct_tcp_echo_idle_p50",
      p(idleDirect, 50),
    ),
  );
  emit(
    figure(
      "links_echo_under_bulk_p50_od",
      p(runs.od, 50),
      "ms",
      "direct_tcp_p50",
      p(runs.direct, 50),
    ),
  );
  const [od99, direct99, gateway99] = [p(runs.od, 99), p(runs.direct, 99), p(runs.gateway, 99)];
  emit(figure("links_echo_under_bulk_p99_od", od99, "ms", "direct_tcp_p99", direct99, {
    target: `p99 <= direct p99 + ${ECHO_GOAL_MS} ms and < ssh -R gateway p99 (${
      round(gateway99)
    } ms)`,
    meets: (v) => v <= direct99 + ECHO_GOAL_MS && v < gateway99,
  }));
  emit(
    figure("links_echo_under_bulk_p99_od_vs_gateway", od99, "ms", "ssh_R_gateway_p99", gateway99, {
      target: "< ssh -R gateway p99",
      meets: (_, ratio) => ratio < 1,
    }),
  );
  emit(
    figure(
      "links_echo_under_bulk_p50_gateway",
      p(runs.gateway, 50),
      "ms",
      "direct_tcp_p50",
      p(runs.direct, 50),
    ),
  );
}

/** One download of `bytes` zeros from the device's sshd; MiB/s first byte to last. */
async function sshDownload(path: SshPath, bytes: number): Promise<number> {
  const argv = ["sh", "-c", DOWNLOAD, "download", ...path.argv, `head -c ${bytes} /dev/zero`];
  await using proc = start(`${path.name} download`, argv, { env: { ...path.env, LC_ALL: "C" } });
  const timeoutMs = 30_000 + (bytes / MiB / SLOWEST_MIBPS) * 1000;
  const { code, stderr } = await finish(proc, timeoutMs);
  const report = [...stderr.matchAll(DD_REPORT)].at(-1);
  if (code !== 0 || Number(report?.[1]) !== bytes - 1) {
    throw new Error(`${path.name} exited ${code} without moving ${bytes} bytes: ${stderr}`);
  }
  return Number(report![1]) / MiB / Number(report![2]);
}

/** Figure 2 on one link: od ssh and direct ssh downloads, interleaved rounds. */
async function sshFigures(
  fleet: LinkFleet,
  paths: SshPath[],
  link: LinkOptions,
  label: string,
  bytes: number,
  ticks: number,
) {
  await fleet.emu.set(link);
  // One untimed round each first: the link's settings have just changed under a running fleet,
  // and od's link remembers the old path's RTT for ten seconds, which a device living on this
  // link would not (the first transfer after the path got 4 times longer re-learns it: about a
  // second lost, measured in the README).
  for (const path of paths) await sshDownload(path, bytes);
  progress(`ssh download over ${label}: one untimed round done`);
  const speeds = new Map(paths.map((p) => [p.name, [] as number[]]));
  const cpuBefore = cpuSeconds(fleet.emu.pid, ticks);
  const started = performance.now();
  for (let r = 1; r <= ROUNDS; r++) {
    for (const path of paths) speeds.get(path.name)!.push(await sshDownload(path, bytes));
    const last = paths.map((p) => `${p.name} ${round(speeds.get(p.name)!.at(-1)!)}`);
    progress(`ssh download over ${label}, round ${r}/${ROUNDS} (MiB/s): ${last.join(", ")}`);
  }
  const seconds = (performance.now() - started) / 1000;
  const share = (cpuSeconds(fleet.emu.pid, ticks) - cpuBefore) / seconds;
  progress(`the emulator used ${Math.round(share * 100)}% of a core over ${label}`);
  const median = (name: string) => percentile(speeds.get(name)!, 50);
  return { od: median("od_ssh"), direct: median("direct_ssh") };
}

/** Figure 2: od ssh downloads next to direct ssh on the long and the fast link. */
async function downloadFigures(fleet: LinkFleet, sshd: Sshd, ticks: number) {
  const client = clientOptions(sshd.clientKey);
  const known = knownHosts(`${fleet.dir}/direct_known_hosts`);
  const paths: SshPath[] = [
    {
      name: "direct_ssh",
      argv: ["ssh", ...client, ...known, "-p", String(fleet.emu.ports.ssh), "root@127.0.0.1"],
      env: {},
    },
    { name: "od_ssh", argv: [OD, "ssh", ...client, `root@${DEVICE}`], env: fleet.env },
  ];
  for (const path of paths) {
    const argv = [...path.argv, "true"]; // pins host keys before anything is timed
    await using proc = start(`${path.name} true`, argv, { env: path.env });
    const { code, stderr } = await finish(proc, 60_000);
    if (code !== 0) throw new Error(`${path.name} … true exited ${code}: ${stderr}`);
  }
  const long = await sshFigures(fleet, paths, LONG_LINK, "100 Mbit/s, 100 ms", LONG_BYTES, ticks);
  emit(figure("links_ssh_download_long_od", long.od, "MiB/s", "direct_ssh_long", long.direct, {
    target: `>= ${LONG_GOAL} x direct ssh`,
    meets: (_, ratio) => ratio >= LONG_GOAL,
  }));
  const fast = await sshFigures(fleet, paths, FAST_LINK, "1 Gbit/s, 1 ms", FAST_BYTES, ticks);
  emit(figure("links_ssh_download_fast_od", fast.od, "MiB/s", "direct_ssh_fast", fast.direct, {
    target: `>= ${FAST_FLOOR} x direct ssh (no slower than before issue 15's flow control)`,
    meets: (_, ratio) => ratio >= FAST_FLOOR,
  }));
}

/** Runs the links figures; everything it starts is stopped when it returns or throws. */
export async function linksFigures(dir: string, ticks: number): Promise<void> {
  await using stack = new AsyncDisposableStack();
  const sshd = stack.use(await startSshd(`${dir}/links-sshd`));
  const gatewaySshd = stack.use(await startSshd(`${dir}/links-gateway`));
  const fleet = stack.use(
    await startLinkFleet(ECHO_LINK, {
      services: { ssh: sshd.port },
      toRelay: { gateway: gatewaySshd.port },
      daemonArgs: ["--host-key", sshd.hostKeyPub],
    }),
  );
  const gateway = await gatewayForwards(fleet, gatewaySshd);
  stack.use(gateway.proc);
  progress("relay, daemon, sshd and the ssh -R gateway up across the emulated link");
  await echoFigures(fleet, gateway);
  await downloadFigures(fleet, sshd, ticks);
  await fleet.emu.set(ECHO_LINK);
  await linkMemory(fleet);
}
