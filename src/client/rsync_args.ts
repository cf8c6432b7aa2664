/**
 * Finds the remote operands and the `-e`/`--rsh` command of an rsync command line by walking
 * rsync's popt grammar: options may come after operands, short options combine (`-avzP`), a
 * value is attached (`-essh`, `-e=ssh`, `--rsh=ssh`) or is the next argument whatever it looks
 * like (`--exclude -v` excludes "-v"), and `--` ends options. Operands follow rsync's
 * start_client(): the first operand decides whether the sources or the destination are remote.
 * The option lists were checked against the installed rsync 3.5.0. Pure: no I/O.
 */
import type { RemoteOperand } from "./scp_args.ts";
import { SshArgsError } from "./ssh_args.ts";

/** A remote rsync operand; `daemon` marks `host::module` and `rsync://` (an rsync daemon). */
export interface RsyncRemote extends RemoteOperand {
  daemon: boolean;
}

/** Where the remote shell command is: args[valueIndex] is `prefix + value`. */
export interface RshOption {
  /** The argument naming the option (`-e`, `-avze`, `--rsh`, `--rsh=ssh`). */
  index: number;
  /** The argument holding the value: `index` when attached, else `index + 1`. */
  valueIndex: number;
  /** What precedes the value in args[valueIndex]: "-e", "-avze=", "--rsh=", or "" when apart. */
  prefix: string;
  value: string;
}

/** What od needs from an rsync command line. */
export interface RsyncInvocation {
  /** Operands rsync reaches over the network, in order; a `:path` source has host "". */
  remote: RsyncRemote[];
  /** The last `-e`/`--rsh` (the one rsync uses), or null. */
  rsh: RshOption | null;
}

const SHORT_VALUES = "BMT@ef";
const LONG_VALUES = new Set(
  ("address backup-dir block-size bwlimit cc checksum-choice checksum-seed chmod chown " +
    "compare-dest compress-choice compress-level compress-threads config confine-root " +
    "contimeout copy-as copy-dest debug dparam early-input exclude exclude-from files-from " +
    "filter groupmap iconv include include-from info link-dest log-file log-file-format " +
    "log-format max-alloc max-delete max-size min-size modify-window only-write-batch " +
    "out-format outbuf partial-dir password-file port protocol read-batch remote-option rsh " +
    "rsync-path skip-compress sockopts stderr stop-after stop-at suffix temp-dir time-limit " +
    "timeout usermap write-batch zc zl zt").split(" "),
);

/** State of one walk over an rsync command line. */
interface Walk {
  operands: number[];
  rsh: RshOption | null;
  readBatch: boolean;
  /** --version, --help, -V or a lone -h: rsync prints and exits. */
  exits: boolean;
}

/** The remote operands and remote shell of an rsync command line. */
export function findRsyncOperands(args: string[]): RsyncInvocation {
  const walk = walkRsync(args);
  if (walk.exits || walk.readBatch) return { remote: [], rsh: walk.rsh };
  if (walk.operands.length === 0) throw new SshArgsError("missing source");
  return { remote: classify(args, walk.operands), rsh: walk.rsh };
}

function walkRsync(args: string[]): Walk {
  const walk: Walk = { operands: [], rsh: null, readBatch: false, exits: false };
  if (args.length === 1 && args[0] === "-h") return { ...walk, exits: true };
  for (let i = 0; i < args.length && !walk.exits; i++) {
    const arg = args[i];
    if (arg === "--") {
      for (let j = i + 1; j < args.length; j++) walk.operands.push(j);
      break;
    }
    if (arg.startsWith("--")) i = longOption(args, i, walk);
    else if (arg.length > 1 && arg[0] === "-") i = shortCluster(args, i, walk);
    else walk.operands.push(i);
  }
  return walk;
}

/** Reads `--name[=value]`; returns the index of the last argument it used. */
function longOption(args: string[], i: number, walk: Walk): number {
  const eq = args[i].indexOf("=");
  const name = args[i].slice(2, eq < 0 ? undefined : eq);
  if (name === "version" || name === "help") walk.exits = true;
  if (!LONG_VALUES.has(name)) return i;
  if (eq < 0 && i + 1 >= args.length) throw new SshArgsError(`option --${name} needs a value`);
  const valueIndex = eq < 0 ? i + 1 : i;
  const prefix = eq < 0 ? "" : args[i].slice(0, eq + 1);
  const value = eq < 0 ? args[i + 1] : args[i].slice(eq + 1);
  if (name === "rsh") walk.rsh = { index: i, valueIndex, prefix, value };
  if (name === "read-batch") walk.readBatch = true;
  return valueIndex;
}

