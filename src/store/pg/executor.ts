/**
 * The Executor over an `npm:postgres` pool. Queries use `?` placeholders (numbered here, once
 * per SQL text) and run as named prepared statements, which the driver prepares once per
 * connection. Every wait is bounded: a statement or a whole transaction that has not finished
 * within `timeoutMs` rejects with StoreUnavailable, because the driver waits forever for a
 * server that accepts connections but never answers. A transaction that timed out is cancelled
 * and rolled back; only a COMMIT whose answer was lost leaves the outcome unknown, as with any
 * database client.
 */
// scripts/od and the units od installs run deno with --no-config: the pin is named here.
// deno-lint-ignore no-import-prefix
import type postgres from "npm:postgres@3.4.9";
import { StoreError } from "../db.ts";
import { type Executor, type Param } from "../queries/executor.ts";
import { mapPgError, Retryable, timeoutError } from "./errors.ts";
import type { Password } from "./url.ts";
import { observeCommit } from "../observe.ts";

/** The driver's pool as the store uses it. */
export type Sql = postgres.Sql<Record<string, unknown>>;
type TxSql = postgres.TransactionSql<Record<string, unknown>>;
/** The driver's options as the store builds them. */
export type DriverOptions = postgres.Options<Record<string, postgres.PostgresType>>;
interface Scope {
  open: boolean;
  /** Statements in flight, cancelled when the transaction times out. */
  pending: Set<{ cancel(): void }>;
}

/** What every executor of one store shares. */
export interface PgContext {
  pool: Sql;
  shown: string;
  user: string;
  password: Password;
  timeoutMs: number;
}

const RETRIES = 3; // runs of a transaction that lost a deadlock or serialization conflict
const numbered = new Map<string, string>();

/** `?` placeholders as `$1`, `$2`, …; our SQL never has `?` inside literals. */
function number(sql: string): string {
  let text = numbered.get(sql);
  if (text === undefined) {
    let n = 0;
    text = sql.replace(/\?/g, () => `$${++n}`);
    numbered.set(sql, text);
  }
  return text;
}

/** Rejects with `onTimeout()` if `p` has not settled within `ms`. */
export async function bounded<T>(p: Promise<T>, ms: number, onTimeout: () => unknown): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Executor on the pool, or (with `scope`) on one open transaction. */
export class PgExecutor implements Executor {
  readonly dialect = "postgres";
  readonly #ctx: PgContext;
  readonly #sql: Sql | TxSql;
  readonly #scope: Scope | null;

  constructor(ctx: PgContext, sql: Sql | TxSql = ctx.pool, scope: Scope | null = null) {
    this.#ctx = ctx;
    this.#sql = sql;
    this.#scope = scope;
  }

  /** This executor with another bound on waits (a long migration needs more than a request). */
  withTimeout(timeoutMs: number): PgExecutor {
    return new PgExecutor({ ...this.#ctx, timeoutMs }, this.#sql, this.#scope);
  }

  /** True inside tx(). */
  get inTransaction(): boolean {
    return this.#scope !== null;
  }

  #map(err: unknown): unknown {
    return mapPgError(err, this.#ctx);
  }

  async #query(sql: string, params: Param[]): Promise<postgres.Row[]> {
    const scope = this.#scope;
    if (scope && !scope.open) throw new StoreError("A transaction's scope was used after it ended");
    const values = params.map((p) => (p === undefined ? null : p)) as postgres.ParameterOrJSON<
      unknown
    >[];
    const query = this.#sql.unsafe(number(sql), values, { prepare: true });
    scope?.pending.add(query);
    try {
      return await bounded(query, this.#ctx.timeoutMs, () => {
        query.cancel();
        return timeoutError(this.#ctx.shown, this.#ctx.timeoutMs);
      });
    } catch (err) {
      throw this.#map(err);
    } finally {
      scope?.pending.delete(query);
    }
  }

  /** All rows of a query. */
  async all<T>(sql: string, params: Param[] = []): Promise<T[]> {
    return [...await this.#query(sql, params)] as T[];
  }

  /** The first row, or undefined. */
  async get<T>(sql: string, params: Param[] = []): Promise<T | undefined> {
    return (await this.#query(sql, params))[0] as T | undefined;
  }

  /** Runs a statement; the number of rows it changed. */
  async run(sql: string, params: Param[] = []): Promise<number> {
    const result = await this.#query(sql, params) as postgres.RowList<postgres.Row[]>;
    return result.count ?? 0;
  }

  /** Locks one row for the rest of the transaction. */
  async lockRow(table: "accounts" | "devices", id: number): Promise<void> {
    if (!this.#scope) throw new StoreError("lockRow() needs a transaction");
    await this.#query(`SELECT id FROM ${table} WHERE id = ? FOR NO KEY UPDATE`, [id]);
  }

  /** Runs `fn` in one transaction (or the open one), retrying lost deadlocks. */
  async tx<T>(fn: (e: Executor) => Promise<T>): Promise<T> {
    if (this.#scope) return await fn(this);
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#once(fn);
      } catch (err) {
        if (!(err instanceof Retryable) || attempt >= RETRIES) throw err;
      }
    }
  }

  async #once<T>(fn: (e: Executor) => Promise<T>): Promise<T> {
    const scope: Scope = { open: true, pending: new Set() };
    const started = performance.now();
    let expired = false;
    const run = this.#ctx.pool.begin(async (sql) => {
      const result = await fn(new PgExecutor(this.#ctx, sql, scope));
      // Past the deadline the caller has been told it failed: roll back instead of committing.
      if (expired) throw timeoutError(this.#ctx.shown, this.#ctx.timeoutMs);
      return result;
    }) as Promise<T>;
    try {
      const result = await bounded(run, this.#ctx.timeoutMs, () => {
        expired = true;
        for (const q of scope.pending) q.cancel();
        run.catch(() => {}); // its rejection was answered by the timeout
        return timeoutError(this.#ctx.shown, this.#ctx.timeoutMs);
      });
      observeCommit(started);
      return result;
    } catch (err) {
      throw this.#map(err);
    } finally {
      scope.open = false;
    }
  }
}
