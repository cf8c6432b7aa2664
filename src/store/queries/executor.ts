/**
 * What the dialect-neutral queries in this folder run on: a backend (src/store/sqlite,
 * src/store/pg) hands them an Executor, and they write SQL that both SQLite and PostgreSQL
 * accept, with `?` placeholders (the PostgreSQL executor numbers them). Where the dialects
 * differ (bulk updates, id lists, row locks) the query asks `e.dialect` or a helper here, so
 * every rule of the store is written once and behaves the same on both.
 */
import { StoreError } from "../db.ts";

/** A bound parameter; undefined is passed as NULL. */
export type Param = string | number | null | undefined | Uint8Array;

/** Runs SQL for the queries; one per store, and one per open transaction. */
export interface Executor {
  readonly dialect: "sqlite" | "postgres";
  /** True inside tx(): nested tx() calls join the open transaction. */
  readonly inTransaction: boolean;
  /** All rows of a query. */
  all<T>(sql: string, params?: Param[]): Promise<T[]>;
  /** The first row of a query, or undefined. */
  get<T>(sql: string, params?: Param[]): Promise<T | undefined>;
  /** Runs a statement; resolves to the number of rows it changed. */
  run(sql: string, params?: Param[]): Promise<number>;
  /** Runs `fn` in one transaction (or in the open one), committing when it resolves. */
  tx<T>(fn: (e: Executor) => Promise<T>): Promise<T>;
  /**
   * Locks one row until the transaction ends, so concurrent relays serialise on it
   * (PostgreSQL `FOR NO KEY UPDATE`; SQLite's IMMEDIATE transactions already hold the file's
   * write lock, so there it is a no-op). Only inside tx().
   */
  lockRow(table: "accounts" | "devices", id: number): Promise<void>;
}

/** A unique constraint hit by a concurrent writer; the operation may be retried once. */
export class UniqueViolation extends StoreError {
  override name = "UniqueViolation";
}

/**
 * SQL fragment for "one of these integer ids", bound as one text parameter (so a statement is
 * prepared once whatever the number of ids; the cast keeps the driver from re-encoding it).
 */
export function idSet(e: Executor, ids: readonly number[]): { sql: string; param: string } {
  for (const id of ids) {
    if (!Number.isSafeInteger(id)) throw new RangeError(`not an id: ${id}`);
  }
  return e.dialect === "postgres"
    ? { sql: "(SELECT unnest(CAST(? AS TEXT)::bigint[]))", param: `{${ids.join(",")}}` }
    : { sql: "(SELECT value FROM json_each(?))", param: JSON.stringify(ids) };
}

/**
 * Runs `op` at the top level and once more if a concurrent writer made it hit a unique
 * constraint: the second run sees the other writer's row and answers from it (idempotent
 * enrolment, "already exists" conflicts). Inside a transaction the error propagates, since
 * PostgreSQL aborts the whole transaction on it.
 */
export async function retryOnUnique<T>(e: Executor, op: () => Promise<T>): Promise<T> {
  if (e.inTransaction) return await op();
  try {
    return await op();
  } catch (err) {
    if (!(err instanceof UniqueViolation)) throw err;
    return await op();
  }
}
