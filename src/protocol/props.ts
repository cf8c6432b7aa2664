/**
 * Device properties: the rules shared by the relay, the daemon and the CLI. Keys are
 * `[A-Za-z0-9_.:-]{1,64}`, values at most 4 KiB of UTF-8, at most 256 per device. Keys starting
 * with `on:` belong to the relay (state, last seen, version …) and are read-only.
 *
 * Concurrent edits resolve by last write per key: every change carries the time it was made
 * (in relay time; devices correct their clock by the offset the relay tells them), and a change
 * older than what is stored for its key is ignored. Removals are kept as tombstones so an old
 * change cannot bring a removed key back.
 *
 * Tombstones are bounded together with live keys, because every removal a peer asks for would
 * otherwise be a row kept for 30 days (a flood of 1.36 M of them once stalled a relay):
 * - a removal of a key that is not present (never set, or already removed) stores nothing;
 * - at most MAX_TOMBSTONES removals are kept per device, the oldest dropped first.
 * So a device holds at most MAX_PROPS + MAX_TOMBSTONES rows. The price is narrow: a change made
 * before a removal but delivered after it can revive a key if the removal was of a key that was
 * not present where it was made, or if 256 later removals pushed its tombstone out.
 */

/** Longest key. */
export const MAX_KEY = 64;
/** Largest value in bytes of UTF-8. */
export const MAX_VALUE_BYTES = 4096;
/** Most properties one device may have. */
export const MAX_PROPS = 256;
/** Most removals remembered per device (tombstones); older ones are forgotten first. */
export const MAX_TOMBSTONES = 256;
/** Prefix of the relay's read-only properties. */
export const RESERVED_PREFIX = "on:";
/**
 * Latest time a change may carry (ms): the end of JavaScript's Date range. Times are compared
 * as numbers, so without a bound one far-future change (1e308) would outrank every later edit.
 */
export const MAX_TIME = 8.64e15;

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

/** True if `key` has the shape of a key (the reserved `on:` keys included). */
export function isKeyShape(key: string): boolean {
  return KEY_RE.test(key) && key !== "__proto__";
}

/** Why a key cannot be written, or null. */
export function keyProblem(key: string): string | null {
  if (!KEY_RE.test(key)) {
    return `property key ${JSON.stringify(key.slice(0, 80))} must be 1 to ${MAX_KEY} of ` +
      `A-Z a-z 0-9 _ . : -`;
  }
  // A JavaScript object silently drops this key on assignment, so it could be stored and
  // then never shown: refused everywhere instead.
  if (key === "__proto__") return `property key "__proto__" is reserved`;
  if (key.startsWith(RESERVED_PREFIX)) {
    return `property "${key}" is maintained by the relay and cannot be changed`;
  }
  return null;
}

/**
 * Why a value cannot be stored, or null. Values are text: SQLite would cut one at a NUL and
 * turn a lone UTF-16 surrogate into U+FFFD, so both are refused rather than stored differently
 * from what is pushed to the device.
 */
export function valueProblem(key: string, value: string): string | null {
  // UTF-8 never takes fewer bytes than UTF-16 code units, so a longer string is over the limit
  // without encoding it (keeps a hostile megabyte string from costing an encode).
  const bytes = value.length > MAX_VALUE_BYTES
    ? value.length
    : new TextEncoder().encode(value).length;
  if (bytes > MAX_VALUE_BYTES) {
    return `value of property "${key}" is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES}`;
  }
  if (value.includes("\0")) return `value of property "${key}" contains a NUL character`;
  if (!value.isWellFormed()) {
    return `value of property "${key}" is not valid Unicode (a lone surrogate)`;
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

/** What mergeChanges did. */
export interface MergeResult {
  /** Changes stored (and to announce). */
  applied: PropChange[];
  /** Changes refused because they would add a key beyond the limit. */
  rejected: PropChange[];
  /** Tombstones forgotten to stay within MAX_TOMBSTONES. */
  dropped: string[];
}

/**
 * Applies changes to a property map by last write per key, under the bounds above: `limit`
 * bounds present keys (a change that would add one beyond it is rejected), a removal of a key
 * that is not present stores nothing, and tombstones beyond `maxTombstones` are dropped, oldest
 * first. The work is linear in the map and the changes.
 */
export function mergeChanges(
  current: Map<string, PropValue>,
  changes: PropChange[],
  limit = MAX_PROPS,
  maxTombstones = MAX_TOMBSTONES,
): MergeResult {
  let present = 0;
  for (const p of current.values()) if (p.v !== null) present++;
  const applied: PropChange[] = [];
  const rejected: PropChange[] = [];
  for (const c of changes) {
    const old = current.get(c.k);
    if (old && old.at > c.at) continue; // a later write already won
    const live = old !== undefined && old.v !== null;
    if (c.v === null && !live) continue; // nothing to remove: store nothing
    const adds = c.v !== null && !live;
    if (adds && present >= limit) {
      rejected.push(c);
      continue;
    }
    present += adds ? 1 : c.v === null ? -1 : 0;
    current.delete(c.k); // re-inserted last: the map stays in order of writing
    current.set(c.k, { v: c.v, at: c.at });
    applied.push(c);
  }
  return { applied, rejected, dropped: dropTombstones(current, maxTombstones) };
}

/** Removes the oldest tombstones beyond `max` from the map; returns their keys. */
export function dropTombstones(current: Map<string, PropValue>, max = MAX_TOMBSTONES): string[] {
  const tombstones: [string, number][] = [];
  for (const [k, p] of current) if (p.v === null) tombstones.push([k, p.at]);
  if (tombstones.length <= max) return [];
  tombstones.sort((a, b) => a[1] - b[1]);
  const dropped = tombstones.slice(0, tombstones.length - max).map(([k]) => k);
  for (const k of dropped) current.delete(k);
  return dropped;
}
