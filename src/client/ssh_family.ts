/**
 * `od ssh`, `od scp`, `od sftp`, `od rsync`: the real tools, with od's options added in front
 * (where ssh takes the first value given, so they win) and every user argument passed through
 * unchanged. Output, stdin and the exit code are the tool's own; when a tunnel cannot be
 * opened, `od pipe` prints od's sentence first and ssh then exits 255 as it does.
 */
import { OdError, UsageError } from "../shared/errors.ts";
import { loadClientConfig } from "./config.ts";
import { parseSshArgs } from "./ssh_args.ts";
import { findScpOperands, findSftpDestination } from "./scp_args.ts";
import { findRsyncOperands } from "./rsync_args.ts";
import { deviceHost, joinRsyncCommand, odSshOptions, splitRsyncCommand } from "./ssh_options.ts";

const USAGE = {
  ssh: `Usage: od ssh [ssh options] [user@]DEV [command …]

Runs ssh to device DEV (or ACCOUNT.DEV) through the relay, with its host key pinned by od.
Every ssh option works as usual; output and exit code are ssh's.`,
  scp: `Usage: od scp [scp options] SOURCE … TARGET

Runs scp with DEV:path operands reaching devices through the relay.`,
  sftp: `Usage: od sftp [sftp options] [user@]DEV[:path]

Runs sftp to a device through the relay.`,
  rsync: `Usage: od rsync [rsync options] SOURCE … DEST

Runs rsync with DEV:path operands reaching devices through the relay. Your own
-e 'ssh …' keeps all its options; od adds its own in front of them.`,
};

/** Runs a tool with inherited stdio until it exits; returns its exit code. */
export async function runTool(program: string, args: string[]): Promise<number> {
  const bin = Deno.env.get(`OD_${program.toUpperCase()}`) ?? program;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(bin, { args, stdin: "inherit", stdout: "inherit", stderr: "inherit" })
      .spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new OdError(`${program} is not installed (looked for "${bin}" on PATH)`, {
        exitCode: 255,
      });
    }
    throw err;
  }
  // Ctrl-C reaches the tool through the terminal; od waits for it instead of dying first.
  const forward = (sig: Deno.Signal) => () => {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", () => {}],
    ["SIGTERM", forward("SIGTERM")],
    ["SIGHUP", forward("SIGHUP")],
  ];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  try {
    const status = await child.status;
    return status.signal ? 128 + signalNumber(status.signal) : status.code;
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  }
}

function signalNumber(sig: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return numbers[sig] ?? 1;
}

function wantsHelp(args: string[], tool: keyof typeof USAGE): boolean {
  if (args.length === 1 && (args[0] === "--help" || args[0] === "-h")) {
    console.log(USAGE[tool]);
    return true;
  }
  return false;
}

/** One device for all remote operands gets a HostKeyAlias; several rely on pinned names. */
function aliasFor(hosts: string[]): string | null {
  const unique = [...new Set(hosts)];
  return unique.length === 1 ? `${unique[0]}.od` : null;
}

/** Entry point of `od ssh`. */
export function sshCommand(args: string[]): Promise<number> {
  if (wantsHelp(args, "ssh")) return Promise.resolve(0);
  const parsed = parseSshArgs(args);
  const hosts = parsed.host === null ? [] : [deviceHost(parsed.host, "ssh")];
  loadClientConfig(); // not logged in: say so before ssh starts
  return runTool("ssh", [...odSshOptions(aliasFor(hosts)), ...args]);
}

/** Entry point of `od scp`. */
export function scpCommand(args: string[]): Promise<number> {
  if (wantsHelp(args, "scp")) return Promise.resolve(0);
  const hosts = findScpOperands(args).map((o) => deviceHost(o.host, "scp"));
  loadClientConfig();
  return runTool("scp", [...odSshOptions(aliasFor(hosts)), ...args]);
}

/** Entry point of `od sftp`. */
export function sftpCommand(args: string[]): Promise<number> {
  if (wantsHelp(args, "sftp")) return Promise.resolve(0);
  const dest = findSftpDestination(args);
  const hosts = dest ? [deviceHost(dest.host, "sftp")] : [];
  loadClientConfig();
  return runTool("sftp", [...odSshOptions(aliasFor(hosts)), ...args]);
}

/** Entry point of `od rsync`. */
export function rsyncCommand(args: string[]): Promise<number> {
  if (wantsHelp(args, "rsync")) return Promise.resolve(0);
  const { remote, rsh } = findRsyncOperands(args);
  if (remote.some((r) => r.daemon)) {
    throw new UsageError(
      "od rsync: rsync daemon addresses (HOST::MODULE, rsync://) are not supported; use DEV:PATH",
    );
  }
  const hosts = remote.filter((r) => r.host !== "").map((r) => deviceHost(r.host, "rsync"));
  loadClientConfig();
  const out = [...args];
  const userShell = rsh ? splitRsyncCommand(rsh.value) : ["ssh"];
  if (userShell.length === 0) throw new UsageError("od rsync: -e needs a command");
  const shell = joinRsyncCommand([
    userShell[0],
    ...odSshOptions(aliasFor(hosts)),
    ...userShell.slice(1),
  ]);
  if (rsh) out[rsh.valueIndex] = rsh.prefix + shell;
  else out.unshift("-e", shell);
  return runTool("rsync", out);
}
