/** Device properties over an Executor (both dialects); the rule is in src/store/props_rule.ts. */
import {
  MAX_PROPS,
  MAX_TOMBSTONES,
  type PropChange,
  type PropValue,
} from "../../protocol/props.ts";
import { planApply, planApplyAll, type PropPlan } from "../props_rule.ts";
import type { PropStore } from "../types.ts";
import { type Executor, idSet } from "./executor.ts";

const ID_CHUNK = 5_000; // ids per statement when reading many devices' properties

/** PropStore on an Executor. */
export class PropQueries implements PropStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** All keys of a device, removals included. */
  load(rowid: number): Promise<Map<string, PropValue>> {
    return load(this.#e, rowid);
  }

  /** The present properties of a device. */
  async present(rowid: number): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [k, p] of await load(this.#e, rowid)) if (p.v !== null) out[k] = p.v;
    return out;
  }

  /** Present properties of several devices, by row id. */
  async ofDevices(rowids: readonly number[]): Promise<Map<number, Record<string, string>>> {
    const out = new Map<number, Record<string, string>>();
    for (let i = 0; i < rowids.length; i += ID_CHUNK) {
      const ids = idSet(this.#e, rowids.slice(i, i + ID_CHUNK));
      const rows = await this.#e.all<{ device_id: number; key: string; value: string }>(
        `SELECT device_id, key, value FROM props WHERE device_id IN ${ids.sql}
         AND value IS NOT NULL ORDER BY device_id, key`,
        [ids.param],
      );
      for (const r of rows) {
        let props = out.get(r.device_id);
        if (!props) out.set(r.device_id, props = {});
        props[r.key] = r.value;
      }
    }
    return out;
  }

  /** Applies what fits, atomically. */
  async apply(rowid: number, changes: PropChange[], limit = MAX_PROPS) {
    const plan = await this.#e.tx(async (e) => {
      await e.lockRow("devices", rowid); // concurrent relays apply one after the other
      return await write(e, rowid, planApply(await load(e, rowid), changes, limit));
    });
    return { applied: plan.applied, rejected: plan.rejected };
  }

  /** Applies all changes or none. */
  async applyAll(rowid: number, changes: PropChange[], limit = MAX_PROPS) {
    const plan = await this.#e.tx(async (e) => {
      await e.lockRow("devices", rowid);
      return await write(e, rowid, planApplyAll(await load(e, rowid), changes, limit));
    });
    return { applied: plan.applied, rejected: plan.refusal };
  }

  /** Forgets removals older than `before`. */
  pruneTombstones(before: number): Promise<number> {
    return this.#e.run("DELETE FROM props WHERE value IS NULL AND updated_at < ?", [before]);
  }

  /** Forgets tombstones beyond the bound per device and brings future times back to `now`. */
  repair(now = Date.now()): Promise<number> {
    return this.#e.tx(async (e) => {
      // A removal flood before the bound once left millions of rows; a far-future time froze
      // its key. Both are repaired here, once, when a relay starts.
      const excess = await e.run(
        `DELETE FROM props WHERE value IS NULL AND (device_id, key) IN (
           SELECT device_id, key FROM (
             SELECT device_id, key, row_number() OVER (
               PARTITION BY device_id ORDER BY updated_at DESC) AS n
             FROM props WHERE value IS NULL) AS ranked
           WHERE n > ?)`,
        [MAX_TOMBSTONES],
      );
      const future = await e.run("UPDATE props SET updated_at = ? WHERE updated_at > ?", [
        now,
        now,
      ]);
      return excess + future;
    });
  }
}

async function load(e: Executor, rowid: number): Promise<Map<string, PropValue>> {
  const rows = await e.all<{ key: string; value: string | null; updated_at: number }>(
    "SELECT key, value, updated_at FROM props WHERE device_id = ? ORDER BY key",
    [rowid],
  );
  return new Map(rows.map((r) => [r.key, { v: r.value, at: r.updated_at }]));
}

async function write<P extends PropPlan>(e: Executor, rowid: number, plan: P): Promise<P> {
  const sql = `INSERT INTO props (device_id, key, value, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value,
    updated_at = excluded.updated_at`;
  // Issued together: PostgreSQL pipelines them on the transaction's connection.
  await Promise.all([
    ...plan.writes.map((c) => e.run(sql, [rowid, c.k, c.v, c.at])),
    ...plan.deletes.map((k) =>
      e.run("DELETE FROM props WHERE device_id = ? AND key = ?", [rowid, k])
    ),
  ]);
  return plan;
}
