/**
 * Which store the end-to-end tests' relays use. By default each relay keeps the SQLite file in
 * its data directory. With `OD_TEST_STORE=postgres` (set by scripts/with_postgres.ts, which
 * starts one PostgreSQL for the whole run and names it in OD_TEST_PG_*), every data directory
 * a test gives a relay stands for a fresh database on that server instead: `startRelay(dir)`
 * runs `od serve --store postgres://…/DB`, and `od admin --data dir …` run through the harness
 * becomes `od admin --store postgres://…/DB …`, so the same tests run unchanged on both stores.
 *
 * Only a data directory given to `startRelay` maps to a database; any other `--data` stays
 * SQLite, so tests of a missing or broken SQLite store, and tests that start a relay their own
 * way (under strace, qemu or in a network namespace), keep meaning what they say.
 */

import { openStore } from "../src/store/open.ts";
import type { Store } from "../src/store/types.ts";

/** True when the tests' relays run on PostgreSQL. */
export const PG_TEST = Deno.env.get("OD_TEST_STORE") === "postgres";

interface Server {
  host: string;
  port: number;
  user: string;
  password: string;
}

function server(): Server {
  const env = (name: string) => {
    const v = Deno.env.get(name);
    if (!v) {
      throw new Error(`OD_TEST_STORE=postgres needs ${name} (run under scripts/with_postgres.ts)`);
    }
    return v;
  };
  return {
    host: env("OD_TEST_PG_HOST"),
    port: Number(env("OD_TEST_PG_PORT")),
    user: env("OD_TEST_PG_USER"),
    password: env("OD_TEST_PG_PASSWORD"),
  };
}

const stores = new Map<string, string>(); // data directory → store URL
const pending = new Map<string, Promise<string>>();

/** The environment od processes need for the test store (the PostgreSQL password). */
export function storeEnv(): Record<string, string> {
  return PG_TEST ? { PGPASSWORD: server().password } : {};
}

async function psql(pg: Server, database: string, sql: string): Promise<string> {
  const out = await new Deno.Command("psql", {
    args: ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", pg.host, "-p", String(pg.port)]
      .concat(["-U", pg.user, "-d", database, "-c", sql]),
    env: { PGPASSWORD: pg.password },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`psql: ${dec.decode(out.stderr).trim()}`);
  return dec.decode(out.stdout);
}

/**
 * The store URL a data directory stands for, creating its database the first time; null when
 * the tests run on SQLite.
 */
export function storeFor(dataDir: string): Promise<string | null> {
  if (!PG_TEST) return Promise.resolve(null);
  const known = stores.get(dataDir);
  if (known) return Promise.resolve(known);
  let creating = pending.get(dataDir);
  if (!creating) {
    const pg = server();
    const name = `od_t_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    creating = psql(pg, "postgres", `CREATE DATABASE ${name}`).then(() => {
      const url = `postgres://${pg.user}@${pg.host}:${pg.port}/${name}`;
      stores.set(dataDir, url);
      return url;
    });
    pending.set(dataDir, creating);
  }
  return creating;
}

/**
 * `args` for an od process with a data directory that stands for a database replaced by
 * `--store URL` (`serve` and `admin` only); other arguments unchanged.
 */
export function withTestStore(args: string[]): string[] {
  if (!PG_TEST || (args[0] !== "serve" && args[0] !== "admin")) return args;
  const at = args.indexOf("--data");
  const url = at >= 0 ? stores.get(args[at + 1]) : undefined;
  if (url === undefined) return args;
  return [...args.slice(0, at), "--store", url, ...args.slice(at + 2)];
}

/** Like withTestStore, creating the database for `od admin --data DIR account add`. */
export async function withTestStoreCreating(args: string[]): Promise<string[]> {
  const at = args.indexOf("--data");
  if (
    PG_TEST && args[0] === "admin" && at >= 0 && args.includes("add") && args.includes("account")
  ) {
    await storeFor(args[at + 1]);
  }
  return withTestStore(args);
}

/** One number a query on a relay's store answers (SQL both SQLite and PostgreSQL accept). */
export async function storeNumber(dataDir: string, sql: string): Promise<number> {
  const url = stores.get(dataDir);
  if (url) {
    return Number((await psql(server(), new URL(url).pathname.slice(1), sql)).trim());
  }
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(`${dataDir}/od.db`, { readOnly: true });
  try {
    return Number(Object.values(db.prepare(sql).get() as Record<string, unknown>)[0]);
  } finally {
    db.close();
  }
}

/** "ok" when the relay's store is sound (SQLite's integrity check; PostgreSQL's amcheck-free read). */
export async function storeIntegrity(dataDir: string): Promise<string> {
  const url = stores.get(dataDir);
  if (url) {
    // Every table answers a full scan; the server itself guarantees what SQLite's check proves.
    const tables = ["accounts", "keys", "devices", "props", "shares", "events", "audit"];
    for (const t of tables) {
      await psql(server(), new URL(url).pathname.slice(1), `SELECT count(*) FROM ${t}`);
    }
    return "ok";
  }
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(`${dataDir}/od.db`, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join("; ");
  } finally {
    db.close();
  }
}

/**
 * Opens, in the test process itself, the store a data directory stands for (creating its
 * database the first time), so a test can fill it before a relay starts on it.
 */
export async function openTestStore(dataDir: string): Promise<Store> {
  const url = await storeFor(dataDir);
  if (url === null) return await openStore({ dataDir });
  const withPassword = new URL(url);
  withPassword.password = server().password;
  return await openStore(withPassword.href);
}
