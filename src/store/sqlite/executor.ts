/**
 * The Executor over one node:sqlite connection. SQLite calls are synchronous, so a transaction
 * that awaits between statements would let any other caller's statement run inside it: a gate
 * (one per database file in this process) admits one transaction at a time, and statements
 * outside a transaction wait while one is open.
 * Statements are prepared once per connection (src/store/db.ts `statement`).
 */
import type { DatabaseSync, SQLInputValue } from "node:sqlite";
import { statement, StoreError } from "../db.ts";
import { StoreUnavailable } from "../types.ts";
import { type Executor, type Param, UniqueViolation } from "../queries/executor.ts";
import { observeCommit } from "../observe.ts";

/** Admits one transaction at a time, first come first served. */
export class Gate {
  #held = false;
  #waiters: (() => void)[] = [];

  /** True while a transaction is open. */
  get held(): boolean {
    return this.#held;
  }

  /** Waits for the gate, takes it, and resolves to the function that gives it back. */
  async acquire(): Promise<() => void> {
    while (this.#held) await new Promise<void>((r) => this.#waiters.push(r));
    this.#held = true;
    return () => {
      this.#held = false;
      this.#waiters.splice(0).forEach((w) => w());
    };
  }

  /** Resolves when no transaction is open (check `held` again synchronously before use). */
  async idle(): Promise<void> {
    while (this.#held) await new Promise<void>((r) => this.#waiters.push(r));
  }
}

const gates = new Map<string, Gate>();

/**
 * The gate of a database file, shared by every connection to it in this process: SQLite's
 * lock waits block the thread, so a second connection waiting for a first one's open
 * transaction in the same process would wait for a transaction that cannot go on.
 */
export function gateFor(path: string): Gate {
  let key = path;
  try {
    key = Deno.realPathSync(path);
  } catch {
    // not there yet: the path as given
  }
  let gate = gates.get(key);
  if (!gate) gates.set(key, gate = new Gate());
  return gate;
}

function bind(params: Param[]): SQLInputValue[] {
  return params.map((p) => (p === undefined ? null : p));
}

/** Turns SQLite's errors into the store's: unique violations and a busy file. */
function mapError(err: unknown, where: string): unknown {
  const text = err instanceof Error ? err.message : String(err);
  if (/UNIQUE constraint failed/.test(text)) return new UniqueViolation(text, { cause: err });
  if (/database is locked|SQLITE_BUSY/i.test(text)) {
    return new StoreUnavailable(`Store ${where} is locked by another process: ${text}`, {
      cause: err,
    });
  }
  return err;
}

/** Executor on a SQLite connection; `scope` is set for the executor of an open transaction. */
export class SqliteExecutor implements Executor {
  readonly dialect = "sqlite";
  readonly #db: DatabaseSync;
  readonly #gate: Gate;
  readonly #where: string;
  readonly #scope: { open: boolean } | null;

  constructor(db: DatabaseSync, gate: Gate, where: string, scope: { open: boolean } | null = null) {
    this.#db = db;
    this.#gate = gate;
    this.#where = where;
    this.#scope = scope;
  }

  /** True inside tx(). */
  get inTransaction(): boolean {
    return this.#scope !== null;
  }

  async #ready(): Promise<void> {
    if (this.#scope) {
      if (!this.#scope.open) throw new StoreError("A transaction's scope was used after it ended");
      return;
    }
    while (this.#gate.held) await this.#gate.idle();
  }

  #call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw mapError(err, this.#where);
    }
  }

  /** All rows of a query. */
  async all<T>(sql: string, params: Param[] = []): Promise<T[]> {
    await this.#ready();
    return this.#call(() => statement(this.#db, sql).all(...bind(params)) as T[]);
  }

  /** The first row, or undefined. */
  async get<T>(sql: string, params: Param[] = []): Promise<T | undefined> {
    await this.#ready();
    return this.#call(() => statement(this.#db, sql).get(...bind(params)) as T | undefined);
  }

  /** Runs a statement; the number of rows it changed. */
  async run(sql: string, params: Param[] = []): Promise<number> {
    await this.#ready();
    return this.#call(() => Number(statement(this.#db, sql).run(...bind(params)).changes));
  }

  /** No-op: an IMMEDIATE transaction already holds the file's only write lock. */
  async lockRow(): Promise<void> {
    if (!this.#scope) throw new StoreError("lockRow() needs a transaction");
    await this.#ready();
  }

  /**
   * Runs `fn` in a read transaction: a consistent snapshot of the file that, in WAL mode, does
   * not block other processes' writes (the migration helper reads through it).
   */
  async snapshot<T>(fn: (e: Executor) => Promise<T>): Promise<T> {
    if (this.#scope) throw new StoreError("snapshot() cannot run inside a transaction");
    const release = await this.#gate.acquire();
    const scope = { open: true };
    try {
      this.#call(() => this.#db.exec("BEGIN DEFERRED"));
      try {
        return await fn(new SqliteExecutor(this.#db, this.#gate, this.#where, scope));
      } finally {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      }
    } finally {
      scope.open = false;
      release();
    }
  }

  /** Runs `fn` in one IMMEDIATE transaction, or in the open one. */
  async tx<T>(fn: (e: Executor) => Promise<T>): Promise<T> {
    if (this.#scope) return await fn(this);
    const release = await this.#gate.acquire();
    const scope = { open: true };
    const started = performance.now();
    try {
      this.#call(() => this.#db.exec("BEGIN IMMEDIATE"));
      try {
        const result = await fn(new SqliteExecutor(this.#db, this.#gate, this.#where, scope));
        this.#call(() => this.#db.exec("COMMIT"));
        observeCommit(started);
        return result;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw err;
      }
    } finally {
      scope.open = false;
      release();
    }
  }
}
