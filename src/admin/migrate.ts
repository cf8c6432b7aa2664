/**
 * `od admin --data DIR migrate --to postgres://…`: copies the relay's SQLite store into an empty
 * PostgreSQL store (src/store/migrate.ts: one transaction, every id, key hash and device
 * credential hash kept, counts checked), so keys keep working and devices reconnect to relays
 * on the new store with the credentials they hold. Relays on the source should be stopped
 * first: what they write after the copy's snapshot is not copied.
 */
import { OdError, UsageError } from "../shared/errors.ts";
import { printJson, printTable } from "../cli/output.ts";
import { SqliteStore } from "../store/sqlite/store.ts";
import { PgStore } from "../store/pg/store.ts";
import { isPgUrl } from "../store/pg/url.ts";
import { copySqliteToPostgres } from "../store/migrate.ts";
import { StoreError } from "../store/types.ts";

/** Runs `od admin migrate`; `values` are od admin's parsed options. */
export async function migrateCommand(
  values: Record<string, unknown>,
  rest: string[],
  json: boolean,
): Promise<number> {
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (values.store !== undefined) {
    throw new UsageError(
      "migrate copies the SQLite store of --data DIR; --store cannot be the source",
    );
  }
  const to = values.to;
  if (typeof to !== "string") throw new UsageError("migrate needs --to postgres://USER@HOST/DB");
  if (!isPgUrl(to)) throw new UsageError(`--to must be a postgres://USER@HOST/DB URL`);
  const dataDir = typeof values.data === "string" ? values.data : "./od-data";
  const passwordFile = typeof values["store-password-file"] === "string"
    ? values["store-password-file"]
    : undefined;
  let source: SqliteStore | null = null;
  let target: PgStore | null = null;
  try {
    source = SqliteStore.open(dataDir, { create: false });
    target = await PgStore.open(to, { passwordFile });
    const counts = await copySqliteToPostgres(source, target);
    if (json) printJson({ from: dataDir, to: target.location, copied: counts });
    else {
      console.log(`Copied the store in ${dataDir} to ${target.location}:`);
      printTable(["TABLE", "ROWS"], Object.entries(counts).map(([t, n]) => [t, String(n)]));
      console.log(
        "Every count matches the source. Start the relays with --store on the new store.",
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof StoreError) throw new OdError(err.message);
    throw err;
  } finally {
    await source?.close();
    await target?.close();
  }
}
