/**
 * Device properties, last write wins per key (see src/protocol/props.ts for the rules). Rows
 * per device are bounded: at most MAX_PROPS live keys and MAX_TOMBSTONES removals. A removal of
 * a key that is not present stores nothing, and when a removal would keep more tombstones than
 * that, the oldest are deleted in the same transaction. Every write loads the device's rows
 * once (at most MAX_PROPS + MAX_TOMBSTONES) and touches only the keys that change.
 */
import type { DatabaseSync } from "node:sqlite";
import {
  MAX_PROPS,
  MAX_TOMBSTONES,
  mergeChanges,
  type MergeResult,
  type PropChange,
  type PropValue,
} from "../protocol/props.ts";
import { statement, transaction } from "./db.ts";

/** Queries on properties. */
export class Props {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** All keys of a device, removals (v null) included. */
  load(deviceRowid: number): Map<string, PropValue> {
    const rows = statement(this.#db, "SELECT key, value, updated_at FROM props WHERE device_id = ?")
      .all(deviceRowid) as { key: string; value: string | null; updated_at: number }[];
    return new Map(rows.map((r) => [r.key, { v: r.value, at: r.updated_at }]));
  }

  /** The present properties of a device. */
  present(deviceRowid: number): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, p] of this.load(deviceRowid)) if (p.v !== null) out[k] = p.v;
    return out;
  }

  /** Present properties of every device of an account, by device row id. */
  ofAccount(accountId: number): Map<number, Record<string, string>> {
    const rows = statement(
      this.#db,
      `SELECT p.device_id, p.key, p.value FROM props p JOIN devices d ON d.id = p.device_id
       WHERE d.account_id = ? AND p.value IS NOT NULL ORDER BY p.key`,
    ).all(accountId) as { device_id: number; key: string; value: string }[];
    const out = new Map<number, Record<string, string>>();
    for (const r of rows) {
      const props = out.get(r.device_id) ?? {};
      props[r.key] = r.value;
      out.set(r.device_id, props);
    }
    return out;
  }

  /** Present properties of the given devices, by device row id (one query). */
  ofDevices(rowids: number[]): Map<number, Record<string, string>> {
    const out = new Map<number, Record<string, string>>();
    if (rowids.length === 0) return out;
    const rows = statement(
      this.#db,
      `SELECT device_id, key, value FROM props WHERE device_id IN (SELECT value FROM json_each(?))
       AND value IS NOT NULL ORDER BY device_id, key`,
    ).all(JSON.stringify(rowids)) as { device_id: number; key: string; value: string }[];
    for (const r of rows) {
      const props = out.get(r.device_id) ?? {};
      props[r.key] = r.value;
      out.set(r.device_id, props);
    }
    return out;
  }

  /** Applies changes by last write per key in one transaction; returns what took effect. */
  apply(deviceRowid: number, changes: PropChange[], limit = MAX_PROPS): MergeResult {
    return transaction(this.#db, () => {
      const current = this.load(deviceRowid);
      const result = mergeChanges(current, changes, limit);
      const upsert = statement(
        this.#db,
        `INSERT INTO props (device_id, key, value, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value,
         updated_at = excluded.updated_at`,
      );
      for (const k of new Set(result.applied.map((c) => c.k))) {
        const p = current.get(k); // absent if it was a removal whose tombstone was dropped
        if (p) upsert.run(deviceRowid, k, p.v, p.at);
      }
      const remove = statement(this.#db, "DELETE FROM props WHERE device_id = ? AND key = ?");
      for (const k of result.dropped) remove.run(deviceRowid, k);
      return result;
    });
  }

  /**
   * Applies changes only if all of them fit the limit (what a client's request needs): returns
   * the sentence saying why nothing was stored, or the changes that took effect.
   */
  applyAll(deviceRowid: number, changes: PropChange[], limit = MAX_PROPS) {
    const current = this.load(deviceRowid);
    const trial = mergeChanges(new Map(current), changes, limit);
    if (trial.rejected.length > 0) {
      const present = [...current.values()].filter((p) => p.v !== null).length;
      return {
        applied: [] as PropChange[],
        rejected: `the device has ${present} properties and the limit is ${limit}; ` +
          `nothing was changed`,
      };
    }
    return { applied: this.apply(deviceRowid, changes, limit).applied, rejected: null };
  }

  /** Forgets removals older than `before`; they only matter while late changes may arrive. */
  pruneTombstones(before: number): number {
    return Number(
      statement(this.#db, "DELETE FROM props WHERE value IS NULL AND updated_at < ?").run(before)
        .changes,
    );
  }

  /**
   * Repairs a store written by a relay before the bounds above, once at start-up: forgets
   * removals beyond MAX_TOMBSTONES per device, oldest first (a removal flood once left millions
   * of rows), and brings times later than `now` back to `now` (a far-future time froze its key).
   * Returns the number of rows changed.
   */
  repair(now = Date.now()): number {
    return transaction(this.#db, () => {
      const excess = statement(
        this.#db,
        `DELETE FROM props WHERE value IS NULL AND (device_id, key) IN (
           SELECT device_id, key FROM (
             SELECT device_id, key, row_number() OVER (
               PARTITION BY device_id ORDER BY updated_at DESC) AS n
             FROM props WHERE value IS NULL)
           WHERE n > ?)`,
      ).run(MAX_TOMBSTONES).changes;
      const future = statement(this.#db, "UPDATE props SET updated_at = ? WHERE updated_at > ?")
        .run(now, now).changes;
      return Number(excess) + Number(future);
    });
  }
}
