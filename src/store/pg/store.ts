/**
 * The async Store on PostgreSQL (`npm:postgres`), for several relays sharing one database.
 * Opening connects, then brings the schema up to date in one transaction under an advisory
 * lock, so relays starting together migrate once and the others wait and find it done. The
 * driver reconnects by itself after the server restarts; while it is unreachable every call
 * rejects with StoreUnavailable within `timeoutMs` instead of waiting.
 */
// scripts/od and the units od installs run deno with --no-config: the pin is named here.
// deno-lint-ignore no-import-prefix
import postgres from "npm:postgres@3.4.9";
import { StoreError } from "../db.ts";
import { HEARTBEAT_MS, type Store, type StoreChange, type Unsubscribe } from "../types.ts";
import { ScopedStore } from "../queries/scope.ts";
import type { Executor } from "../queries/executor.ts";
import { PG_MIGRATIONS } from "./schema.ts";
import { bounded, type DriverOptions, type PgContext, PgExecutor, type Sql } from "./executor.ts";
import { mapPgError, timeoutError } from "./errors.ts";
import { PgFeed } from "./feed.ts";
import { parsePgUrl, type Password, type PgTarget, resolvePassword } from "./url.ts";

/** How to open a PostgreSQL store. */
export interface PgOptions {
  /** A file whose first line is the password (`--store-password-file`). */
  passwordFile?: string;
  /** Longest wait for any statement, transaction or connection (default 10 s). */
  timeoutMs?: number;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** The relays' heartbeat interval, for `on:state` and reclaiming (default HEARTBEAT_MS). */
  heartbeatMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000; // longer than any healthy statement, short enough for a 503
const CONNECT_TIMEOUT_S = 5; // the driver's own bound on a TCP connect
const SERVER_TIMEOUT_MS = 30_000; // server-side backstop: no statement or idle transaction holds locks longer
/** pg_advisory_xact_lock key serialising migrations: "od" in ASCII, then the schema's number 1. */
const MIGRATION_LOCK = 0x6f64_0001;

function driverOptions(t: PgTarget, password: Password, poolSize: number): DriverOptions {
  return {
    host: t.host ?? undefined,
    path: t.socketDir ? `${t.socketDir}/.s.PGSQL.${t.port}` : undefined,
    port: t.port,
    database: t.database,
    username: t.user,
    // A function, so the password is not a property of the driver's options object.
    pass: () => password.value ?? "",
    ssl: t.ssl,
    max: poolSize,
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff: (retries: number) => Math.min(0.1 * 2 ** retries, 2), // seconds between reconnects
    onnotice: () => {}, // "already exists, skipping" and such: not for the relay's log
    fetch_types: false, // no array or custom types are read
    types: {
      // BIGINT ids and millisecond times fit a double exactly
      bigint: { to: 20, from: [20], parse: (x: string) => Number(x), serialize: String },
    },
    connection: {
      application_name: "od",
      statement_timeout: SERVER_TIMEOUT_MS,
      idle_in_transaction_session_timeout: SERVER_TIMEOUT_MS,
    },
  } as unknown as DriverOptions;
}

async function migrate(sql: Sql, shown: string): Promise<void> {
  await sql.begin(async (t) => {
    await t.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await t.unsafe("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const rows = await t.unsafe("SELECT version FROM schema_version");
    if (rows.length === 0) await t.unsafe("INSERT INTO schema_version (version) VALUES (0)");
    const current = rows.length === 0 ? 0 : Number(rows[0].version);
    if (current > PG_MIGRATIONS.length) {
      throw new StoreError(
        `Store ${shown} has schema version ${current}, newer than this od understands ` +
          `(${PG_MIGRATIONS.length}); upgrade od`,
      );
    }
    for (let v = current; v < PG_MIGRATIONS.length; v++) {
      await t.unsafe(PG_MIGRATIONS[v]).simple();
    }
    await t.unsafe(`UPDATE schema_version SET version = ${PG_MIGRATIONS.length}`);
  });
}

/** A Store on a PostgreSQL database. */
export class PgStore extends ScopedStore implements Store {
  readonly kind = "postgres";
  readonly location: string;
  readonly #ctx: PgContext;
  readonly #executor: PgExecutor;
  readonly #feed: PgFeed;

  private constructor(ctx: PgContext, feed: PgFeed, heartbeatMs: number) {
    const executor = new PgExecutor(ctx);
    super(executor, heartbeatMs);
    this.#executor = executor;
    this.#ctx = ctx;
    this.location = ctx.shown;
    this.#feed = feed;
  }

  /** Connects and migrates; StoreError with one sentence (never the password) if it cannot. */
  static async open(url: string, options: PgOptions = {}): Promise<PgStore> {
    const target = parsePgUrl(url);
    const password = await resolvePassword(target, options.passwordFile);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const driver = driverOptions(target, password, options.poolSize ?? 10);
    const pool = postgres(driver) as unknown as Sql;
    const ctx: PgContext = { pool, shown: target.shown, user: target.user, password, timeoutMs };
    const cannot = (err: unknown) => {
      const mapped = mapPgError(err, ctx);
      const text = mapped instanceof Error ? mapped.message : String(mapped);
      return new StoreError(`Cannot open store ${target.shown}: ${text}`, { cause: err });
    };
    try {
      await bounded(
        migrate(pool, target.shown),
        timeoutMs,
        () => timeoutError(target.shown, timeoutMs),
      );
    } catch (err) {
      await pool.end({ timeout: 0 }).catch(() => {});
      if (err instanceof StoreError && /newer than this od/.test(err.message)) throw err;
      throw cannot(err);
    }
    const feed = new PgFeed(driver, {
      shown: target.shown,
      timeoutMs,
      mapError: (err) => mapPgError(err, ctx),
    });
    return new PgStore(ctx, feed, options.heartbeatMs ?? HEARTBEAT_MS);
  }

  /** The executor the migration helper writes through, with its own bound on waits. */
  executor(timeoutMs: number): Executor {
    return this.#executor.withTimeout(timeoutMs);
  }

  /** Subscribes to the NOTIFY feed; resolves once it is listening. */
  subscribe(fn: (change: StoreChange) => void): Promise<Unsubscribe> {
    return this.#feed.subscribe(fn);
  }

  /** "ok" when the database answers and its schema is the one this od writes. */
  async integrity(): Promise<string> {
    const row = await this.#executor.get<{ version: number }>(
      "SELECT version FROM schema_version",
    );
    const version = row?.version ?? 0;
    return version === PG_MIGRATIONS.length
      ? "ok"
      : `schema version ${version}, expected ${PG_MIGRATIONS.length}`;
  }

  /** Stops the feed and closes the pool's connections. */
  async close(): Promise<void> {
    await this.#feed.stop();
    await this.#ctx.pool.end({ timeout: 0 });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
