/**
 * The Store on SQLite: the relay's file `DIR/od.db`, opened and migrated by src/store/db.ts
 * (WAL, synchronous=FULL, migrations of src/store/schema.ts). WAL lets a running relay and
 * `od admin` use the file at once; the change feed tells the relay what `od admin` wrote.
 */
import type { DatabaseSync } from "node:sqlite";
import { DB_FILE, integrityCheck, openDatabase } from "../db.ts";
import { HEARTBEAT_MS, type Store, type StoreChange, type Unsubscribe } from "../types.ts";
import { ScopedStore } from "../queries/scope.ts";
import type { Executor } from "../queries/executor.ts";
import { type Gate, gateFor, SqliteExecutor } from "./executor.ts";
import { SqliteFeed } from "./feed.ts";

/** How to open a SQLite store. */
export interface SqliteOptions {
  /** Create the directory and file if missing (default true). */
  create?: boolean;
  /** The relays' heartbeat interval, for `on:state` and reclaiming (default HEARTBEAT_MS). */
  heartbeatMs?: number;
}

/** A Store on the SQLite file in a data directory. */
export class SqliteStore extends ScopedStore implements Store {
  readonly kind = "sqlite";
  readonly location: string;
  readonly #db: DatabaseSync;
  readonly #gate: Gate;
  readonly #executor: SqliteExecutor;
  readonly #feed: SqliteFeed;

  private constructor(db: DatabaseSync, dataDir: string, heartbeatMs: number) {
    const gate = gateFor(`${dataDir}/${DB_FILE}`);
    const executor = new SqliteExecutor(db, gate, `${dataDir}/${DB_FILE}`);
    super(executor, heartbeatMs);
    this.#db = db;
    this.location = dataDir;
    this.#gate = gate;
    this.#executor = executor;
    this.#feed = new SqliteFeed(db, gate);
  }

  /** Opens (and with `create`, creates) the store in `dataDir`, migrating it; StoreError if not. */
  static open(dataDir: string, options: SqliteOptions = {}): SqliteStore {
    const db = openDatabase(dataDir, options.create ?? true);
    return new SqliteStore(db, dataDir, options.heartbeatMs ?? HEARTBEAT_MS);
  }

  /** Runs `fn` on a consistent read snapshot (the migration helper reads through it). */
  snapshot<T>(fn: (e: Executor) => Promise<T>): Promise<T> {
    return this.#executor.snapshot(fn);
  }

  /** Subscribes to the change log. */
  async subscribe(fn: (change: StoreChange) => void): Promise<Unsubscribe> {
    while (this.#gate.held) await this.#gate.idle();
    return this.#feed.subscribe(fn);
  }

  /** The result of `PRAGMA integrity_check`. */
  async integrity(): Promise<string> {
    while (this.#gate.held) await this.#gate.idle();
    return integrityCheck(this.#db);
  }

  /** Stops the feed and closes the file once no transaction is open. */
  async close(): Promise<void> {
    this.#feed.stop();
    const release = await this.#gate.acquire();
    try {
      if (this.#db.isOpen) this.#db.close();
    } finally {
      release();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
