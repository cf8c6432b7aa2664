/**
 * One table of store cases, run against SQLite and against a real PostgreSQL 15 (started by
 * tests/_postgres.ts; skipped with one sentence only when its binaries are absent). Every case
 * gets an empty store and may open more instances on the same data, as several relays would.
 */
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { hashSecret } from "../src/store/hash.ts";
import { CloneDetected, ConflictError } from "../src/store/types.ts";
import { MAX_PROPS } from "../src/protocol/props.ts";
import { havePostgres, SKIP_SENTENCE, startPostgres } from "./_postgres.ts";
import {
  type Case,
  passwordFile,
  pgPlace,
  type Place,
  sqlitePlace,
  watch,
  withDevice,
} from "./_stores.ts";
import { od } from "./_harness.ts";
import { CASES_MORE } from "./_store_cases.ts";
import { DASHBOARD_CASES } from "./_store_dashboard_cases.ts";

const CASES: Case[] = [
  {
    name: "accounts: create, duplicate, list with counts, remove with everything it owns",
    async run(place) {
      await using s = await place.open();
      const created = await s.accounts.create("acme", 1000);
      ok(created.clientKey.startsWith("od_client_") && created.deviceKey.startsWith("od_device_"));
      await rejects(s.accounts.create("acme"), ConflictError);
      const id = (await s.accounts.find("acme"))!;
      await s.devices.enroll({
        accountId: id,
        name: "pi",
        credentialHash: hashSecret("c"),
        enrolledBy: "k",
      });
      await s.accounts.create("beta", 2000);
      assertEquals((await s.accounts.list()).map((a) => [a.name, a.devices, a.keys, a.createdAt]), [
        ["acme", 1, 2, 1000],
        ["beta", 0, 2, 2000],
      ]);
      assertEquals(await s.accounts.remove("acme"), true);
      assertEquals(await s.accounts.remove("acme"), false);
      assertEquals(await s.devices.count(), 0);
      assertEquals(await s.accounts.findKey(created.clientKey), null);
      assertEquals(await s.accounts.find("nobody"), null);
    },
  },
  {
    name: "keys: add, find by secret and id, revoke once, revokedSince, touch",
    async run(place) {
      await using s = await place.open();
      const { clientKey } = await s.accounts.create("acme", 1000);
      await rejects(s.accounts.addKey("nobody", "full"), ConflictError);
      const full = await s.accounts.addKey("acme", "full", "ops", 2000);
      const found = (await s.accounts.findKey(full.key))!;
      assertEquals([found.id, found.role, found.label, found.account], [
        full.id,
        "full",
        "ops",
        "acme",
      ]);
      assertEquals((await s.accounts.findKey(clientKey))!.role, "client");
      assertEquals(await s.accounts.findKey("od_full_not-a-key"), null);
      assertEquals(await s.accounts.revokeKey(full.id, 5000), true);
      assertEquals(await s.accounts.revokeKey(full.id, 6000), false);
      assertEquals((await s.accounts.findKey(full.key))!.revokedAt, 5000);
      assertEquals(await s.accounts.keyById(full.id), await s.accounts.findKey(full.key));
      assertEquals(await s.accounts.keyById("no-such-id"), null);
      assertEquals(await s.accounts.revokedSince(5000), [full.id]);
      assertEquals(await s.accounts.revokedSince(5001), []);
      await s.accounts.touchKeys([found.id], 7000);
      const listed = await s.accounts.listKeys("acme");
      // Oldest first; the two keys made with the account share a time and sort by random id.
      assertEquals(listed.map((k) => k.role).slice(2), ["full"]);
      assertEquals(listed.map((k) => k.role).slice(0, 2).sort(), ["client", "device"]);
      assertEquals(listed[2].lastUsedAt, 7000);
      assertEquals((await s.accounts.listKeys()).length, 3);
      assertEquals(await s.accounts.listKeys("nobody"), []);
    },
  },
  {
    name: "enrol: new, idempotent on the credential, taken id, foreign credential, clone",
    async run(place) {
      await using s = await place.open();
      const { accountId, device } = await withDevice(s);
      assertEquals([device.name, device.account, device.fingerprint], ["pi-1", "acme", "fp-1"]);
      const again = await s.devices.enroll({
        accountId,
        name: null,
        credentialHash: hashSecret("cred-1-acme"),
        enrolledBy: "key-test",
        fingerprint: "fp-1",
      });
      assertEquals([again.created, again.device.rowid], [false, device.rowid]);
      await rejects(
        s.devices.enroll({
          accountId,
          name: "pi-1",
          credentialHash: hashSecret("other"),
          enrolledBy: "k",
        }),
        ConflictError,
      );
      await s.accounts.create("beta");
      const beta = (await s.accounts.find("beta"))!;
      await rejects(
        s.devices.enroll({
          accountId: beta,
          name: null,
          credentialHash: hashSecret("cred-1-acme"),
          enrolledBy: "k",
        }),
        /belongs to another account/,
      );
      const clone = s.devices.enroll({
        accountId,
        name: null,
        credentialHash: hashSecret("cred-1-acme"),
        enrolledBy: "k",
        fingerprint: "fp-2",
      });
      await rejects(
        clone,
        (err: unknown) => err instanceof CloneDetected && err.original.name === "pi-1",
      );
      const child = await s.devices.enroll({
        accountId,
        name: null,
        credentialHash: hashSecret("cred-2"),
        enrolledBy: "clone of pi-1",
        parent: "pi-1",
        fingerprint: "fp-2",
      });
      ok(child.created && /^[a-z2-9]{10}$/.test(child.device.name), child.device.name);
      assertEquals(child.device.parent, "pi-1");
      assertEquals((await s.devices.byCredential(hashSecret("cred-2")))!.rowid, child.device.rowid);
      assertEquals((await s.devices.byRowid(child.device.rowid))!.name, child.device.name);
    },
  },
  {
    name: "enrol: the same credential from two store instances at once yields one device",
    async run(place) {
      await using a = await place.open();
      await using b = await place.open();
      await a.accounts.create("acme");
      const accountId = (await a.accounts.find("acme"))!;
      const req = { accountId, name: null, credentialHash: hashSecret("racing"), enrolledBy: "k" };
      const results = await Promise.all(
        [0, 1, 2, 3].map((i) => (i % 2 ? a : b).devices.enroll(req)),
      );
      assertEquals(new Set(results.map((r) => r.device.rowid)).size, 1);
      assertEquals(results.filter((r) => r.created).length, 1);
      assertEquals(await a.devices.count(), 1);
    },
  },
  {
    name: "rename: conflict with an existing id, then a free one; remove",
    async run(place) {
      await using s = await place.open();
      const { accountId, device } = await withDevice(s);
      await s.devices.enroll({
        accountId,
        name: "pi-2",
        credentialHash: hashSecret("c2"),
        enrolledBy: "k",
      });
      await rejects(s.devices.rename(device.rowid, accountId, "pi-2"), ConflictError);
      await s.devices.rename(device.rowid, accountId, "kitchen");
      assertEquals((await s.devices.get(accountId, "kitchen"))!.rowid, device.rowid);
      assertEquals(await s.devices.get(accountId, "pi-1"), null);
      assertEquals(await s.devices.remove(device.rowid), true);
      assertEquals(await s.devices.remove(device.rowid), false);
      assertEquals(await s.devices.count(), 1);
    },
  },
  {
    name: "props: last write per key wins, tombstones keep removed keys removed",
    async run(place) {
      await using s = await place.open();
      const { device } = await withDevice(s);
      const id = device.rowid;
      await s.props.apply(id, [{ k: "site", v: "zurich", at: 100 }, {
        k: "group",
        v: "web",
        at: 100,
      }]);
      const older = await s.props.apply(id, [{ k: "site", v: "basel", at: 50 }]);
      assertEquals(older.applied, []);
      await s.props.apply(id, [{ k: "site", v: null, at: 200 }]);
      const revive = await s.props.apply(id, [{ k: "site", v: "bern", at: 150 }]);
      assertEquals(revive.applied, [], "an older write must not revive a removed key");
      assertEquals(await s.props.present(id), { group: "web" });
      assertEquals((await s.props.load(id)).get("site"), { v: null, at: 200 });
      await s.props.apply(id, [{ k: "site", v: "bern", at: 300 }]);
      assertEquals(await s.props.present(id), { group: "web", site: "bern" });
      // Pruning forgets only removals older than the cut.
      await s.props.apply(id, [{ k: "gone", v: "x", at: 5 }, { k: "gone", v: null, at: 10 }]);
      // A removal of a key that is not there stores nothing.
      await s.props.apply(id, [{ k: "never", v: null, at: 12 }]);
      assertEquals((await s.props.load(id)).has("never"), false);
      assertEquals(await s.props.pruneTombstones(20), 1);
      assertEquals((await s.props.load(id)).has("gone"), false);
      assertEquals((await s.props.load(id)).size, 2);
      // Repair brings a time from the future (written before the bounds) back to now.
      await s.props.apply(id, [{ k: "late", v: "x", at: 10_000 }]);
      assertEquals(await s.props.repair(5_000), 1);
      assertEquals((await s.props.load(id)).get("late"), { v: "x", at: 5_000 });
      assertEquals(await s.props.repair(5_000), 0);
    },
  },
  {
    name: `props: at most ${MAX_PROPS} per device; apply keeps what fits, applyAll all or nothing`,
    async run(place) {
      await using s = await place.open();
      const { device } = await withDevice(s);
      const full = Array.from({ length: MAX_PROPS }, (_, i) => ({ k: `k${i}`, v: "x", at: 1 }));
      assertEquals((await s.props.apply(device.rowid, full)).applied.length, MAX_PROPS);
      const more = [{ k: "k0", v: "y", at: 2 }, { k: "extra", v: "z", at: 2 }];
      const all = await s.props.applyAll(device.rowid, more);
      assertEquals(all.applied, []);
      assertEquals(
        all.rejected,
        `the device has ${MAX_PROPS} properties and the limit is ${MAX_PROPS}; nothing was changed`,
      );
      assertEquals((await s.props.present(device.rowid)).k0, "x");
      const some = await s.props.apply(device.rowid, more);
      assertEquals(some.applied.map((c) => c.k), ["k0"]);
      assertEquals(some.rejected.map((c) => c.k), ["extra"]);
      const freed = await s.props.applyAll(device.rowid, [
        { k: "k1", v: null, at: 3 },
        { k: "extra", v: "z", at: 3 },
      ]);
      assertEquals([freed.rejected, freed.applied.length], [null, 2]);
      assertEquals(Object.keys(await s.props.present(device.rowid)).length, MAX_PROPS);
    },
  },
  {
    name: "events: append, query by id, time, device and type, limit, prune",
    async run(place) {
      await using s = await place.open();
      const { accountId } = await withDevice(s);
      const e1 = await s.events.append({
        accountId,
        device: "pi-1",
        type: "state",
        data: { state: "online" },
        at: 10,
      });
      const e2 = await s.events.append({
        accountId,
        device: "pi-2",
        type: "props",
        data: { keys: ["a"] },
        at: 20,
      });
      await s.events.append({ accountId, device: "pi-1", type: "renamed", data: {}, at: 30 });
      ok(e2.id > e1.id);
      const q = (extra: object) =>
        s.events.query({ accountId, ...extra }).then((r) => r.map((e) => e.at));
      assertEquals(await q({}), [10, 20, 30]);
      assertEquals(await q({ afterId: e1.id }), [20, 30]);
      assertEquals(await q({ since: 20 }), [20, 30]);
      assertEquals(await q({ device: "pi-1" }), [10, 30]);
      assertEquals(await q({ types: ["state", "props"] }), [10, 20]);
      assertEquals(await q({ limit: 1 }), [10]);
      assertEquals((await s.events.query({ accountId, device: "pi-2" }))[0].data, { keys: ["a"] });
      assertEquals(await s.events.prune(25), 2);
      assertEquals(await q({}), [30]);
    },
  },
  {
    name: "shares: add, get, involving, received (by owner), remove only by the owner",
    async run(place) {
      await using s = await place.open();
      const { accountId: acme } = await withDevice(s);
      await s.accounts.create("beta");
      await s.accounts.create("gamma");
      const beta = (await s.accounts.find("beta"))!;
      const gamma = (await s.accounts.find("gamma"))!;
      const one = await s.shares.add({
        ownerId: acme,
        granteeId: beta,
        device: "pi-1",
        filters: [],
        services: ["ssh"],
        createdBy: "key-1",
      }, 500);
      assertEquals(
        [one.owner, one.grantee, one.device, one.services, one.createdAt],
        ["acme", "beta", "pi-1", ["ssh"], 500],
      );
      const two = await s.shares.add({
        ownerId: gamma,
        granteeId: beta,
        device: null,
        filters: ["site=zurich"],
        services: [],
        createdBy: "key-2",
      });
      assertEquals((await s.shares.get(two.id))!.filters, ["site=zurich"]);
      assertEquals((await s.shares.received(beta)).map((x) => x.id), [one.id, two.id]);
      assertEquals((await s.shares.received(beta, gamma)).map((x) => x.id), [two.id]);
      assertEquals((await s.shares.involving(acme)).map((x) => x.id), [one.id]);
      assertEquals(await s.shares.remove(one.id, beta), false, "only the owner removes a share");
      assertEquals(await s.shares.remove(one.id, acme), true);
      assertEquals(await s.shares.get(one.id), null);
    },
  },
  ...CASES_MORE,
  ...DASHBOARD_CASES,
];

