/**
 * The second half of the store cases (tests/store_test.ts runs both halves on both backends):
 * audit, paging and filters, presence, relays and device links, the change feed across store
 * instances, transactions.
 */
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { hashSecret } from "../src/store/hash.ts";
import { parseFilters } from "../src/protocol/filter.ts";
import { type AuditEntry, ConflictError, HEARTBEAT_MS, type Store } from "../src/store/types.ts";
import { type Case, watch, withDevice } from "./_stores.ts";

function entry(over: Partial<AuditEntry>): AuditEntry {
  return {
    at: 1000,
    accountId: null,
    ownerId: null,
    keyId: null,
    ip: "192.0.2.1",
    action: "tunnel",
    device: null,
    service: null,
    result: "ok",
    reason: "",
    durationMs: null,
    bytesUp: null,
    bytesDown: null,
    count: 1,
    ...over,
  };
}

async function enrolMany(
  s: Store,
  accountId: number,
  names: string[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of names) {
    const { device } = await s.devices.enroll({
      accountId,
      name,
      credentialHash: hashSecret(`cred-${accountId}-${name}`),
      enrolledBy: "k",
    });
    out.set(name, device.rowid);
  }
  return out;
}

/** Every id of an account's devices matching `filters`, read in pages of `limit`. */
async function allIds(
  s: Store,
  accountId: number,
  filters: string[] = [],
  limit = 1000,
  now?: number,
) {
  const names: string[] = [];
  let after: string | undefined;
  do {
    const page = await s.devices.list({
      accountId,
      after,
      limit,
      filters: parseFilters(filters),
      now,
    });
    names.push(...page.devices.map((d) => d.name));
    after = page.next ?? undefined;
  } while (after !== undefined);
  return names;
}

