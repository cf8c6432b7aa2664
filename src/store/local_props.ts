/**
 * Properties on the device, kept in the state directory so they survive the daemon and the link
 * being down. Both the daemon and `od props` (when no daemon runs) use this class; an flock on
 * `props.lock` serialises them.
 *
 * One append-only journal, `props.log`, holds two things: the relay's values as last synced,
 * and the changes made here that the relay has not acknowledged yet. Each record is one JSON
 * object on its own line, written with a leading newline and fsynced before the call returns:
 *   {"s":k,"v":v|null,"at":t}      synced value of k (null: a removal the relay keeps)
 *   {"x":k}                        k is no longer in the relay's state
 *   {"p":seq,"k":k,"v":v|null,"at":t}  a change made here, queued for the relay
 *   {"a":seq,"r":[k]}              the relay applied the queue up to seq, except keys r
 *   {"q":seq}                      the last seq used (keeps seqs increasing after compaction)
 * Writes are proportional to the change: a sync appends only the keys whose value differs. A
 * record torn by kill -9 or power loss is never valid JSON (a JSON object needs its closing
 * brace), so it is skipped, and the next record starts on a fresh line. When the journal has
 * grown to four times its compacted size it is rewritten atomically with the current state,
 * which keeps the work per change constant on average. Reads are incremental too: a process
 * re-reads only what others appended since its last look.
 *
 * What `od props get` on the device shows is the synced values with the queued changes applied
 * on top, by last write per key.
 */
import type { PendingChange } from "../protocol/control.ts";
import {
  isKeyShape,
  MAX_PROPS,
  MAX_VALUE_BYTES,
  mergeChanges,
  type PropChange,
  type PropValue,
} from "../protocol/props.ts";
import { appendDurably, writeAtomic } from "./files.ts";

const JOURNAL = "props.log";
const LOCK = "props.lock";
const LEGACY_SNAPSHOT = "props.json"; // od 0.1's files, read once and converted
const LEGACY_PENDING = "props-pending.jsonl";
const COMPACT_MIN_BYTES = 64 * 1024; // below this, rewriting saves nothing worth a rename
const COMPACT_FACTOR = 4; // rewrite when the journal is this many times its compacted size

interface State {
  synced: Map<string, PropValue>;
  pending: PendingChange[];
  lastSeq: number;
}

type JournalRecord =
  | { s: string; v: string | null; at: number }
  | { x: string }
  | { p: number; k: string; v: string | null; at: number }
  | { a: number; r: string[] }
  | { q: number };

const isTime = (t: unknown): t is number => typeof t === "number" && Number.isFinite(t) && t >= 0;
const isValue = (v: unknown): v is string | null =>
  v === null || (typeof v === "string" && v.length <= MAX_VALUE_BYTES);

/** Applies one journal record to the state; records of an unknown or broken shape are skipped. */
function replay(state: State, r: Record<string, unknown>): void {
  if (typeof r.s === "string" && isKeyShape(r.s) && isValue(r.v) && isTime(r.at)) {
    state.synced.delete(r.s);
    state.synced.set(r.s, { v: r.v, at: r.at });
  } else if (typeof r.x === "string") {
    state.synced.delete(r.x);
  } else if (
    isTime(r.p) && typeof r.k === "string" && isKeyShape(r.k) && isValue(r.v) && isTime(r.at)
  ) {
    state.pending.push({ seq: r.p, k: r.k, v: r.v, at: r.at });
    state.lastSeq = Math.max(state.lastSeq, r.p);
  } else if (isTime(r.a) && Array.isArray(r.r)) {
    const seq = r.a;
    const rejected = new Set(r.r);
    const done = state.pending.filter((c) => c.seq <= seq && !rejected.has(c.k));
    mergeChanges(state.synced, done, Infinity);
    state.pending = state.pending.filter((c) => c.seq > seq);
  } else if (isTime(r.q)) {
    state.lastSeq = Math.max(state.lastSeq, r.q);
  }
}

