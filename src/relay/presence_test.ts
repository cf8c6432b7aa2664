import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { openStore } from "../store/open.ts";
import { setTransactionObserver } from "../store/observe.ts";
import { hashSecret } from "../store/hash.ts";
import { generateCredential } from "../protocol/keys.ts";
import { PresenceWriter } from "./presence.ts";
import { EventBus } from "./events.ts";

Deno.test("presence, link claims of 1,000 devices and their state events take one commit each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "od-presence-" });
  const store = await openStore({ dataDir: dir });
  try {
    await store.accounts.create("acme");
    const accountId = (await store.accounts.find("acme"))!;
    const rows: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const { device } = await store.devices.enroll({
        accountId,
        name: `d-${i}`,
        credentialHash: hashSecret(generateCredential()),
        enrolledBy: "test",
      });
      rows.push(device.rowid);
    }
    let commits = 0;
    setTransactionObserver(() => commits++);
    const presence = new PresenceWriter(store, { id: "r1", meshUrl: "" });
    const events = new EventBus(store);
    const seen: number[] = [];
    events.subscribe({ accountId, push: (e) => seen.push(e.id) });
    const claims: Promise<number>[] = [];
    for (const [i, rowid] of rows.entries()) {
      presence.seen(rowid, { at: 1000 + i, ip: "192.0.2.1" });
      presence.info(rowid, { version: "t", services: ["ssh"], hostKeys: [], hostname: "h" });
      claims.push(presence.claim(rowid));
      events.emitSoon(accountId, `d-${i}`, "state", { state: "online" });
    }
    await presence.flush();
    await events.flush();
    setTransactionObserver(null);
    assertEquals(commits, 2);
    assertEquals(new Set(await Promise.all(claims)), new Set([1]));
    assertEquals(seen.length, 1000);
    assertEquals(seen, [...seen].sort((a, b) => a - b));
    const d = (await store.devices.get(accountId, "d-999"))!;
    assertEquals([d.lastSeen, d.lastIp, d.services], [1999, "192.0.2.1", ["ssh"]]);
    const links = await store.relays.links([rows[0], rows[999]]);
    assertEquals([...links.values()].map((l) => [l.relayId, l.generation]), [["r1", 1], ["r1", 1]]);
    presence.release(rows[0], 1);
    await presence.flush();
    assertEquals((await store.relays.links([rows[0]])).get(rows[0])!.relayId, null);
    presence.close();
    events.close();
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
