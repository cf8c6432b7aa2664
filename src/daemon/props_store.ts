/**
 * Properties on the device, kept in the state directory so they survive the daemon and the
 * link being down:
 *   props.json           the relay's values as last synced ({k: {v, at}})
 *   props-pending.jsonl  changes made here and not yet acknowledged by the relay, one JSON line
 *                        each ({seq, k, v, at}), appended with fsync
 * Both the daemon and `od props` (when the daemon is not running) use this class; an flock on
 * `props.lock` serialises them. What `od props get` shows is the synced values with the pending
 * changes applied on top, by last write per key.
 */
import { MAX_PROPS, mergeChanges, type PropChange, type PropValue } from "../protocol/props.ts";

/** A change waiting for the relay's acknowledgement. */
export interface PendingChange extends PropChange {
  seq: number;
}

const SNAPSHOT = "props.json";
const PENDING = "props-pending.jsonl";
const LOCK = "props.lock";

/** The device's local property files. */
export class LocalProps {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  #locked<T>(fn: () => T): T {
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = Deno.openSync(`${this.dir}/${LOCK}`, { create: true, write: true, mode: 0o600 });
    try {
      lock.lockSync(true);
      return fn();
    } finally {
      lock.close(); // releases the flock
    }
  }

  /** The relay's values as last synced. */
  snapshot(): Map<string, PropValue> {
    try {
      const data = JSON.parse(Deno.readTextFileSync(`${this.dir}/${SNAPSHOT}`));
      return new Map(Object.entries(data.props ?? {}) as [string, PropValue][]);
    } catch {
      return new Map();
    }
  }

  /** Replaces (or, with `merge`, updates by last write) the synced values. */
  saveSnapshot(values: Map<string, PropValue>, merge: boolean): void {
    this.#locked(() => {
      const next = merge ? this.snapshot() : new Map<string, PropValue>();
      mergeChanges(next, [...values].map(([k, p]) => ({ k, ...p })), Infinity);
      writeAtomic(`${this.dir}/${SNAPSHOT}`, JSON.stringify({ props: Object.fromEntries(next) }));
    });
  }

  /** Changes not yet acknowledged, oldest first. */
  pending(): PendingChange[] {
    let text: string;
    try {
      text = Deno.readTextFileSync(`${this.dir}/${PENDING}`);
    } catch {
      return [];
    }
    const out: PendingChange[] = [];
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // a line torn by power loss mid-append: everything before it is intact
      }
    }
    return out;
  }

  /** Queues changes durably; returns them with their sequence numbers. */
  append(changes: PropChange[]): PendingChange[] {
    return this.#locked(() => {
      const last = this.pending().reduce((m, c) => Math.max(m, c.seq), 0);
      let seq = Math.max(last + 1, Date.now()); // increasing even after the file was emptied
      const queued = changes.map((c) => ({ seq: seq++, ...c }));
      const file = Deno.openSync(`${this.dir}/${PENDING}`, {
        append: true,
        create: true,
        mode: 0o600,
      });
      try {
        const bytes = new TextEncoder().encode(
          queued.map((c) => JSON.stringify(c) + "\n").join(""),
        );
        let off = 0;
        while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
        file.syncSync();
      } finally {
        file.close();
      }
      return queued;
    });
  }

  /**
   * Moves the changes the relay has acknowledged (sequence numbers up to `seq`) from the queue
   * into the synced values, except those it `rejected`: the relay does not echo a device's own
   * changes back, so this is where they become part of the synced copy.
   */
  ack(seq: number, rejected: string[] = []): void {
    this.#locked(() => {
      const pending = this.pending();
      const done = pending.filter((c) => c.seq <= seq && !rejected.includes(c.k));
      const next = this.snapshot();
      mergeChanges(next, done, Infinity);
      writeAtomic(`${this.dir}/${SNAPSHOT}`, JSON.stringify({ props: Object.fromEntries(next) }));
      const rest = pending.filter((c) => c.seq > seq);
      writeAtomic(`${this.dir}/${PENDING}`, rest.map((c) => JSON.stringify(c) + "\n").join(""));
    });
  }

  /** The properties as this device sees them: synced values plus pending changes. */
  view(): Record<string, string> {
    const merged = this.snapshot();
    mergeChanges(merged, this.pending(), Infinity);
    const out: Record<string, string> = {};
    for (const [k, p] of [...merged].sort(([a], [b]) => a.localeCompare(b))) {
      if (p.v !== null) out[k] = p.v;
    }
    return out;
  }
}

/** Writes a file atomically and durably with mode 0600. */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.renameSync(tmp, path);
}

/**
 * Validated local edit: queues `set` and `rm` as changes made now (in relay time, using the
 * clock offset the relay last reported) unless the result would exceed the property limit, in
 * which case nothing is stored. Key and value rules are checked by the caller.
 */
export function editLocal(
  props: LocalProps,
  set: Record<string, string>,
  rm: string[],
  clockOffset: number,
): Record<string, string> {
  const view = props.view();
  const after = { ...view, ...set };
  for (const k of rm) delete after[k];
  const count = Object.keys(after).length;
  if (count > MAX_PROPS && count > Object.keys(view).length) {
    throw new RangeError(
      `the device would have ${count} properties and the limit is ${MAX_PROPS}; nothing was stored`,
    );
  }
  const at = Date.now() + clockOffset;
  props.append([
    ...Object.entries(set).map(([k, v]) => ({ k, v, at })),
    ...rm.map((k) => ({ k, v: null, at })),
  ]);
  return props.view();
}
