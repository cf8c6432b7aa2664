/**
 * Opens the relay's SQLite store and brings its schema up to date (src/store/sqlite/store.ts
 * puts the async Store on top). Nothing outside src/store touches SQL. The store is one file, `od.db`, in the data directory; WAL mode lets `od admin`
 * and a running relay use it at once, and synchronous=FULL makes every commit durable, so the
 * store survives kill -9 and power loss alike.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { MIGRATIONS } from "./schema.ts";

/** The store file's name inside the data directory. */
export const DB_FILE = "od.db";

/** A store that cannot be opened or migrated; the message says which and why. */
export class StoreError extends Error {
  override name = "StoreError";
}

/** Opens (creating if needed) the database in `dataDir` and runs pending migrations. */
export function openDatabase(dataDir: string, create = true): DatabaseSync {
  if (!create && !exists(`${dataDir}/${DB_FILE}`)) {
    throw new StoreError(`No relay store in ${dataDir} (od serve --data ${dataDir} creates one)`);
  }
  try {
    Deno.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StoreError(`Cannot create data directory ${dataDir}: ${message(err)}`, {
      cause: err,
    });
  }
  const path = `${dataDir}/${DB_FILE}`;
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
  } catch (err) {
    throw new StoreError(`Cannot open store ${path}: ${message(err)}`, { cause: err });
  }
  try {
    Deno.chmodSync(path, 0o600); // it holds key hashes and device metadata
    migrate(db);
  } catch (err) {
    db.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError(`Cannot prepare store ${path}: ${message(err)}`, { cause: err });
  }
  return db;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function migrate(db: DatabaseSync): void {
  const { user_version: current } = db.prepare("PRAGMA user_version").get() as {
    user_version: number;
  };
  if (current > MIGRATIONS.length) {
    throw new StoreError(
      `Store schema version ${current} is newer than this od understands (${MIGRATIONS.length}); ` +
        `upgrade od`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(MIGRATIONS[version]);
      db.exec(`PRAGMA user_version = ${version + 1}`);
      db.exec("COMMIT");
    } catch (err) {
      db.exec("ROLLBACK");
      throw new StoreError(`Migration to schema version ${version + 1} failed: ${message(err)}`, {
        cause: err,
      });
    }
  }
}

/** The result of `PRAGMA integrity_check`: "ok" when the file is sound. */
export function integrityCheck(db: DatabaseSync): string {
  const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
  return rows.map((r) => r.integrity_check).join("; ");
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const statements = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

/**
 * The prepared statement for `sql`, prepared once per database. Preparing on every query costs
 * native memory that V8 does not see until it collects the statement, which under enrolment or
 * reconnect churn grows the relay by megabytes.
 */
export function statement(db: DatabaseSync, sql: string): StatementSync {
  let cache = statements.get(db);
  if (!cache) statements.set(db, cache = new Map());
  let stmt = cache.get(sql);
  if (!stmt) cache.set(sql, stmt = db.prepare(sql));
  return stmt;
}