/** Runs every case as one step against fresh places from `fresh`. */
async function runCases(t: Deno.TestContext, fresh: () => Promise<Place>): Promise<void> {
  for (const c of CASES) {
    await t.step(c.name, async () => {
      await using place = await fresh();
      await c.run(place);
    });
  }
}

Deno.test("store cases on SQLite", async (t) => {
  await runCases(t, sqlitePlace);
});

if (!havePostgres()) console.log(SKIP_SENTENCE);

Deno.test({
  name: "store cases on PostgreSQL",
  ignore: !havePostgres(),
  async fn(t) {
    await using pg = await startPostgres();
    const dir = await Deno.makeTempDir({ prefix: "od-store-pw-" });
    try {
      const file = await passwordFile(dir, pg.password);
      await runCases(t, () => pgPlace(pg, file));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("SQLite change feed sees what od admin, another process, writes", async () => {
  await using place = await sqlitePlace();
  await using s = await place.open();
  using w = await watch(s);
  const dir = s.location;
  const added = await od(["admin", "--data", dir, "account", "add", "acme", "--json"]);
  assertEquals(added.code, 0, added.stderr);
  const key = (await s.accounts.findKey(JSON.parse(added.stdout).clientKey))!;
  const revoked = await od(["admin", "--data", dir, "key", "revoke", key.id]);
  assertEquals(revoked.code, 0, revoked.stderr);
  const ofKey = () => w.changes.filter((x) => x.kind === "keys" && x.keyId === key.id);
  const change = await w.until(
    (c) => c.kind === "keys" && c.keyId === key.id && ofKey().length === 2 ? c : undefined,
    5000,
  );
  assertEquals(change, { kind: "keys", accountId: key.accountId, keyId: key.id });
  assertEquals((await s.accounts.keyById(key.id))!.revokedAt !== null, true);
});
