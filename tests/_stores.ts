/**
 * Fresh stores for the store tests: a temporary data directory (SQLite) or a new database on
 * the test's PostgreSQL (tests/_postgres.ts), each able to open several store instances on the
 * same data, as several relays or `od admin` would.
 */
import { openStore } from "../src/store/open.ts";
import type { Store, StoreChange } from "../src/store/types.ts";
import { hashSecret } from "../src/store/hash.ts";
import type { Postgres } from "./_postgres.ts";

/** One empty store's data, openable many times. */
export interface Place extends AsyncDisposable {
  kind: "sqlite" | "postgres";
  /** Opens another store instance on this data. */
  open(): Promise<Store>;
}

/** A fresh SQLite data directory. */
export async function sqlitePlace(): Promise<Place> {
  const dir = await Deno.makeTempDir({ prefix: "od-store-" });
  return {
    kind: "sqlite",
    open: () => openStore({ dataDir: dir }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

let databases = 0;

/** A fresh database on `pg`, owned by its role; the password comes from a 0600 file. */
export async function pgPlace(pg: Postgres, passwordFile: string): Promise<Place> {
  const name = `od_${++databases}_${crypto.randomUUID().slice(0, 8)}`;
  await pg.psql(`CREATE DATABASE ${name} OWNER ${pg.user}`);
  const url = `postgres://${pg.user}@127.0.0.1:${pg.port}/${name}`;
  return {
    kind: "postgres",
    open: () => openStore(url, { passwordFile }),
    [Symbol.asyncDispose]: async () => {
      await pg.psql(`DROP DATABASE ${name} WITH (FORCE)`);
    },
  };
}

/** Writes `password` to a new 0600 file in `dir`. */
export async function passwordFile(dir: string, password: string): Promise<string> {
  const path = `${dir}/pgpassword`;
  await Deno.writeTextFile(path, `${password}\n`, { mode: 0o600 });
  return path;
}

/** A live subscription that remembers every change it saw. */
export interface Watch extends Disposable {
  changes: StoreChange[];
  /** The first change (seen already or arriving within `ms`) that `pick` maps to a value. */
  until<T>(pick: (c: StoreChange) => T | undefined, ms?: number): Promise<T>;
}

/** Subscribes to `store`'s change feed and resolves once the feed is live. */
export async function watch(store: Store): Promise<Watch> {
  const changes: StoreChange[] = [];
  const waiters = new Set<() => void>();
  const unsubscribe = await store.subscribe((c) => {
    changes.push(c);
    waiters.forEach((w) => w());
  });
  return {
    changes,
    async until<T>(pick: (c: StoreChange) => T | undefined, ms = 5000): Promise<T> {
      const deadline = Date.now() + ms;
      let seen = 0;
      while (true) {
        for (; seen < changes.length; seen++) {
          const v = pick(changes[seen]);
          if (v !== undefined) return v;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching change within ${ms} ms`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        let wake = () => {};
        await new Promise<void>((resolve) => {
          wake = resolve;
          waiters.add(wake);
          timer = setTimeout(resolve, left);
        });
        waiters.delete(wake);
        clearTimeout(timer);
      }
    },
    [Symbol.dispose]: unsubscribe,
  };
}

/** A named behaviour every backend must show. */
export interface Case {
  name: string;
  run(place: Place): Promise<void>;
}

/** Creates account `name` with one device `pi-1` (credential `cred-1-NAME`, fingerprint fp-1). */
export async function withDevice(s: Store, name = "acme") {
  const keys = await s.accounts.create(name);
  const accountId = (await s.accounts.find(name))!;
  const { device } = await s.devices.enroll({
    accountId,
    name: "pi-1",
    credentialHash: hashSecret(`cred-1-${name}`),
    enrolledBy: "key-test",
    fingerprint: "fp-1",
  });
  return { keys, accountId, device };
}
