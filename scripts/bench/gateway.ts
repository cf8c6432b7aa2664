/**
 * The baselines' side of the ssh figures: the ssh options every client gets, and the classic
 * `ssh -R` gateway, where the "device" keeps `ssh -N -R PORT:127.0.0.1:SSHD_PORT` open to a
 * second sshd and clients connect to that sshd's PORT.
 */
import type { Sshd } from "../../tests/_sshd.ts";
import { start } from "./util.ts";

const FORWARD_TIMEOUT_MS = 10_000; // ssh's login and forward request, on a loaded machine
const READY_POLLS = 100; // checks that the gateway's forward reaches sshd…
const READY_POLL_MS = 100; // …this far apart: 10 s for an ssh login on a loaded machine
const BANNER_TIMEOUT_MS = 2_000; // a forwarded connection shows sshd's banner at once

/** Options every client gets: only this key, no config files, no prompts, no compression. */
export function clientOptions(key: string): string[] {
  const opts = ["IdentitiesOnly=yes", "BatchMode=yes", "Compression=no"];
  return ["-F", "/dev/null", "-i", key, ...opts.flatMap((o) => ["-o", o])];
}

/** Host key checking for the baselines: a throwaway known_hosts, filled on first use. */
export function knownHosts(file: string): string[] {
  const opts = [
    `UserKnownHostsFile=${file}`,
    "GlobalKnownHostsFile=/dev/null",
    "StrictHostKeyChecking=accept-new",
    "CheckHostIP=no",
  ];
  return opts.flatMap((o) => ["-o", o]);
}

/** Whether a connection to `port` is answered with an SSH banner. */
async function answersSsh(port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return false; // the forward is not up yet
  }
  const timer = setTimeout(() => conn.close(), BANNER_TIMEOUT_MS);
  try {
    const buf = new Uint8Array(64); // room for the "SSH-2.0-…" banner line
    const n = await conn.read(buf);
    return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("SSH-");
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
}

/**
 * The device's side of the gateway: `ssh -N -R 0:127.0.0.1:TARGET` to the gateway sshd, which
 * picks the forwarded port (ssh prints it); resolves once that port reaches sshd.
 */
export async function reverseForward(gateway: Sshd, target: number, knownHostsFile: string) {
  const proc = start("ssh -R", [
    "ssh",
    ...clientOptions(gateway.clientKey),
    ...knownHosts(knownHostsFile),
    ...["-N", "-o", "ExitOnForwardFailure=yes", "-R", `0:127.0.0.1:${target}`],
    ...["-p", String(gateway.port), "root@127.0.0.1"],
  ]);
  try {
    const m = await proc.waitFor(/Allocated port (\d+) for remote forward/, FORWARD_TIMEOUT_MS);
    const port = Number(m[1]);
    let exited = false;
    proc.status.then(() => (exited = true));
    for (let poll = 0; poll < READY_POLLS && !exited; poll++) {
      if (await answersSsh(port)) return { proc, port };
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    throw new Error(`the gateway's port ${port} never reached sshd: ${proc.stderr}`);
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** The pid sshd wrote to its PidFile (tests/_sshd.ts puts it in sshd's directory). */
export async function sshdPid(dir: string): Promise<number> {
  for (let poll = 0; poll < READY_POLLS; poll++) {
    const pid = Number(await Deno.readTextFile(`${dir}/sshd.pid`).catch(() => ""));
    if (pid > 0) return pid;
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
  throw new Error(`sshd wrote no pid to ${dir}/sshd.pid`);
}
