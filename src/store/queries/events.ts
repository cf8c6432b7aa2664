/** The event log over an Executor (both dialects). */
import type { EventQuery, EventRecord, EventStore } from "../types.ts";
import type { Executor, Param } from "./executor.ts";

const DEFAULT_LIMIT = 10_000; // as the synchronous store: one page of `od events --since`

interface EventRow {
  id: number;
  account_id: number;
  device: string;
  type: string;
  data: string;
  at: number;
}

/** EventStore on an Executor. */
export class EventQueries implements EventStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** Appends an event and returns it with its id. */
  async append(e: Omit<EventRecord, "id">): Promise<EventRecord> {
    const row = await this.#e.get<{ id: number }>(
      "INSERT INTO events (account_id, device, type, data, at) VALUES (?, ?, ?, ?, ?) RETURNING id",
      [e.accountId, e.device, e.type, JSON.stringify(e.data), e.at],
    );
    return { ...e, id: row!.id };
  }

  /** Events matching the query, oldest first. */
  async query(q: EventQuery): Promise<EventRecord[]> {
    const where = ["account_id = ?"];
    const params: Param[] = [q.accountId];
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
    const rows = await this.#e.all<EventRow>(
      `SELECT id, account_id, device, type, data, at FROM events WHERE ${where.join(" AND ")}
       ORDER BY id LIMIT ?`,
      [...params, q.limit ?? DEFAULT_LIMIT],
    );
    return rows.map((r) => ({
      id: r.id,
      accountId: r.account_id,
      device: r.device,
      type: r.type,
      data: JSON.parse(r.data),
      at: r.at,
    }));
  }

  /** Deletes events older than `before`. */
  prune(before: number): Promise<number> {
    return this.#e.run("DELETE FROM events WHERE at < ?", [before]);
  }
}