/** Reads `-abc`, where a value letter takes the rest (minus one `=`) or the next argument. */
function shortCluster(args: string[], i: number, walk: Walk): number {
  const arg = args[i];
  for (let j = 1; j < arg.length; j++) {
    if (arg[j] === "V") walk.exits = true;
    if (walk.exits) return i;
    if (!SHORT_VALUES.includes(arg[j])) continue;
    if (j + 1 === arg.length && i + 1 >= args.length) {
      throw new SshArgsError(`option -${arg[j]} needs a value`);
    }
    const skip = j + 1 + (arg[j + 1] === "=" ? 1 : 0);
    const valueIndex = j + 1 < arg.length ? i : i + 1;
    const prefix = valueIndex === i ? arg.slice(0, skip) : "";
    const value = valueIndex === i ? arg.slice(skip) : args[i + 1];
    if (arg[j] === "e") walk.rsh = { index: i, valueIndex, prefix, value };
    return valueIndex;
  }
  return i;
}

/** Which operands are remote, following rsync's start_client(). */
function classify(args: string[], operands: number[]): RsyncRemote[] {
  const first = hostspec(args[operands[0]]);
  const last = operands[operands.length - 1];
  if (!first) {
    for (const i of operands.slice(1, -1)) {
      if (hostspec(args[i])) throw new SshArgsError(`unexpected remote argument "${args[i]}"`);
    }
    const dest = operands.length > 1 ? hostspec(args[last]) : null;
    return dest ? [{ index: last, ...dest }] : [];
  }
  const hasDest = operands.length > 1 && !args[last].startsWith(":");
  if (hasDest && hostspec(args[last])) {
    throw new SshArgsError("the source and destination cannot both be remote");
  }
  const remote: RsyncRemote[] = [{ index: operands[0], ...first }];
  for (const i of operands.slice(1, hasDest ? -1 : undefined)) {
    const spec = hostspec(args[i]);
    if (!spec) {
      throw new SshArgsError(`unexpected local argument "${args[i]}" after a remote source`);
    }
    if (machine(spec) !== "" && machine(spec) !== machine(first)) {
      throw new SshArgsError("all source arguments must come from the same machine");
    }
    remote.push({ index: i, ...spec });
  }
  return remote;
}

function machine(spec: Omit<RsyncRemote, "index">): string {
  return spec.user === undefined ? spec.host : `${spec.user}@${spec.host}`;
}

/** rsync's check_for_hostspec(): `rsync://`, `host::module` or `host:path`, else null. */
export function hostspec(s: string): Omit<RsyncRemote, "index"> | null {
  if (s.slice(0, 8).toLowerCase() === "rsync://") {
    const url = parseHostspec(s.slice(8), true);
    if (url) return { ...url, daemon: true };
  }
  const spec = parseHostspec(s, false);
  if (!spec) return null;
  if (spec.path.startsWith(":")) return { ...spec, path: spec.path.slice(1), daemon: true };
  return { ...spec, path: spec.path || ".", daemon: false };
}

/** rsync's parse_hostspec(): `[user@]host` up to the first `:` (or `/` in a URL). */
function parseHostspec(s: string, url: boolean): Omit<RsyncRemote, "index" | "daemon"> | null {
  const m = /^(?:([^:/[]*)@)?(\[[^\]/]*\]|[^:/@[]*)(?:([:/])(.*))?$/s.exec(s);
  if (!m || (m[3] === undefined && !url) || (m[3] === "/" && !url) || m[2] === "[]") return null;
  const host = m[2].replace(/^\[(.*)\]$/s, "$1");
  const user = m[1] === undefined ? {} : { user: m[1] };
  if (!url || m[3] !== ":") return { ...user, host, path: m[4] ?? "" };
  const port = /^(\d*)(?:\/(.*))?$/s.exec(m[4]);
  if (!port) return null;
  const num = Number(port[1]) > 0 ? { port: Number(port[1]) } : {}; // 0 or none: the default
  return { ...user, host, ...num, path: port[2] ?? "" };
}
