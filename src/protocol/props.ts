/**
 * Device properties: the rules shared by the relay, the daemon and the CLI. Keys are
 * `[A-Za-z0-9_.:-]{1,64}`, values at most 4 KiB of UTF-8, at most 256 per device. Keys starting
 * with `on:` belong to the relay (state, last seen, version …) and are read-only.
 *
 * Concurrent edits resolve by last write per key: every change carries the time it was made
 * (in relay time; devices correct their clock by the offset the relay tells them), and a change
 * older than what is stored for its key is ignored. Removals are kept as tombstones so an old
 * change cannot bring a removed key back.
 */

/** Longest key. */
export const MAX_KEY = 64;
/** Largest value in bytes of UTF-8. */
export const MAX_VALUE_BYTES = 4096;
/** Most properties one device may have. */
export const MAX_PROPS = 256;
/** Prefix of the relay's read-only properties. */
export const RESERVED_PREFIX = "on:";

const KEY_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/** One change: a new value, or null to remove the key; `at` is when it was made (ms). */
export interface PropChange {
  k: string;
  v: string | null;
  at: number;
}

/** A stored property value and when it was last written; v null is a removal. */
export interface PropValue {
  v: string | null;
  at: number;
}

/** Why a key cannot be written, or null. */
export function keyProblem(key: string): string | null {
  if (!KEY_RE.test(key)) {
    return `property key "${key.slice(0, 80)}" must be 1 to ${MAX_KEY} of A-Z a-z 0-9 _ . : -`;
  }
  if (key.startsWith(RESERVED_PREFIX)) {
    return `property "${key}" is maintained by the relay and cannot be changed`;
  }
  return null;
}

/** Why a value cannot be stored, or null. */
export function valueProblem(key: string, value: string): string | null {
  const bytes = new TextEncoder().encode(value).length;
  if (bytes > MAX_VALUE_BYTES) {
    return `value of property "${key}" is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES}`;
  }
  return null;
}

/** Parses `k=v` assignments (the value may contain `=`); throws RangeError on the first bad one. */
export function parseAssignments(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new RangeError(`"${arg.slice(0, 80)}" is not KEY=VALUE`);
    const key = arg.slice(0, eq);
    const value = arg.slice(eq + 1);
    const problem = keyProblem(key) ?? valueProblem(key, value);
    if (problem) throw new RangeError(problem);
    out[key] = value;
  }
  return out;
}

/** Checks keys to remove; throws RangeError on the first bad one. */
export function checkKeys(keys: string[]): void {
  for (const k of keys) {
    const problem = keyProblem(k);
    if (problem) throw new RangeError(problem);
  }
}

/**
 * Applies changes to a property map by last write per key; returns the changes that took
 * effect. `limit` bounds the number of present keys: a change that would add a key beyond it
 * is rejected and reported in `rejected`.
 */
export function mergeChanges(
  current: Map<string, PropValue>,
  changes: PropChange[],
  limit = MAX_PROPS,
): { applied: PropChange[]; rejected: PropChange[] } {
  let present = [...current.values()].filter((p) => p.v !== null).length;
  const applied: PropChange[] = [];
  const rejected: PropChange[] = [];
  for (const c of changes) {
    const old = current.get(c.k);
    if (old && old.at > c.at) continue; // a later write already won
    const adds = c.v !== null && (!old || old.v === null);
    const removes = c.v === null && old !== undefined && old.v !== null;
    if (adds && present >= limit) {
      rejected.push(c);
      continue;
    }
    present += adds ? 1 : removes ? -1 : 0;
    current.set(c.k, { v: c.v, at: c.at });
    applied.push(c);
  }
  return { applied, rejected };
}
