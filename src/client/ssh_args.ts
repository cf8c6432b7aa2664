/**
 * Finds the destination in an `ssh` command line by walking ssh's own option grammar (OpenSSH
 * 9.2): BSD getopt without permutation, then a second option pass after the destination, so
 * `ssh dev -p 2222 ls -p 3` connects to port 2222 and runs `ls -p 3`. Every setting follows
 * ssh's rule that the first value given wins. Pure: no I/O. The shared pieces (getopt walk,
 * URI and port parsing) are used by scp_args.ts.
 */
import { UsageError } from "../shared/errors.ts";

/** A command line the real tool would reject; the message is one sentence. Exit code 2. */
export class SshArgsError extends UsageError {
  override name = "SshArgsError";
}

/** One option of a getopt command line: in `-p 22`, `index` is at `-p` and `valueIndex` at `22`. */
export interface ParsedOption {
  letter: string;
  index: number;
  value?: string;
  /** The argument holding the value: `index` when attached (`-p22`), else `index + 1`. */
  valueIndex?: number;
}

/** A tool's option letters; `stopAt` letters make the tool exit at once (`ssh -V`). */
export interface Grammar {
  flags: string;
  values: string;
  stopAt?: string;
}

/** One getopt pass: its options, the index of the first operand, and whether a stopAt fired. */
export interface OptionPass {
  options: ParsedOption[];
  next: number;
  stopped: boolean;
}

/** `[user@]host` split at the last `@`, as ssh, scp and rsync do; `user` may be empty. */
export function splitUserHost(s: string): { user?: string; host: string } {
  const at = s.lastIndexOf("@");
  return at < 0 ? { host: s } : { user: s.slice(0, at), host: s.slice(at + 1) };
}

/** Walks BSD getopt from `start` to the first operand, past a `--`, or to a stopAt letter. */
export function walkOptions(args: string[], start: number, grammar: Grammar): OptionPass {
  const options: ParsedOption[] = [];
  let i = start;
  while (i < args.length) {
    const arg = args[i];
    if (arg === "--") return { options, next: i + 1, stopped: false };
    if (arg.length < 2 || arg[0] !== "-") break;
    const step = readCluster(args, i, grammar, options);
    if (step.stopped) return { options, next: step.next, stopped: true };
    i = step.next;
  }
  return { options, next: i, stopped: false };
}

function readCluster(args: string[], i: number, grammar: Grammar, out: ParsedOption[]) {
  const arg = args[i];
  for (let j = 1; j < arg.length; j++) {
    const letter = arg[j];
    const stopped = grammar.stopAt?.includes(letter) ?? false;
    if (grammar.values.includes(letter)) {
      const attached = j + 1 < arg.length;
      if (!attached && i + 1 >= args.length) {
        throw new SshArgsError(`option -${letter} needs a value`);
      }
      const valueIndex = attached ? i : i + 1;
      const value = attached ? arg.slice(j + 1) : args[i + 1];
      out.push({ letter, index: i, value, valueIndex });
      return { next: valueIndex + 1, stopped };
    }
    if (!grammar.flags.includes(letter)) throw new SshArgsError(`unknown option -${letter}`);
    out.push({ letter, index: i });
    if (stopped) return { next: i + 1, stopped };
  }
  return { next: i + 1, stopped: false };
}

