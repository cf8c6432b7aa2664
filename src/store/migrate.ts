/**
 * Moves a relay from SQLite to PostgreSQL: copies accounts, keys, devices, properties, shares,
 * the event log and the audit log into an EMPTY PostgreSQL store, in one transaction on the
 * target, keeping every id and every key and credential hash, so keys keep working and devices
 * reconnect with the credentials they hold. Relays and device links are not copied: they
 * describe running relays, and every device starts offline on the new store. Dashboard sessions
 * are not copied either: people sign in again.
 *
 * The source is read from one snapshot, which does not block a running relay; but what it
 * writes afterwards is not copied, so stop the relay first. The copy checks the row counts of
 * every table against the source before it commits.
 */
import { StoreError } from "./db.ts";
import type { Executor, Param } from "./queries/executor.ts";
import type { SqliteStore } from "./sqlite/store.ts";
import type { PgStore } from "./pg/store.ts";

/** A table to copy: its columns and the key it is read in order of. */
interface TableSpec {
  name: string;
  columns: string[];
  key: string[];
  /** Its identity column, whose sequence must continue after the copied ids. */
  identity?: string;
}

/** In dependency order: every row's references are copied before it. */
const TABLES: readonly TableSpec[] = [
  { name: "accounts", columns: ["id", "name", "created_at"], key: ["id"], identity: "id" },
  {
    name: "keys",
    columns: [
      "id",
      "account_id",
      "role",
      "hash",
      "label",
      "created_at",
      "last_used_at",
      "revoked_at",
    ],
    key: ["id"],
  },
  {
    name: "devices",
    columns: [
      "id",
      "account_id",
      "name",
      "credential_hash",
      "enrolled_by",
      "parent",
      "created_at",
      "last_seen",
      "last_ip",
      "version",
      "services",
      "host_keys",
      "fingerprint",
    ],
    key: ["id"],
    identity: "id",
  },
  {
    name: "props",
    columns: ["device_id", "key", "value", "updated_at"],
    key: ["device_id", "key"],
  },
  {
    name: "shares",
    columns: [
      "id",
      "owner_id",
      "grantee_id",
      "device",
      "filters",
      "services",
      "created_by",
      "created_at",
    ],
    key: ["id"],
    identity: "id",
  },
  {
    name: "events",
    columns: ["id", "account_id", "device", "type", "data", "at"],
    key: ["id"],
    identity: "id",
  },
  {
    name: "audit",
    columns: [
      "id",
      "at",
      "account_id",
      "owner_id",
      "key_id",
      "ip",
      "action",
      "device",
      "service",
      "result",
      "reason",
      "duration_ms",
      "bytes_up",
      "bytes_down",
      "count",
    ],
    key: ["id"],
    identity: "id",
  },
];

/** Rows copied per table. */
export type CopyCounts = Record<string, number>;

const PAGE = 500; // rows per read and per multi-row INSERT (15 columns: 7,500 parameters)
const COPY_TIMEOUT_MS = 60 * 60_000; // a long audit log may take minutes; an hour bounds a hang

async function count(e: Executor, table: string): Promise<number> {
  return (await e.get<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))!.n;
}

/** Reads a table in key order, one page at a time. */
async function* pages(e: Executor, t: TableSpec): AsyncGenerator<Record<string, Param>[]> {
  const order = t.key.join(", ");
  let last: Param[] | null = null;
  while (true) {
    const where = last === null ? "" : `WHERE (${order}) > (${t.key.map(() => "?").join(", ")})`;
    const rows: Record<string, Param>[] = await e.all<Record<string, Param>>(
      `SELECT ${t.columns.join(", ")} FROM ${t.name} ${where} ORDER BY ${order} LIMIT ?`,
      [...(last ?? []), PAGE],
    );
    if (rows.length === 0) return;
    yield rows;
    const end: Record<string, Param> = rows[rows.length - 1];
    last = t.key.map((k) => end[k]);
    if (rows.length < PAGE) return;
  }
}

async function insert(e: Executor, t: TableSpec, rows: Record<string, Param>[]): Promise<void> {
  const tuple = `(${t.columns.map(() => "?").join(", ")})`;
  await e.run(
    `INSERT INTO ${t.name} (${t.columns.join(", ")}) VALUES ${rows.map(() => tuple).join(", ")}`,
    rows.flatMap((r) => t.columns.map((c) => r[c])),
  );
}

async function refuseNonEmpty(target: Executor, shown: string): Promise<void> {
  const held: string[] = [];
  for (const t of TABLES) {
    const n = await count(target, t.name);
    if (n > 0) held.push(`${n} ${t.name}`);
  }
  if (held.length > 0) {
    throw new StoreError(
      `The store ${shown} is not empty (it holds ${held.join(", ")}); migrate only into an ` +
        `empty store`,
    );
  }
}

/**
 * Copies everything a relay keeps from `source` into the empty `target`; resolves to the rows
 * copied per table. StoreError (and nothing written) if the target is not empty or a count
 * differs.
 */
export async function copySqliteToPostgres(
  source: SqliteStore,
  target: PgStore,
): Promise<CopyCounts> {
  const pg = target.executor(COPY_TIMEOUT_MS);
  return await source.snapshot((src) =>
    pg.tx(async (dst) => {
      // Exclusive locks on the target's tables, and no NOTIFY per copied row: nobody listens
      // to an empty store, and a long event log would queue a notification per event.
      for (const t of TABLES) await dst.run(`ALTER TABLE ${t.name} DISABLE TRIGGER USER`);
      await refuseNonEmpty(dst, target.location);
      const counts: CopyCounts = {};
      for (const t of TABLES) {
        let copied = 0;
        for await (const rows of pages(src, t)) {
          await insert(dst, t, rows);
          copied += rows.length;
        }
        const [expected, landed] = [await count(src, t.name), await count(dst, t.name)];
        if (copied !== expected || landed !== expected) {
          throw new StoreError(
            `Migration of ${t.name} copied ${landed} of ${expected} rows; nothing was written`,
          );
        }
        if (t.identity) {
          // New rows continue after the copied ids.
          await dst.run(
            `SELECT setval(pg_get_serial_sequence('${t.name}', '${t.identity}'),
             coalesce((SELECT max(${t.identity}) FROM ${t.name}), 0) + 1, false)`,
          );
        }
        counts[t.name] = copied;
      }
      for (const t of TABLES) await dst.run(`ALTER TABLE ${t.name} ENABLE TRIGGER USER`);
      return counts;
    })
  );
}
