import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { Store } from "../store/store.ts";
import { setTransactionObserver } from "../store/db.ts";
import { hashSecret } from "../store/hash.ts";
import { generateCredential } from "../protocol/keys.ts";
import { PresenceWriter } from "./presence.ts";
import { EventBus } from "./events.ts";

Deno.test("presence of 1,000 devices and their state events take one commit each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "od-presence-" });
  const store = Store.open(dir);
  try {
    store.accounts.create("acme");
    const accountId = store.accounts.find("acme")!;
    const rows: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const { device } = store.devices.enroll({
        accountId,
        name: `d-${i}`,
        credentialHash: hashSecret(generateCredential()),
        enrolledBy: "test",
      });
      rows.push(device.rowid);
    }
    let commits = 0;
    setTransactionObserver(() => commits++);
    const presence = new PresenceWriter(store);
    const events = new EventBus(store);
    const seen: number[] = [];
    events.subscribe({ accountId, push: (e) => seen.push(e.id) });
    for (const [i, rowid] of rows.entries()) {
      presence.seen(rowid, { at: 1000 + i, ip: "192.0.2.1" });
      presence.info(rowid, { version: "t", services: ["ssh"], hostKeys: [], hostname: "h" });
      events.emitSoon(accountId, `d-${i}`, "state", { state: "online" });
    }
    presence.flush();
    events.flush();
    setTransactionObserver(null);
    assertEquals(commits, 2);
    assertEquals(seen.length, 1000);
    assertEquals(seen, [...seen].sort((a, b) => a - b));
    const d = store.devices.get(accountId, "d-999")!;
    assertEquals([d.lastSeen, d.lastIp, d.services], [1999, "192.0.2.1", ["ssh"]]);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
