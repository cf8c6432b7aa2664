/**
 * Relays and device links over an Executor (both dialects). Each relay heartbeats its row; each
 * device link is one row naming the relay that holds it and a generation that grows with every
 * claim, so of two links of one device the newest is known without comparing clocks. A relay
 * whose heartbeat is DEAD_AFTER_BEATS intervals old is dead: listings show its devices offline at
 * once, and `reclaim` clears its links and deletes its row.
 */
import {
  DEAD_AFTER_BEATS,
  type DeviceLink,
  type Reclaimed,
  type RelayRecord,
  type RelayStore,
} from "../types.ts";
import { type Executor, idSet } from "./executor.ts";

/** RelayStore on an Executor with the store's heartbeat interval. */
export class RelayQueries implements RelayStore {
  readonly #e: Executor;
  readonly #heartbeatMs: number;
  constructor(e: Executor, heartbeatMs: number) {
    this.#e = e;
    this.#heartbeatMs = heartbeatMs;
  }

  /** Creates or refreshes a relay's row. */
  async heartbeat(relay: { id: string; meshUrl: string }, now = Date.now()): Promise<void> {
    await this.#e.run(
      `INSERT INTO relays (id, mesh_url, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET mesh_url = excluded.mesh_url,
       heartbeat_at = excluded.heartbeat_at`,
      [relay.id, relay.meshUrl, now, now],
    );
  }

  /** Every relay row, by id. */
  async list(): Promise<RelayRecord[]> {
    const rows = await this.#e.all<
      { id: string; mesh_url: string; started_at: number; heartbeat_at: number }
    >("SELECT id, mesh_url, started_at, heartbeat_at FROM relays ORDER BY id");
    return rows.map((r) => ({
      id: r.id,
      meshUrl: r.mesh_url,
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
    }));
  }

  /** Records that `relayId` holds the device's link; the new generation, 0 if no such device. */
  async claimLink(rowid: number, relayId: string, now = Date.now()): Promise<number> {
    // A device removed meanwhile gets no link (rather than a foreign-key error that would fail
    // the claims batched with it).
    const row = await this.#e.get<{ generation: number }>(
      `INSERT INTO device_links (device_id, relay_id, generation, since)
       SELECT ?, ?, 1, ? WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?)
       ON CONFLICT (device_id) DO UPDATE SET relay_id = excluded.relay_id,
       generation = device_links.generation + 1, since = excluded.since RETURNING generation`,
      [rowid, relayId, now, rowid],
    );
    return row?.generation ?? 0;
  }

  /** Clears the link if this relay still holds this generation of it. */
  async releaseLink(rowid: number, relayId: string, generation: number): Promise<boolean> {
    return await this.#e.run(
      `UPDATE device_links SET relay_id = NULL
       WHERE device_id = ? AND relay_id = ? AND generation = ?`,
      [rowid, relayId, generation],
    ) > 0;
  }

  /** The links of some devices, by row id. */
  async links(rowids: readonly number[]): Promise<Map<number, DeviceLink>> {
    const ids = idSet(this.#e, rowids);
    const rows = await this.#e.all<
      { device_id: number; relay_id: string | null; generation: number; since: number }
    >(
      `SELECT device_id, relay_id, generation, since FROM device_links
       WHERE device_id IN ${ids.sql}`,
      [ids.param],
    );
    return new Map(rows.map((r) => [r.device_id, {
      rowid: r.device_id,
      relayId: r.relay_id,
      generation: r.generation,
      since: r.since,
    }]));
  }

  /** Reclaims relays whose heartbeat stopped DEAD_AFTER_BEATS intervals ago. */
  reclaim(now = Date.now()): Promise<Reclaimed> {
    const deadline = now - DEAD_AFTER_BEATS * this.#heartbeatMs;
    return this.#e.tx(async (e) => {
      const dead = await e.all<{ id: string; heartbeat_at: number }>(
        "SELECT id, heartbeat_at FROM relays WHERE heartbeat_at < ? ORDER BY id",
        [deadline],
      );
      const devices: number[] = [];
      for (const r of dead) devices.push(...await release(e, r.id, r.heartbeat_at));
      return { relays: dead.map((r) => r.id), devices };
    });
  }

  /** How many device links each relay holds. */
  async heldCounts(): Promise<Map<string, number>> {
    const rows = await this.#e.all<{ relay_id: string; n: number }>(
      `SELECT relay_id, count(*) AS n FROM device_links WHERE relay_id IS NOT NULL
       GROUP BY relay_id`,
    );
    return new Map(rows.map((r) => [r.relay_id, Number(r.n)]));
  }

  /** A relay leaving cleanly: releases its links and deletes its row. */
  leave(relayId: string, now = Date.now()): Promise<number> {
    return this.#e.tx(async (e) => (await release(e, relayId, now)).length);
  }
}

/** Clears a relay's links (its devices last seen at `seenAt`) and deletes its row. */
async function release(e: Executor, relayId: string, seenAt: number): Promise<number[]> {
  const held = await e.all<{ device_id: number }>(
    "SELECT device_id FROM device_links WHERE relay_id = ? ORDER BY device_id",
    [relayId],
  );
  await e.run(
    `UPDATE devices SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < ? THEN ?
     ELSE last_seen END WHERE id IN (SELECT device_id FROM device_links WHERE relay_id = ?)`,
    [seenAt, seenAt, relayId],
  );
  await e.run("UPDATE device_links SET relay_id = NULL WHERE relay_id = ?", [relayId]);
  await e.run("DELETE FROM relays WHERE id = ?", [relayId]);
  return held.map((r) => r.device_id);
}
