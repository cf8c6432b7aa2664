/**
 * What only the PostgreSQL store does, against a real PostgreSQL 15 (tests/_postgres.ts):
 * URLs and password sources, one sentence for every way opening fails (never with the
 * password in it), migrations run once by relays starting together, the same schema as SQLite,
 * and durability: acknowledged writes survive `pg_ctl restart` and a crash, the store reconnects by itself,
 * and while the server is down calls fail fast instead of hanging.
 */
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openStore } from "../src/store/open.ts";
import { StoreError, StoreUnavailable } from "../src/store/types.ts";
import { hashSecret } from "../src/store/hash.ts";
import { havePostgres, type Postgres, SKIP_SENTENCE, startPostgres } from "./_postgres.ts";
import { passwordFile, watch } from "./_stores.ts";

const skip = !havePostgres();
if (skip) console.log(SKIP_SENTENCE);

/** Runs `fn` with a fresh PostgreSQL and a 0600 file holding its role's password. */
function pgTest(name: string, fn: (pg: Postgres, file: string, dir: string) => Promise<void>) {
  Deno.test({
    name,
    ignore: skip,
    async fn() {
      await using pg = await startPostgres();
      const dir = await Deno.makeTempDir({ prefix: "od-store-pg-" });
      try {
        await fn(pg, await passwordFile(dir, pg.password), dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** The message of a rejection, checked to be one sentence without the password in it. */
async function sentence(p: Promise<unknown>, password: string): Promise<string> {
  let message = "";
  await rejects(p, (err: unknown) => {
    ok(err instanceof StoreError, `not a StoreError: ${err}`);
    message = err.message;
    return true;
  });
  ok(!message.includes(password), `password in: ${message}`);
  ok(!message.includes("\n"), `not one line: ${message}`);
  return message;
}

pgTest(
  "opens over TCP and the Unix socket with the password from each source",
  async (pg, file, dir) => {
    const withPassword = pg.tcpUrl.replace("od@", `od:${encodeURIComponent(pg.password)}@`);
    const passfile = `${dir}/pgpass`;
    await Deno.writeTextFile(
      passfile,
      `# comment\nother:*:*:*:nope\n127.0.0.1:${pg.port}:od:od:${pg.password}\n`,
      {
        mode: 0o600,
      },
    );
    const ways: [string, string, Record<string, string>, string?][] = [
      ["URL", withPassword, {}],
      ["file", pg.tcpUrl, {}, file],
      ["PGPASSWORD", pg.tcpUrl, { PGPASSWORD: pg.password }],
      ["PGPASSFILE", pg.tcpUrl, { PGPASSFILE: passfile }],
      ["socket", pg.socketUrl, { PGPASSWORD: pg.password }],
    ];
    for (const [what, url, env, pwFile] of ways) {
      for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
      try {
        await using s = await openStore(url, { passwordFile: pwFile });
        assertEquals(await s.integrity(), "ok", what);
        ok(!s.location.includes(pg.password), what);
        ok(!Deno.inspect(s, { depth: 10 }).includes(pg.password), what);
      } finally {
        for (const k of Object.keys(env)) Deno.env.delete(k);
      }
    }
    await Deno.chmod(file, 0o644);
    const open = await sentence(openStore(pg.tcpUrl, { passwordFile: file }), pg.password);
    ok(/is readable by others; chmod 600/.test(open), open);
  },
);

pgTest("every way opening fails is one sentence without the password", async (pg, file) => {
  const wrong = `${pg.password}-wrong`;
  const urlWrong = pg.tcpUrl.replace("od@", `od:${wrong}@`);
  const refused = await sentence(openStore(urlWrong), wrong);
  ok(
    /refused the login of "od".*password authentication failed.*from the store URL/.test(refused),
    refused,
  );
  const none = await sentence(openStore(pg.tcpUrl), pg.password);
  ok(/no password was given/.test(none), none);
  const noDb = await sentence(
    openStore(pg.tcpUrl.replace(/\/od$/, "/nodb"), { passwordFile: file }),
    pg.password,
  );
  ok(/database "nodb" does not exist/.test(noDb), noDb);
  const closed = freePort();
  const refusedConn = await sentence(
    openStore(`postgres://od@127.0.0.1:${closed}/od`, { passwordFile: file }),
    pg.password,
  );
  assertEquals(
    refusedConn,
    `Cannot open store postgres://od@127.0.0.1:${closed}/od: PostgreSQL at postgres://od@127.0.0.1:${closed}/od is unreachable: connection refused`,
  );
  const noSocket = await sentence(
    openStore(`postgres://od@/od?host=/nonexistent`, { passwordFile: file }),
    pg.password,
  );
  ok(/unreachable: no server socket there/.test(noSocket), noSocket);
  await sentence(openStore("postgres://od@127.0.0.1:99999/od"), pg.password);
  await sentence(openStore("postgres://od@host/db?application_name=x"), pg.password);
  await sentence(openStore("mysql://od@host/db"), pg.password);
  // The schema of a newer od: refused, and left as it is.
  await (await openStore(pg.tcpUrl, { passwordFile: file })).close();
  await pg.psql("UPDATE schema_version SET version = 99", "od");
  const newer = await sentence(openStore(pg.tcpUrl, { passwordFile: file }), pg.password);
  ok(/schema version 99, newer than this od understands \(\d+\); upgrade od/.test(newer), newer);
  assertEquals((await pg.psql("SELECT version FROM schema_version", "od")).trim(), "99");
});

pgTest(
  "a server that accepts connections but never answers: opening gives up within its bound",
  async (pg) => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of listener) conns.push(c); // and never a byte back
    })();
    try {
      const port = (listener.addr as Deno.NetAddr).port;
      const started = Date.now();
      const message = await sentence(
        openStore(`postgres://od@127.0.0.1:${port}/od`, { timeoutMs: 1000 }),
        pg.password,
      );
      assertEquals(
        message,
        `Cannot open store postgres://od@127.0.0.1:${port}/od: PostgreSQL at postgres://od@127.0.0.1:${port}/od did not answer within 1 s`,
      );
      ok(Date.now() - started < 5000, "bounded");
    } finally {
      listener.close();
      conns.forEach((c) => c.close());
      await accepting.catch(() => {});
    }
  },
);

pgTest("three relays starting at once migrate the empty database once", async (pg, file) => {
  const stores = await Promise.all(
    [0, 1, 2].map(() => openStore(pg.tcpUrl, { passwordFile: file })),
  );
  try {
    assertEquals((await pg.psql("SELECT version FROM schema_version", "od")).trim(), "6");
    assertEquals((await pg.psql("SELECT count(*) FROM schema_version", "od")).trim(), "1");
    await stores[0].accounts.create("acme");
    assertEquals((await stores[2].accounts.list()).map((a) => a.name), ["acme"]);
  } finally {
    for (const s of stores) await s.close();
  }
});

pgTest("the same tables and columns as the SQLite schema", async (pg, file, dir) => {
  await (await openStore(pg.tcpUrl, { passwordFile: file })).close();
  await (await openStore({ dataDir: dir })).close();
  const db = new DatabaseSync(`${dir}/od.db`, { readOnly: true });
  const sqlite: string[] = [];
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as {
        name: string;
      }[];
    for (const { name } of tables) {
      if (name === "change_log") continue; // SQLite's change feed; PostgreSQL NOTIFYs instead
      for (
        const c of db.prepare(`PRAGMA table_info(${name})`).all() as {
          name: string;
          notnull: number;
        }[]
      ) {
        sqlite.push(`${name}.${c.name}${c.notnull ? " not null" : ""}`);
      }
    }
  } finally {
    db.close();
  }
  const pgColumns = (await pg.psql(
    `SELECT table_name || '.' || column_name || CASE WHEN is_nullable = 'NO' AND column_name <> 'id'
       AND NOT (table_name = 'device_links' AND column_name = 'device_id') THEN ' not null' ELSE '' END
     FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_version'`,
    "od",
  )).trim().split("\n");
  // SQLite's INTEGER PRIMARY KEY is implicitly not null; PostgreSQL reports it so.
  const normal = (xs: string[]) => xs.map((x) => x.replace(/^(\w+)\.id not null$/, "$1.id")).sort();
  ok(sqlite.length > 60, `${sqlite.length} columns`);
  assertEquals(normal(pgColumns), normal(sqlite));
});

pgTest(
  "acknowledged writes survive pg_ctl restart and a crash; the store reconnects, failing fast while down",
  async (pg, file) => {
    await using s = await openStore(pg.tcpUrl, { passwordFile: file, timeoutMs: 2000 });
    await using other = await openStore(pg.tcpUrl, { passwordFile: file });
    using w = await watch(s);
    const { clientKey } = await s.accounts.create("acme");
    const accountId = (await s.accounts.find("acme"))!;
    await s.devices.enroll({
      accountId,
      name: "pi",
      credentialHash: hashSecret("cred"),
      enrolledBy: "k",
    });

    await pg.restart();
    const after = await eventually(() => s.accounts.findKey(clientKey));
    assertEquals(after!.account, "acme");
    assertEquals((await s.devices.byCredential(hashSecret("cred")))!.name, "pi");
    await w.until((c) => (c.kind === "resync" ? true : undefined), 10_000);
    const added = await other.accounts.addKey("acme", "full", "after the restart");
    await w.until((c) => (c.kind === "keys" && c.keyId === added.id ? true : undefined), 5_000);

    await pg.stop();
    const started = Date.now();
    await rejects(s.accounts.list(), StoreUnavailable);
    await rejects(s.tx((t) => t.accounts.create("beta")), StoreUnavailable);
    ok(Date.now() - started < 5000, `failing took ${Date.now() - started} ms`);
    await pg.start();
    await eventually(() => s.accounts.create("beta"));
    assertEquals((await s.accounts.list()).map((a) => a.name), ["acme", "beta"]);

    // A crash right after the acknowledgement (no shutdown checkpoint): the WAL has the write.
    const lastWrite = await s.accounts.addKey("beta", "full", "just before the crash");
    await pg.crash();
    await pg.start();
    const found = await eventually(() => s.accounts.findKey(lastWrite.key));
    assertEquals(found!.label, "just before the crash");
  },
);

pgTest("no password in anything a store prints, even with debug logs and failures", async (pg) => {
  const script = `
    import { openStore } from "${new URL("../src/store/open.ts", import.meta.url).href}";
    const [good, bad] = Deno.args;
    try { await openStore(bad); } catch (err) { console.error(String(err), err.cause); }
    const s = await openStore(good);
    console.log(Deno.inspect(s, { depth: 20 }));
    try { await s.devices.get(1, "x".repeat(10)); await s.tx(async () => { throw new Error("boom"); }); }
    catch (err) { console.error(err); }
    const unsubscribe = await s.subscribe(() => {});
    unsubscribe();
    await s.close();
  `;
  const good = pg.tcpUrl.replace("od@", `od:${encodeURIComponent(pg.password)}@`);
  const bad = pg.tcpUrl.replace("od@", `od:${pg.password}x@`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      script,
      good,
      bad,
    ],
    env: { OD_LOG: "debug" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  ok(/refused the login/.test(text) && /PgStore/.test(text) && /boom/.test(text), text);
  assertEquals(out.code, 0, text);
  ok(!text.includes(pg.password), "the password was printed");
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Retries `fn` every 100 ms while the store is unavailable, for at most 20 s. */
async function eventually<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreUnavailable) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