function replayText(state: State, text: string): void {
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      continue; // torn by a crash mid-append: everything around it is intact
    }
    if (typeof record === "object" && record !== null) {
      replay(state, record as Record<string, unknown>);
    }
  }
}

const line = (r: JournalRecord) => "\n" + JSON.stringify(r);
const emptyState = (): State => ({ synced: new Map(), pending: [], lastSeq: 0 });

/** The device's local property journal. */
export class LocalProps {
  readonly dir: string;
  #state: State = emptyState();
  #ino: number | null = null; // which journal file #state reflects, and up to which byte
  #offset = 0;
  #compactedSize = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  get #path(): string {
    return `${this.dir}/${JOURNAL}`;
  }

  /** Runs `fn` under the lock, on the state as the journal holds it now. */
  #locked<T>(fn: (state: State) => T): T {
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = Deno.openSync(`${this.dir}/${LOCK}`, { create: true, write: true, mode: 0o600 });
    try {
      lock.lockSync(true);
      this.#refresh();
      return fn(this.#state);
    } finally {
      lock.close(); // releases the flock
    }
  }

  /** Brings #state up to date with the journal, reading only what was appended since. */
  #refresh(): void {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(this.#path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      this.#state = emptyState();
      this.#ino = null;
      this.#offset = 0;
      this.#convertLegacy();
      return;
    }
    if (info.ino !== this.#ino || info.size < this.#offset) {
      this.#state = emptyState();
      this.#offset = 0;
      this.#ino = info.ino;
      this.#compactedSize = info.size;
    }
    if (info.size === this.#offset) return;
    const file = Deno.openSync(this.#path, { read: true });
    try {
      file.seekSync(this.#offset, Deno.SeekMode.Start);
      const bytes = new Uint8Array(info.size - this.#offset);
      let got = 0;
      while (got < bytes.length) {
        const n = file.readSync(bytes.subarray(got));
        if (n === null) break;
        got += n;
      }
      replayText(this.#state, new TextDecoder().decode(bytes.subarray(0, got)));
      this.#offset += got;
    } finally {
      file.close();
    }
  }

  /** Appends records durably and compacts the journal when it has grown enough. */
  #append(records: JournalRecord[]): void {
    if (records.length === 0) return;
    const text = records.map(line).join("");
    appendDurably(this.#path, text);
    for (const r of records) replay(this.#state, r as Record<string, unknown>);
    const info = Deno.statSync(this.#path);
    this.#ino = info.ino;
    this.#offset = info.size;
    if (info.size > Math.max(COMPACT_MIN_BYTES, COMPACT_FACTOR * this.#compactedSize)) {
      this.#compact();
    }
  }

  /** Rewrites the journal as the current state, atomically. */
  #compact(): void {
    const { synced, pending, lastSeq } = this.#state;
    const records: JournalRecord[] = [{ q: lastSeq }];
    for (const [k, p] of synced) records.push({ s: k, v: p.v, at: p.at });
    for (const c of pending) records.push({ p: c.seq, k: c.k, v: c.v, at: c.at });
    writeAtomic(this.#path, records.map(line).join(""));
    const info = Deno.statSync(this.#path);
    this.#ino = info.ino;
    this.#offset = info.size;
    this.#compactedSize = info.size;
  }

  /** Reads od 0.1's snapshot and queue once into a new journal, then removes them. */
  #convertLegacy(): void {
    const read = (name: string) => {
      try {
        return Deno.readTextFileSync(`${this.dir}/${name}`);
      } catch {
        return null;
      }
    };
    const snapshot = read(LEGACY_SNAPSHOT);
    const queue = read(LEGACY_PENDING);
    if (snapshot === null && queue === null) return;
    try {
      const props = JSON.parse(snapshot ?? "{}").props ?? {};
      for (const [k, p] of Object.entries(props as Record<string, PropValue>)) {
        replay(this.#state, { s: k, v: p?.v, at: p?.at });
      }
    } catch {
      // an unreadable snapshot is refetched from the relay at the next connect
    }
    for (const l of (queue ?? "").split("\n")) {
      try {
        const c = JSON.parse(l);
        replay(this.#state, { p: c.seq, k: c.k, v: c.v, at: c.at });
      } catch {
        // a line torn by power loss
      }
    }
    this.#compact();
    for (const name of [LEGACY_SNAPSHOT, LEGACY_PENDING]) {
      try {
        Deno.removeSync(`${this.dir}/${name}`);
      } catch {
        // already gone
      }
    }
  }

  /** The relay's values as last synced. */
  snapshot(): Map<string, PropValue> {
    return this.#locked((s) => new Map(s.synced));
  }

  /**
   * Takes the relay's values: with `full`, they are its whole state and replace the synced
   * copy; otherwise they are edits, merged by last write. Only keys whose value changes are
   * written.
   */
  applyRelay(values: PropChange[], full: boolean): void {
    this.#locked((s) => {
      const next = full ? new Map<string, PropValue>() : new Map(s.synced);
      if (full) { for (const { k, v, at } of values) next.set(k, { v, at }); }
      else mergeChanges(next, values, Infinity);
      const records: JournalRecord[] = [];
      for (const k of s.synced.keys()) if (!next.has(k)) records.push({ x: k });
      for (const [k, p] of next) {
        const old = s.synced.get(k);
        if (!old || old.v !== p.v || old.at !== p.at) records.push({ s: k, v: p.v, at: p.at });
      }
      this.#append(records);
    });
  }

  /** Changes not yet acknowledged, oldest first. */
  pending(): PendingChange[] {
    return this.#locked((s) => [...s.pending]);
  }

  /** Queues changes durably; returns them with their sequence numbers. */
  append(changes: PropChange[]): PendingChange[] {
    return this.#locked((s) => this.#queue(s, changes));
  }

  #queue(s: State, changes: PropChange[]): PendingChange[] {
    let seq = Math.max(s.lastSeq + 1, Date.now()); // increasing even after the queue emptied
    const queued = changes.map((c) => ({ seq: seq++, ...c }));
    this.#append(queued.map((c) => ({ p: c.seq, k: c.k, v: c.v, at: c.at })));
    return queued;
  }

  /**
   * Records that the relay applied the queue up to `seq`, except the keys it `rejected`: the
   * relay does not echo a device's own changes back, so this is where they become synced.
   */
  ack(seq: number, rejected: string[] = []): void {
    this.#locked(() => this.#append([{ a: seq, r: rejected }]));
  }

  /** The properties as this device sees them: synced values plus queued changes, by key. */
  view(): Record<string, string> {
    return this.#locked((s) => viewOf(s));
  }

  /**
   * Queues `set` and `rm` as changes made now (in relay time, by `clockOffset`) unless the
   * result would exceed the property limit, in which case nothing is stored. A removal of a
   * key this device does not have stores nothing, as on the relay. Key and value rules are
   * checked by the caller. Returns the view after the edit.
   */
  edit(
    set: Record<string, string>,
    rm: string[],
    clockOffset: number,
  ): Record<string, string> {
    return this.#locked((s) => {
      const view = viewOf(s);
      const after = { ...view, ...set };
      for (const k of rm) delete after[k];
      const count = Object.keys(after).length;
      if (count > MAX_PROPS && count > Object.keys(view).length) {
        throw new RangeError(
          `the device would have ${count} properties and the limit is ${MAX_PROPS}; ` +
            `nothing was stored`,
        );
      }
      const at = Date.now() + clockOffset;
      this.#queue(s, [
        ...Object.entries(set).map(([k, v]) => ({ k, v, at })),
        ...rm.filter((k) => Object.hasOwn(view, k)).map((k) => ({ k, v: null, at })),
      ]);
      return viewOf(s);
    });
  }
}

function viewOf(s: State): Record<string, string> {
  const merged = new Map(s.synced);
  mergeChanges(merged, s.pending, Infinity, Infinity);
  const out: Record<string, string> = {};
  for (const [k, p] of [...merged].sort(([a], [b]) => a.localeCompare(b))) {
    if (p.v !== null) out[k] = p.v;
  }
  return out;
}
