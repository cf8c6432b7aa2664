/**
 * Opens the relay's store: `openStore({ dataDir })` for the SQLite file in a data directory
 * (the embedded default), `openStore("postgres://USER@HOST/DB")` for PostgreSQL. Both reject
 * with a StoreError whose message is one sentence for the user (unreachable database, refused
 * password, schema newer than this od, no store in the directory).
 */
import { StoreError } from "./db.ts";
import type { Store } from "./types.ts";
import { SqliteStore } from "./sqlite/store.ts";
import { isPgUrl } from "./pg/url.ts";

/** Where the store is: a PostgreSQL URL, or a data directory with the SQLite file. */
export type StoreTarget = string | { dataDir: string };

/** Options for either backend. */
export interface OpenOptions {
  /** SQLite: create the directory and file if missing (default true). */
  create?: boolean;
  /** PostgreSQL: a file whose first line is the password (`--store-password-file`). */
  passwordFile?: string;
  /** PostgreSQL: longest wait for any statement or connection, in ms (default 10 s). */
  timeoutMs?: number;
  /** PostgreSQL: connections in the pool (default 10). */
  poolSize?: number;
  /** The relays' heartbeat interval in ms (default HEARTBEAT_MS). */
  heartbeatMs?: number;
}

/** Opens and migrates the store at `target`. */
export async function openStore(target: StoreTarget, options: OpenOptions = {}): Promise<Store> {
  if (typeof target !== "string") {
    return SqliteStore.open(target.dataDir, options);
  }
  if (!isPgUrl(target)) {
    throw new StoreError(
      "Store must be a postgres://USER@HOST/DB URL (the SQLite store is chosen with --data DIR)",
    );
  }
  // Loaded only here: a relay on SQLite never loads the PostgreSQL driver.
  const { PgStore } = await import("./pg/store.ts");
  return await PgStore.open(target, options);
}