/** A port as OpenSSH's a2port reads it (1 to 65535), or null. */
export function toPort(s: string): number | null {
  if (!/^\s*\+?\d+$/.test(s)) return null;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

/** The parts of an `ssh://`, `scp://` or `sftp://` URI. */
export interface UriParts {
  user?: string;
  host: string;
  port?: number;
  path?: string;
}

/** Parses `scheme://[user[;params]@]host[:port][/path]` like OpenSSH, or null for another form. */
export function parseUri(scheme: string, s: string): UriParts | null {
  if (!s.startsWith(`${scheme}://`)) return null;
  const invalid = () => new SshArgsError(`invalid ${scheme}:// URI "${s}"`);
  let rest = s.slice(scheme.length + 3);
  const parts: UriParts = { host: "" };
  const at = rest.indexOf("@"); // the first @, unlike the plain forms
  if (at >= 0) {
    const user = rest.slice(0, at).split(";")[0];
    if (user === "") throw invalid();
    parts.user = urlDecode(user, invalid);
    rest = rest.slice(at + 1);
  }
  const m = /^(\[[^\]]*\]|(?!\[)[^:/]*)(?:([:/])(.*))?$/s.exec(rest);
  if (!m || m[1] === "" || m[1] === "[]") throw invalid();
  parts.host = m[1].replace(/^\[(.*)\]$/s, "$1");
  let tail = m[3] ?? "";
  if (m[2] === ":") {
    const slash = tail.indexOf("/");
    const port = slash < 0 ? tail : tail.slice(0, slash);
    tail = slash < 0 ? "" : tail.slice(slash + 1);
    if (port !== "") {
      const n = toPort(port);
      if (n === null) throw invalid();
      parts.port = n;
    }
  }
  if (tail !== "") parts.path = urlDecode(tail, invalid);
  return parts;
}

function urlDecode(s: string, invalid: () => Error): string {
  if (/%(?![0-9a-fA-F]{2})|%00/.test(s)) throw invalid();
  try {
    return decodeURIComponent(s.replaceAll("+", " "));
  } catch {
    throw invalid();
  }
}

/** Which ssh is run: in OpenSSH 9.2 `-P` is an ignored flag; newer releases take `-P tag`. */
export interface SshGrammarOptions {
  tagOption?: boolean;
}

/** Where an ssh command line connects, and what it runs there. */
export interface SshInvocation {
  /** Index of the destination argument; null when ssh exits without connecting (-V, -Q). */
  destinationIndex: number | null;
  /** The destination's host as typed (ssh lowercases it later), or null. */
  host: string | null;
  /** The user written in the destination (`user@host`, `ssh://user@host`), or null. */
  destinationUser: string | null;
  /** The login the command line sets: the first given of -l, -o User and the destination's. */
  user: string | null;
  /** The port the command line sets: the first given of -p, -o Port and an ssh:// port. */
  port: number | null;
  /** The remote command and its arguments. */
  command: string[];
  /** Every option, in order, before and after the destination. */
  options: ParsedOption[];
}

const SSH_FLAGS = "246AaCfGgKkMNnqsTtVvXxYy";
const SSH_VALUES = "BbcDEeFIiJLlmOopQRSWw";

/** Parses an ssh command line as OpenSSH does; throws SshArgsError where ssh prints usage. */
export function parseSshArgs(args: string[], opts: SshGrammarOptions = {}): SshInvocation {
  const grammar: Grammar = {
    flags: opts.tagOption ? SSH_FLAGS : `${SSH_FLAGS}P`,
    values: opts.tagOption ? `${SSH_VALUES}P` : SSH_VALUES,
    stopAt: "VQ",
  };
  const before = walkOptions(args, 0, grammar);
  if (before.stopped) return exitsEarly(before.options);
  const at = before.next;
  if (at >= args.length) throw new SshArgsError("missing destination");
  const dest = parseSshDestination(args[at]);
  // ssh reads options again after the destination unless the argument before it is "--", even
  // a "--" that was an option's value: `ssh -i -- dev -p 2` runs `-p 2` on dev.
  const after = at > 0 && args[at - 1] === "--"
    ? { options: [], next: at + 1, stopped: false }
    : walkOptions(args, at + 1, grammar);
  const options = [...before.options, ...after.options];
  if (after.stopped) return exitsEarly(options);
  const { user, port } = firstGiven([
    ...before.options.map(optionSetting),
    { user: dest.user, port: dest.port },
    ...after.options.map(optionSetting),
  ]);
  return {
    destinationIndex: at,
    host: dest.host,
    destinationUser: dest.user ?? null,
    user,
    port,
    command: args.slice(after.next),
    options,
  };
}

function exitsEarly(options: ParsedOption[]): SshInvocation {
  const none = { destinationIndex: null, host: null, destinationUser: null };
  return { ...none, user: null, port: null, command: [], options };
}

function parseSshDestination(arg: string): { user?: string; host: string; port?: string } {
  const uri = parseUri("ssh", arg);
  if (uri?.path !== undefined) throw new SshArgsError(`an ssh:// URI cannot hold a path: "${arg}"`);
  if (uri) return { user: uri.user, host: uri.host, port: uri.port?.toString() };
  const { user, host } = splitUserHost(arg);
  if (user === "") throw new SshArgsError(`missing user name before "@" in "${arg}"`);
  return { user, host };
}

/** A login setting from one source; `checked` ports are validated even when they lose. */
interface Setting {
  user?: string;
  port?: string;
  checked?: boolean;
}

function optionSetting(o: ParsedOption): Setting {
  if (o.letter === "l") return { user: o.value };
  if (o.letter === "p") return { port: o.value };
  if (o.letter !== "o") return {};
  const m = /^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$/s.exec(o.value ?? "");
  const key = m?.[1].toLowerCase();
  const value = m?.[2].trim().replace(/^"(.*)"$/s, "$1") ?? "";
  if (value === "") return {};
  if (key === "user") return { user: value };
  return key === "port" ? { port: value, checked: true } : {};
}

function firstGiven(settings: Setting[]): { user: string | null; port: number | null } {
  let user: string | null = null;
  let port: number | null = null;
  for (const s of settings) {
    if (s.user !== undefined) user ??= s.user;
    if (s.port === undefined || (port !== null && !s.checked)) continue;
    const n = toPort(s.port);
    if (n === null) throw new SshArgsError(`bad port "${s.port}"`);
    port ??= n;
  }
  return { user, port };
}
