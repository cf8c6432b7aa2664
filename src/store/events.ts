/** The event log: state changes, property changes, clones, renames, removals, per account. */
import type { DatabaseSync } from "node:sqlite";
import { statement, transaction } from "./db.ts";

/** One logged event. */
export interface EventRecord {
  id: number;
  accountId: number;
  device: string;
  type: string;
  data: Record<string, unknown>;
  at: number;
}

/** Which events to read. */
export interface EventQuery {
  accountId: number;
  /** Only events with a larger id. */
  afterId?: number;
  /** Only events at or after this time (ms). */
  since?: number;
  device?: string;
  types?: string[];
  limit?: number;
}

/** Queries on the event log. */
export class Events {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Appends an event and returns it with its id. */
  append(e: Omit<EventRecord, "id">): EventRecord {
    const { lastInsertRowid } = statement(
      this.#db,
      "INSERT INTO events (account_id, device, type, data, at) VALUES (?, ?, ?, ?, ?)",
    ).run(e.accountId, e.device, e.type, JSON.stringify(e.data), e.at);
    return { ...e, id: Number(lastInsertRowid) };
  }

  /** Appends events in one transaction and returns them with their ids, in order. */
  appendMany(events: Omit<EventRecord, "id">[]): EventRecord[] {
    if (events.length === 0) return [];
    return transaction(this.#db, () => events.map((e) => this.append(e)));
  }

  /** Events matching the query, oldest first. */
  query(q: EventQuery): EventRecord[] {
    const where = ["account_id = ?"];
    const params: (string | number)[] = [q.accountId];
    if (q.afterId !== undefined) {
      where.push("id > ?");
      params.push(q.afterId);
    }
    if (q.since !== undefined) {
      where.push("at >= ?");
      params.push(q.since);
    }
    if (q.device !== undefined) {
      where.push("device = ?");
      params.push(q.device);
    }
    if (q.types && q.types.length > 0) {
      where.push(`type IN (${q.types.map(() => "?").join(",")})`);
      params.push(...q.types);
    }
    const rows = statement(
      this.#db,
      `SELECT id, account_id, device, type, data, at FROM events WHERE ${where.join(" AND ")}
       ORDER BY id LIMIT ?`,
    ).all(...params, q.limit ?? 10_000) as {
      id: number;
      account_id: number;
      device: string;
      type: string;
      data: string;
      at: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      accountId: r.account_id,
      device: r.device,
      type: r.type,
      data: JSON.parse(r.data),
      at: r.at,
    }));
  }

  /** Deletes events older than `before` (retention). */
  prune(before: number): number {
    return Number(statement(this.#db, "DELETE FROM events WHERE at < ?").run(before).changes);
  }
}
