/**
 * Store cases for the dashboard, run by tests/store_test.ts on SQLite and PostgreSQL: sessions
 * (schema migration 6) and the audit log
 * read newest first with row cursors.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { hashSecret } from "../src/store/hash.ts";
import { MAX_SESSIONS_PER_KEY } from "../src/store/sessions.ts";
import type { AuditEntry } from "../src/store/types.ts";
import type { Case } from "./_stores.ts";

function row(at: number, device: string): AuditEntry {
  return {
    at,
    accountId: null,
    ownerId: null,
    keyId: null,
    ip: "192.0.2.1",
    action: "tunnel",
    device,
    service: null,
    result: "ok",
    reason: "",
    durationMs: null,
    bytesUp: null,
    bytesDown: null,
    count: 1,
  };
}

/** The dashboard's cases every backend must pass. */
export const DASHBOARD_CASES: Case[] = [
  {
    name: "audit: newest first, pages before and after a row id, with the other filters",
    async run(place) {
      await using s = await place.open();
      await s.audit.append([10, 20, 30, 40, 50].map((at) => row(at, at === 30 ? "b" : "a")));
      const ids = (await s.audit.query({})).map((r) => r.id);
      const ats = (rows: { at: number }[]) => rows.map((r) => r.at);
      assertEquals(ats(await s.audit.query({ newest: true, limit: 2 })), [50, 40]);
      assertEquals(ats(await s.audit.query({ newest: true, beforeId: ids[3], limit: 2 })), [
        30,
        20,
      ]);
      assertEquals(ats(await s.audit.query({ afterId: ids[3] })), [50]);
      assertEquals(ats(await s.audit.query({ newest: true, device: "a", since: 20 })), [
        50,
        40,
        20,
      ]);
      assertEquals(ats(await s.audit.query({ beforeId: ids[0] })), []);
    },
  },
  {
    name: "sessions: found with their key by hash, revoked with it, capped per key, pruned",
    async run(place) {
      await using s = await place.open();
      const { clientKey } = await s.accounts.create("acme");
      const key = (await s.accounts.findKey(clientKey))!;
      await s.sessions.create(hashSecret("one"), key.id, 1000, 5000);
      const found = (await s.sessions.find(hashSecret("one")))!;
      assertEquals([found.createdAt, found.expiresAt, found.key.id, found.key.account], [
        1000,
        5000,
        key.id,
        "acme",
      ]);
      assertEquals(found.key.role, "client");
      assertEquals(found.key.revokedAt, null);
      assertEquals(await s.sessions.find(hashSecret("two")), null);
      // The cap: the oldest sessions of the key end first.
      for (let i = 0; i < MAX_SESSIONS_PER_KEY; i++) {
        await s.sessions.create(hashSecret(`s${i}`), key.id, 2000 + i, 9000);
      }
      assertEquals(await s.sessions.find(hashSecret("one")), null);
      ok(await s.sessions.find(hashSecret("s0")));
      // Pruning: expired ones, and every session of a revoked key.
      assertEquals(await s.sessions.prune(8999), 0);
      await s.accounts.revokeKey(key.id, 3000);
      assertEquals((await s.sessions.find(hashSecret("s1")))!.key.revokedAt, 3000);
      assertEquals(await s.sessions.prune(1), MAX_SESSIONS_PER_KEY);
      const other = await s.accounts.addKey("acme", "full");
      await s.sessions.create(hashSecret("f"), other.id, 1000, 2000);
      assertEquals(await s.sessions.remove(hashSecret("f")), true);
      assertEquals(await s.sessions.remove(hashSecret("f")), false);
      await s.sessions.create(hashSecret("g"), other.id, 1000, 2000);
      assertEquals(await s.sessions.prune(2000), 1);
      // Removing the account takes its keys' sessions along.
      await s.sessions.create(hashSecret("h"), other.id, 1000, 9000);
      await s.accounts.remove("acme");
      assertEquals(await s.sessions.find(hashSecret("h")), null);
    },
  },
];