/** The cases; see tests/store_test.ts. */
export const CASES_MORE: Case[] = [
  {
    name: "audit: batched append, query by account or owner, device, time, page, prune",
    async run(place) {
      await using s = await place.open();
      const { accountId: acme } = await withDevice(s);
      await s.accounts.create("beta");
      const beta = (await s.accounts.find("beta"))!;
      await s.audit.append([
        entry({
          at: 10,
          accountId: acme,
          ownerId: acme,
          device: "pi-1",
          service: "ssh",
          bytesUp: 5,
        }),
        entry({
          at: 20,
          accountId: beta,
          ownerId: acme,
          device: "pi-1",
          result: "refused",
          reason: "no share",
        }),
        entry({
          at: 30,
          accountId: null,
          ip: "198.51.100.7",
          action: "auth",
          result: "throttled",
          count: 40,
        }),
      ]);
      const all = await s.audit.query({});
      assertEquals(all.map((r) => [r.at, r.account, r.owner, r.count]), [
        [10, "acme", "acme", 1],
        [20, "beta", "acme", 1],
        [30, null, null, 40],
      ]);
      assertEquals(all[0].bytesUp, 5);
      assertEquals((await s.audit.query({ accountId: beta })).map((r) => r.at), [20]);
      assertEquals((await s.audit.query({ accountId: acme })).map((r) => r.at), [10, 20]);
      assertEquals((await s.audit.query({ device: "pi-1", since: 15 })).map((r) => r.at), [20]);
      assertEquals(await s.audit.query({ device: "pi-1\0" }), []);
      assertEquals((await s.audit.query({ afterId: all[0].id, limit: 1 })).map((r) => r.at), [20]);
      await s.accounts.remove("beta");
      assertEquals((await s.audit.query({}))[1].accountId, null, "rows outlive their account");
      assertEquals(await s.audit.prune(25), 2);
      assertEquals((await s.audit.query({})).length, 1);
    },
  },
  {
    name: "paging: pages by device id in byte order, next until the end, limits clamped",
    async run(place) {
      await using s = await place.open();
      const { accountId } = await withDevice(s);
      const names = [
        "a-b",
        "a0",
        "ab",
        "zz9",
        ...Array.from({ length: 21 }, (_, i) => `d${String(i).padStart(2, "0")}`),
      ];
      await enrolMany(s, accountId, names);
      const expected = [...names, "pi-1"].sort(); // JS sorts by UTF-16 code units: bytes here
      assertEquals(await allIds(s, accountId, [], 10), expected);
      const first = await s.devices.list({ accountId, limit: 10 });
      assertEquals([first.devices.length, first.next], [10, expected[9]]);
      const last = await s.devices.list({ accountId, after: expected[19], limit: 10 });
      assertEquals([last.devices.length, last.next], [6, null]);
      assertEquals((await s.devices.list({ accountId, limit: 0 })).devices.length, 1);
      assertEquals((await s.devices.list({ accountId: accountId + 999 })).devices, []);
    },
  },
  {
    name: "filters in SQL: user properties and on: properties, as od list applies them",
    async run(place) {
      await using s = await place.open();
      const { accountId, device } = await withDevice(s);
      const ids = await enrolMany(s, accountId, ["pi-2", "pi-3"]);
      await s.props.apply(device.rowid, [{ k: "site", v: "zurich", at: 1 }, {
        k: "group",
        v: "web",
        at: 1,
      }]);
      await s.props.apply(ids.get("pi-2")!, [{ k: "site", v: "basel", at: 1 }]);
      await s.props.apply(ids.get("pi-3")!, [{ k: "site", v: "zurich", at: 1 }, {
        k: "site",
        v: null,
        at: 2,
      }]);
      await s.devices.setInfo(ids.get("pi-2")!, {
        services: ["ssh"],
        hostKeys: [],
        version: "0.2.0",
      });
      await s.devices.markSeenMany([{ rowid: device.rowid, at: 5, ip: "192.0.2.9" }]);
      const now = 1_000_000;
      await s.relays.heartbeat({ id: "relay-a", meshUrl: "http://a" }, now);
      await s.relays.claimLink(ids.get("pi-3")!, "relay-a", now - 7);
      const cases: [string[], string[]][] = [
        [["site=zurich"], ["pi-1"]],
        [["site!=zurich"], ["pi-2", "pi-3"]],
        [["site"], ["pi-1", "pi-2"]],
        [["site", "group!=web"], ["pi-2"]],
        [["on:version=0.2.0"], ["pi-2"]],
        [["on:version!=0.2.0"], ["pi-1", "pi-3"]],
        [["on:ip=192.0.2.9"], ["pi-1"]],
        [["on:parent"], []],
        [["on:state=online"], ["pi-3"]],
        [["on:state=offline"], ["pi-1", "pi-2"]],
        [["on:state"], ["pi-1", "pi-2", "pi-3"]],
        [[`on:since=${new Date(now - 7).toISOString()}`], ["pi-3"]],
        [["on:lastSeen"], ["pi-1", "pi-3"]],
        [[`on:lastSeen=${new Date(5).toISOString()}`], ["pi-1"]],
        [[`on:createdAt!=${new Date(0).toISOString()}`], ["pi-1", "pi-2", "pi-3"]],
        [["on:nonsense"], []],
        // Names that objects inherit are property names like any other, never SQL.
        [["constructor"], []],
        [["toString!=x"], ["pi-1", "pi-2", "pi-3"]],
        [["__proto__=x"], []],
        // A NUL is in no stored value (PostgreSQL's text cannot hold one at all).
        [["site=zur\0ich"], []],
        [["site!=zur\0ich"], ["pi-1", "pi-2", "pi-3"]],
      ];
      for (const [filters, want] of cases) {
        assertEquals(await allIds(s, accountId, filters, 1000, now), want, filters.join(" "));
      }
      // The relay's heartbeat goes stale: its device is offline without anyone reclaiming it.
      const later = now + 3 * HEARTBEAT_MS + 1;
      assertEquals(await allIds(s, accountId, ["on:state=online"], 1000, later), []);
    },
  },
  {
    name: "presence: markSeenMany updates many devices in one call; a batch merges per device",
    async run(place) {
      await using s = await place.open();
      const { accountId } = await withDevice(s);
      const names = Array.from({ length: 300 }, (_, i) => `dev-${i}`);
      const ids = await enrolMany(s, accountId, names);
      await s.devices.markSeenMany(
        names.map((n, i) => ({ rowid: ids.get(n)!, at: 1000 + i, version: "0.3.0" })),
      );
      const id0 = ids.get("dev-0")!;
      await s.devices.markSeenMany([
        { rowid: id0, at: 5000, ip: "192.0.2.1" },
        { rowid: id0, at: 6000 }, // the disconnect, later in the same batch: keeps the address
      ]);
      await s.devices.markSeenMany([]);
      const d0 = (await s.devices.byRowid(id0))!;
      assertEquals([d0.lastSeen, d0.lastIp, d0.version], [6000, "192.0.2.1", "0.3.0"]);
      const d299 = (await s.devices.get(accountId, "dev-299"))!;
      assertEquals([d299.lastSeen, d299.version], [1299, "0.3.0"]);
    },
  },
  {
    name: "relays: link generations order two links of a device; reclaim after 3 heartbeats",
    async run(place) {
      await using s = await place.open();
      const { device } = await withDevice(s);
      const t0 = 1_000_000;
      await s.relays.heartbeat({ id: "relay-a", meshUrl: "http://a:1" }, t0);
      await s.relays.heartbeat({ id: "relay-b", meshUrl: "http://b:1" }, t0);
      const genA = await s.relays.claimLink(device.rowid, "relay-a", t0);
      const genB = await s.relays.claimLink(device.rowid, "relay-b", t0 + 1);
      ok(genB > genA);
      assertEquals(
        await s.relays.releaseLink(device.rowid, "relay-a", genA),
        false,
        "a stale link",
      );
      assertEquals((await s.relays.links([device.rowid])).get(device.rowid)!.relayId, "relay-b");
      // relay-a keeps beating, relay-b stops.
      const later = t0 + 3 * HEARTBEAT_MS + 1;
      await s.relays.heartbeat({ id: "relay-a", meshUrl: "http://a:2" }, later);
      const reclaimed = await s.relays.reclaim(later);
      assertEquals(reclaimed, { relays: ["relay-b"], devices: [device.rowid] });
      assertEquals((await s.relays.list()).map((r) => [r.id, r.meshUrl, r.startedAt]), [[
        "relay-a",
        "http://a:2",
        t0,
      ]]);
      const link = (await s.relays.links([device.rowid])).get(device.rowid)!;
      assertEquals([link.relayId, link.generation], [null, genB]);
      assertEquals(
        (await s.devices.byRowid(device.rowid))!.lastSeen,
        t0,
        "last seen at its last heartbeat",
      );
      assertEquals(await s.relays.reclaim(later), { relays: [], devices: [] });
      const genA2 = await s.relays.claimLink(device.rowid, "relay-a", later);
      ok(genA2 > genB, "generations keep growing after a release");
      assertEquals(await s.relays.leave("relay-a", later + 5), 1);
      assertEquals((await s.relays.links([device.rowid])).get(device.rowid)!.relayId, null);
      assertEquals((await s.devices.byRowid(device.rowid))!.lastSeen, later + 5);
    },
  },
  {
    name:
      "change feed: another instance's keys, shares, devices, props, events and links arrive within a second",
    async run(place) {
      await using listener = await place.open();
      await using writer = await place.open();
      using w = await watch(listener);
      const { accountId, device } = await withDevice(writer);
      const key = await writer.accounts.addKey("acme", "full");
      await writer.accounts.revokeKey(key.id);
      await w.until((c) => (c.kind === "keys" && c.keyId === key.id ? true : undefined));
      await writer.devices.rename(device.rowid, accountId, "kitchen");
      await w.until((c) => (c.kind === "devices" && c.rowid === device.rowid ? true : undefined));
      await writer.props.apply(device.rowid, [{ k: "site", v: "x", at: 1 }]);
      const p = await w.until((c) => (c.kind === "props" ? c : undefined));
      assertEquals(p, { kind: "props", accountId, rowid: device.rowid, key: "site" });
      await writer.accounts.create("beta");
      const share = await writer.shares.add({
        ownerId: accountId,
        granteeId: (await writer.accounts.find("beta"))!,
        device: null,
        filters: [],
        services: [],
        createdBy: "k",
      });
      await writer.shares.remove(share.id, accountId);
      const shareChanges = () => w.changes.filter((c) => c.kind === "shares").length;
      await w.until((c) => (c.kind === "shares" && shareChanges() === 2 ? true : undefined));
      const ev = await writer.events.append({
        accountId,
        device: "kitchen",
        type: "state",
        data: {},
        at: 1,
      });
      await w.until((c) => (c.kind === "events" && c.eventId === ev.id ? true : undefined));
      await writer.relays.heartbeat({ id: "relay-b", meshUrl: "http://b" });
      const gen = await writer.relays.claimLink(device.rowid, "relay-b");
      const l = await w.until((c) => (c.kind === "links" ? c : undefined));
      assertEquals(l, { kind: "links", rowid: device.rowid, relayId: "relay-b", generation: gen });
      // Removing the account cascades: its device and its keys are reported gone too.
      await writer.accounts.remove("acme");
      const ofDevice = () =>
        w.changes.filter((c) => c.kind === "devices" && c.rowid === device.rowid);
      await w.until(() => (ofDevice().length === 3 ? true : undefined)); // enrolled, renamed, removed
      const keyIds = w.changes.flatMap((c) => (c.kind === "keys" ? [c.keyId] : []));
      assertEquals(keyIds.filter((id) => id === key.id).length, 3); // added, revoked, removed
      ok(!w.changes.some((c) => c.kind === "resync"), "no resync without a reconnect");
    },
  },
  {
    name: "tx: all or nothing, and nested operations join the transaction",
    async run(place) {
      await using s = await place.open();
      const { accountId } = await withDevice(s);
      await rejects(
        s.tx(async (t) => {
          const { device } = await t.devices.enroll({
            accountId,
            name: "tmp",
            credentialHash: hashSecret("t"),
            enrolledBy: "k",
          });
          await t.props.apply(device.rowid, [{ k: "a", v: "b", at: 1 }]);
          await t.devices.rename(device.rowid, accountId, "pi-1"); // taken: the whole tx fails
        }),
        ConflictError,
      );
      assertEquals(await s.devices.get(accountId, "tmp"), null);
      assertEquals(await s.devices.count(), 1);
      const renamed = await s.tx(async (t) => {
        const { device } = await t.devices.enroll({
          accountId,
          name: "tmp",
          credentialHash: hashSecret("t"),
          enrolledBy: "k",
        });
        await t.devices.rename(device.rowid, accountId, "kept");
        return (await t.devices.byRowid(device.rowid))!.name;
      });
      assertEquals(renamed, "kept");
      // A statement outside the transaction waits for it (or, on PostgreSQL, does not see it).
      let inside = false;
      const tx = s.tx(async (t) => {
        await t.accounts.create("beta");
        inside = true;
        await new Promise((r) => setTimeout(r, 50));
        return (await t.accounts.list()).length;
      });
      while (!inside) await new Promise((r) => setTimeout(r, 1));
      const outside = (await s.accounts.list()).map((a) => a.name);
      assertEquals(await tx, 2);
      ok(outside.length === 1 || outside.length === 2, String(outside));
      if (place.kind === "sqlite") assertEquals(outside, ["acme", "beta"]);
      assertEquals(await s.integrity(), "ok");
    },
  },
];
