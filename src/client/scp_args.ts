/**
 * Finds the remote operands of `scp` and the destination of `sftp` by walking their OpenSSH 9.2
 * option grammars (BSD getopt: options stop at the first operand) and their operand rules
 * (OpenSSH's colon(), parse_user_host_path() and parse_uri()). Pure: no I/O.
 *
 * Both tools pass their own `-l user` after the user's `-o` options, so `-o User=x` beats the
 * user written in an operand; od sees that in the arguments if it cares.
 */
import { type Grammar, parseUri, splitUserHost, SshArgsError, walkOptions } from "./ssh_args.ts";

/** A remote operand: `[user@]host:path` or `scp://[user@]host[:port][/path]`. */
export interface RemoteOperand {
  index: number;
  user?: string;
  host: string;
  /** The remote path; "." when the operand names none (`dev:`). */
  path: string;
  port?: number;
}

const SCP: Grammar = { flags: "2346ABCOpqRrsTvdft", values: "cDFiJlMoPSX" };
const SFTP: Grammar = { flags: "246AaCfhNpqrv", values: "BbcDFiJloPRSsX", stopAt: "h" };

/** `[host]` without its brackets, like OpenSSH's cleanhostname(). */
export function cleanHost(host: string): string {
  return host.length >= 2 && host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Index of the colon that makes `s` remote for scp and sftp, or -1 (OpenSSH's colon()). */
export function remoteColon(s: string): number {
  if (s.startsWith(":")) return -1; // a leading colon is part of a local file name
  let bracket = s.startsWith("[");
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "@" && s[i + 1] === "[") bracket = true;
    if (s[i] === "]" && s[i + 1] === ":" && bracket) return i + 1;
    if (s[i] === ":" && !bracket) return i;
    if (s[i] === "/") return -1;
  }
  return -1;
}

/** `[user@]host:path` split like parse_user_host_path(), or null for a local operand. */
function userHostPath(s: string): Omit<RemoteOperand, "index"> | null {
  const colon = remoteColon(s);
  if (colon < 0) return null;
  const { user, host } = splitUserHost(s.slice(0, colon));
  const path = s.slice(colon + 1) || ".";
  return user ? { user, host: cleanHost(host), path } : { host: cleanHost(host), path };
}

/** The remote operands of an scp command line, in order; local operands are skipped. */
export function findScpOperands(args: string[]): RemoteOperand[] {
  const operands = walkOptions(args, 0, SCP).next;
  if (args.length - operands < 2) throw new SshArgsError("scp needs a source and a target");
  const remote: RemoteOperand[] = [];
  for (let index = operands; index < args.length; index++) {
    if (remoteColon(args[index]) < 0) continue;
    const uri = parseUri("scp", args[index]);
    const parts = uri ? { ...uri, path: uri.path ?? "." } : userHostPath(args[index]);
    if (parts) remote.push({ index, ...withoutUndefined(parts) });
  }
  return remote;
}

/** Where sftp connects: its destination operand, split. */
export interface SftpDestination {
  index: number;
  user?: string;
  host: string;
  /** The remote file or directory to start in, if the destination names one. */
  path?: string;
  port?: number;
}

/** The destination of an sftp command line; null when sftp connects nowhere (-D, -h). */
export function findSftpDestination(args: string[]): SftpDestination | null {
  const pass = walkOptions(args, 0, SFTP);
  if (pass.stopped || pass.options.some((o) => o.letter === "D")) return null;
  const index = pass.next;
  if (index >= args.length) throw new SshArgsError("missing destination");
  if (args.length - index > 2) {
    throw new SshArgsError("sftp takes a destination and at most one local path");
  }
  const arg = args[index];
  const parts = parseUri("sftp", arg) ?? userHostPath(arg) ?? userHostPort(arg);
  if (parts.host === "") throw new SshArgsError(`missing host name in "${arg}"`);
  return { index, ...withoutUndefined(parts) };
}

/** `[user@]host` as parse_user_host_port() reads it, else the whole argument as the host. */
function userHostPort(s: string): { user?: string; host: string } {
  const { user, host } = splitUserHost(s);
  const valid = user !== "" && host !== "" && /^(\[[^\]]*\]|(?!\[)[^:/]*)$/.test(host);
  if (!valid) return { host: cleanHost(s) };
  return user === undefined ? { host: cleanHost(host) } : { user, host: cleanHost(host) };
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
