/** Device properties, last write wins per key (see src/protocol/props.ts). */
import type { DatabaseSync } from "node:sqlite";
import { MAX_PROPS, mergeChanges, type PropChange, type PropValue } from "../protocol/props.ts";
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
  apply(deviceRowid: number, changes: PropChange[], limit = MAX_PROPS) {
    return transaction(this.#db, () => {
      const current = this.load(deviceRowid);
      const result = mergeChanges(current, changes, limit);
      const upsert = statement(
        this.#db,
        `INSERT INTO props (device_id, key, value, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value,
         updated_at = excluded.updated_at`,
      );
      for (const c of result.applied) upsert.run(deviceRowid, c.k, c.v, c.at);
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
}
