/**
 * The audit log: every tunnel attempt (allowed or refused) and every refused or privileged API
 * request, with who, from where, to what, the outcome, and for tunnels the duration and bytes.
 * Rows are written in batches (one transaction, so one fsync, per second) by the relay's audit
 * writer; a flood of refusals costs memory for one second, not a disk write each.
 */
import type { DatabaseSync } from "node:sqlite";
import { statement, transaction } from "./db.ts";

/** One audit row as written. */
export interface AuditEntry {
  at: number;
  accountId: number | null;
  ownerId: number | null;
  keyId: string | null;
  ip: string;
  action: string;
  device: string | null;
  service: string | null;
  result: string;
  reason: string;
  durationMs: number | null;
  bytesUp: number | null;
  bytesDown: number | null;
  /** Identical refusals merged into this row (throttled floods). */
  count: number;
}

/** An audit row as read, with account names. */
export interface AuditRow extends AuditEntry {
  id: number;
  account: string | null;
  owner: string | null;
}

/** Which rows to read. */
export interface AuditQuery {
  /** Rows where this account acted or owns the device; undefined for all (admin). */
  accountId?: number;
  device?: string;
  since?: number;
  limit?: number;
  /** Only rows with a larger id (paging oldest first). */
  afterId?: number;
  /** Only rows with a smaller id (paging newest first). */
  beforeId?: number;
  /** Newest first (the dashboard's order) instead of oldest first. */
  newest?: boolean;
}

/** Queries on the audit log. */
export class Audit {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Appends rows in one transaction. */
  append(entries: AuditEntry[]): void {
    if (entries.length === 0) return;
    transaction(this.#db, () => {
      const insert = statement(
        this.#db,
        `INSERT INTO audit (at, account_id, owner_id, key_id, ip, action, device, service, result,
         reason, duration_ms, bytes_up, bytes_down, count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
      );
      for (const e of entries) {
        insert.run(
          e.at,
          e.accountId,
          e.ownerId,
          e.keyId,
          e.ip,
          e.action,
          e.device,
          e.service,
          e.result,
          e.reason,
          e.durationMs,
          e.bytesUp,
          e.bytesDown,
          e.count,
        );
      }
    });
  }

  /** Rows matching the query, oldest first (or newest first). */
  query(q: AuditQuery): AuditRow[] {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.accountId !== undefined) {
      where.push("(a.account_id = ? OR a.owner_id = ?)");
      params.push(q.accountId, q.accountId);
    }
    if (q.device !== undefined) {
      where.push("a.device = ?");
      params.push(q.device);
    }
    if (q.since !== undefined) {
      where.push("a.at >= ?");
      params.push(q.since);
    }
    if (q.afterId !== undefined) {
      where.push("a.id > ?");
      params.push(q.afterId);
    }
    if (q.beforeId !== undefined) {
      where.push("a.id < ?");
      params.push(q.beforeId);
    }
    const sql = `SELECT a.*, x.name AS account, o.name AS owner FROM audit a
      LEFT JOIN accounts x ON x.id = a.account_id LEFT JOIN accounts o ON o.id = a.owner_id
      ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY a.id${q.newest ? " DESC" : ""} LIMIT ?`;
    const rows = statement(this.#db, sql).all(...params, q.limit ?? 100_000) as Record<
      string,
      unknown
    >[];
    return rows.map((r) => ({
      id: r.id as number,
      at: r.at as number,
      accountId: r.account_id as number | null,
      ownerId: r.owner_id as number | null,
      account: r.account as string | null,
      owner: r.owner as string | null,
      keyId: r.key_id as string | null,
      ip: r.ip as string,
      action: r.action as string,
      device: r.device as string | null,
      service: r.service as string | null,
      result: r.result as string,
      reason: r.reason as string,
      durationMs: r.duration_ms as number | null,
      bytesUp: r.bytes_up as number | null,
      bytesDown: r.bytes_down as number | null,
      count: r.count as number,
    }));
  }

  /** Deletes rows older than `before` (retention). */
  prune(before: number): number {
    return Number(statement(this.#db, "DELETE FROM audit WHERE at < ?").run(before).changes);
  }
}
