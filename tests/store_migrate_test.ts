/**
 * The SQLite → PostgreSQL migration helper (src/store/migrate.ts) against a real PostgreSQL:
 * a populated relay store arrives with the same counts, keys and device credentials still
 * authenticate, new rows continue after the copied ids, and a non-empty target is refused
 * without a write.
 */
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { copySqliteToPostgres } from "../src/store/migrate.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { PgStore } from "../src/store/pg/store.ts";
import { hashSecret } from "../src/store/hash.ts";
import { StoreError } from "../src/store/types.ts";
import { havePostgres, SKIP_SENTENCE, startPostgres } from "./_postgres.ts";
import { passwordFile } from "./_stores.ts";

const skip = !havePostgres();
if (skip) console.log(SKIP_SENTENCE);

const DEVICES = 1_200; // more than two read pages of the copy
const AUDIT_ROWS = 1_100;

/** Fills a SQLite store like a relay that has run a while; returns what to check later. */
async function populate(s: SqliteStore) {
  const acme = await s.accounts.create("acme", 1000);
  const beta = await s.accounts.create("beta", 2000);
  const full = await s.accounts.addKey("acme", "full", "ops", 3000);
  await s.accounts.revokeKey(full.id, 4000);
  const acmeId = (await s.accounts.find("acme"))!;
  const betaId = (await s.accounts.find("beta"))!;
  for (let i = 0; i < DEVICES; i++) {
    const { device } = await s.devices.enroll({
      accountId: i % 3 ? acmeId : betaId,
      name: `dev-${i}`,
      credentialHash: hashSecret(`od_cred_${i}`),
      enrolledBy: "key-x",
      fingerprint: `fp-${i}`,
    }, 5000 + i);
    // A present key, and a removed one (a tombstone: removals of absent keys store nothing).
    await s.props.apply(device.rowid, [
      { k: "site", v: `s${i % 7}`, at: 10 },
      { k: "old", v: "x", at: 9 },
      { k: "old", v: null, at: 11 },
    ]);
  }
  await s.shares.add({
    ownerId: acmeId,
    granteeId: betaId,
    device: "dev-1",
    filters: [],
    services: ["ssh"],
    createdBy: full.id,
  });
  await s.shares.add({
    ownerId: betaId,
    granteeId: acmeId,
    device: null,
    filters: ["site=s1"],
    services: [],
    createdBy: "k",
  });
  for (let i = 0; i < 50; i++) {
    await s.events.append({
      accountId: acmeId,
      device: `dev-${i}`,
      type: "state",
      data: { state: "online" },
      at: 100 + i,
    });
  }
  await s.audit.append(Array.from({ length: AUDIT_ROWS }, (_, i) => ({
    at: 200 + i,
    accountId: i % 2 ? acmeId : null,
    ownerId: acmeId,
    keyId: i % 2 ? full.id : null,
    ip: "192.0.2.7",
    action: "tunnel",
    device: "dev-1",
    service: "ssh",
    result: i % 5 ? "ok" : "refused",
    reason: "",
    durationMs: i,
    bytesUp: i * 10,
    bytesDown: 2 ** 40 + i, // beyond 32 bits: BIGINT on PostgreSQL
    count: 1,
  })));
  return { acme, beta, full };
}

Deno.test({
  name:
    "migrate: a populated SQLite store arrives whole; credentials still work; non-empty targets refused",
  ignore: skip,
  async fn() {
    await using pg = await startPostgres();
    const dir = await Deno.makeTempDir({ prefix: "od-migrate-" });
    try {
      const file = await passwordFile(dir, pg.password);
      await using source = SqliteStore.open(`${dir}/data`);
      const made = await populate(source);
      await using target = await PgStore.open(pg.tcpUrl, { passwordFile: file });

      const counts = await copySqliteToPostgres(source, target);
      assertEquals(counts, {
        accounts: 2,
        keys: 5,
        devices: DEVICES,
        props: 2 * DEVICES,
        shares: 2,
        events: 50,
        audit: AUDIT_ROWS,
      });

      // Keys and device credentials authenticate on the new store, with the same ids.
      assertEquals((await target.accounts.findKey(made.acme.clientKey))!.account, "acme");
      assertEquals((await target.accounts.findKey(made.full.key))!.revokedAt, 4000);
      for (const i of [0, 1, 599, DEVICES - 1]) {
        const before = (await source.devices.byCredential(hashSecret(`od_cred_${i}`)))!;
        const after = (await target.devices.byCredential(hashSecret(`od_cred_${i}`)))!;
        assertEquals(after, before);
        assertEquals(await target.props.load(after.rowid), await source.props.load(before.rowid));
      }
      const acmeId = (await target.accounts.find("acme"))!;
      assertEquals(await target.accounts.list(), await source.accounts.list());
      assertEquals(await target.shares.involving(acmeId), await source.shares.involving(acmeId));
      assertEquals(
        await target.events.query({ accountId: acmeId }),
        await source.events.query({ accountId: acmeId }),
      );
      assertEquals(await target.audit.query({}), await source.audit.query({}));
      const page = {
        accountId: acmeId,
        filters: [{ key: "site", op: "=" as const, value: "s1" }],
        limit: 50,
      };
      assertEquals(await target.devices.list(page), await source.devices.list(page));

      // New rows continue after the copied ids.
      const { device, created } = await target.devices.enroll({
        accountId: acmeId,
        name: "new-one",
        credentialHash: hashSecret("od_cred_new"),
        enrolledBy: "k",
      });
      ok(created && device.rowid > DEVICES, String(device.rowid));
      await target.accounts.create("gamma");
      await target.events.append({
        accountId: acmeId,
        device: "x",
        type: "state",
        data: {},
        at: 1,
      });
      await target.audit.append([{ ...(await target.audit.query({ limit: 1 }))[0], at: 1 }]);
      await target.shares.add({
        ownerId: acmeId,
        granteeId: acmeId,
        device: null,
        filters: [],
        services: [],
        createdBy: "k",
      });

      // A second run finds the target in use and writes nothing.
      await rejects(copySqliteToPostgres(source, target), (err: unknown) => {
        ok(err instanceof StoreError);
        assertEquals(
          err.message,
          `The store ${target.location} is not empty (it holds 3 accounts, 7 keys, ${
            DEVICES + 1
          } devices, ` +
            `${2 * DEVICES} props, 3 shares, 51 events, ${
              AUDIT_ROWS + 1
            } audit); migrate only into an empty store`,
        );
        return true;
      });
      assertEquals(await target.devices.count(), DEVICES + 1);
      assertEquals(await target.integrity(), "ok");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
