/** The audit log over an Executor (both dialects); the relay writes it in batches. */
import type { AuditEntry, AuditQuery, AuditRow, AuditStore } from "../types.ts";
import type { Executor, Param } from "./executor.ts";

const DEFAULT_LIMIT = 100_000; // as the synchronous store
const COLUMNS = `at, account_id, owner_id, key_id, ip, action, device, service, result, reason,
  duration_ms, bytes_up, bytes_down, count`;

/** The columns of an entry in COLUMNS order. */
export function auditParams(e: AuditEntry): Param[] {
  return [
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
  ];
}

/** AuditStore on an Executor. */
export class AuditQueries implements AuditStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** Appends rows in one transaction. */
  async append(entries: readonly AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const sql = `INSERT INTO audit (${COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`;
    // Issued together: PostgreSQL pipelines them on the transaction's connection.
    await this.#e.tx((e) => Promise.all(entries.map((entry) => e.run(sql, auditParams(entry)))));
  }

  /** Rows matching the query, oldest first (or newest first). */
  async query(q: AuditQuery): Promise<AuditRow[]> {
    // No row names a device with a NUL (PostgreSQL's text cannot even be asked for one).
    if (q.device?.includes("\0")) return [];
    const where: string[] = [];
    const params: Param[] = [];
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
    const sql = `SELECT a.id, a.${COLUMNS.replace(/,\s*/g, ", a.")}, x.name AS account,
      o.name AS owner FROM audit a
      LEFT JOIN accounts x ON x.id = a.account_id LEFT JOIN accounts o ON o.id = a.owner_id
      ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY a.id${q.newest ? " DESC" : ""} LIMIT ?`;
    const rows = await this.#e.all<Record<string, unknown>>(sql, [
      ...params,
      q.limit ?? DEFAULT_LIMIT,
    ]);
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

  /** Deletes rows older than `before`. */
  prune(before: number): Promise<number> {
    return this.#e.run("DELETE FROM audit WHERE at < ?", [before]);
  }
}
