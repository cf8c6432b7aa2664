/**
 * Presence writes in batches: when devices connect, disconnect and report themselves, the relay
 * notes it here, and the notes are written together a moment later in one transaction: when
 * each device was seen, what it reported, and which device links this relay now holds or let
 * go (claims and releases, src/store/queries/relays.ts). A fleet of 10,000 devices returning
 * after a restart thus costs a few commits a second instead of one per device, and the periodic
 * "still seen" refresh of every connected device is one commit. Nothing is scheduled while
 * nothing is pending. When the store is down, the notes stay and are written when it is back.
 */
import type { Store } from "../store/types.ts";
import type { DeviceInfo } from "../protocol/control.ts";
import { log } from "../shared/log.ts";

/** How long a note waits for others: on:lastSeen and reports may be this stale after a crash. */
const FLUSH_MS = 250;
/**
 * How long a link claim waits on a store other relays share: they see a device that just
 * connected here once its claim is written, so it goes sooner (500 devices a second still share
 * a commit in tens). On SQLite, the only relay knows its devices from its own sessions.
 */
const CLAIM_MS = 20;
const RETRY_MS = 1_000; // a failed write is tried again this much later

interface Claim {
  resolve(generation: number): void;
  reject(err: unknown): void;
}

/** Pending presence notes of connected and departed devices. */
export class PresenceWriter {
  #store: Store;
  #relay: { readonly id: string; readonly meshUrl: string };
  #seen = new Map<number, { at: number; ip?: string }>();
  #infos = new Map<number, DeviceInfo>();
  #claims = new Map<number, Claim[]>();
  #releases = new Map<number, number>(); // row id → generation let go
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dueAt = Infinity;
  #flushing: Promise<void> | null = null;

  /** `relay` is this relay's id and mesh URL, whose row claims refer to. */
  constructor(store: Store, relay: { readonly id: string; readonly meshUrl: string }) {
    this.#store = store;
    this.#relay = relay;
  }

  /** Notes that a device was seen at `at` (from `ip`, when it connected). */
  seen(rowid: number, seen: { at: number; ip?: string }): void {
    const ip = seen.ip ?? this.#seen.get(rowid)?.ip; // keep a pending connect's address
    this.#seen.set(rowid, ip === undefined ? { at: seen.at } : { at: seen.at, ip });
    this.#schedule(FLUSH_MS);
  }

  /** Notes what a daemon reported about itself. */
  info(rowid: number, info: DeviceInfo): void {
    this.#infos.set(rowid, info);
    this.#schedule(FLUSH_MS);
  }

  /**
   * Records that this relay holds the device's link; resolves to the link's generation (0 if
   * the device was removed meanwhile).
   */
  claim(rowid: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const claims = this.#claims.get(rowid) ?? [];
      claims.push({ resolve, reject });
      this.#claims.set(rowid, claims);
      this.#schedule(this.#store.kind === "postgres" ? CLAIM_MS : FLUSH_MS);
    });
  }

  /** Notes that this relay no longer holds generation `generation` of the device's link. */
  release(rowid: number, generation: number): void {
    this.#releases.set(rowid, generation);
    this.#schedule(FLUSH_MS);
  }

  /** When a note not yet written says the device was last seen, if there is one. */
  pendingSeen(rowid: number): number | undefined {
    return this.#seen.get(rowid)?.at;
  }

  /** Number of notes not yet written. */
  get pending(): number {
    return this.#seen.size + this.#infos.size + this.#claims.size + this.#releases.size;
  }

  #schedule(ms: number): void {
    const due = Date.now() + ms;
    if (this.#timer !== undefined && this.#dueAt <= due) return;
    clearTimeout(this.#timer);
    this.#dueAt = due;
    this.#timer = setTimeout(() => this.flush(), ms);
  }

  /** Writes everything pending in one transaction (one flush at a time). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dueAt = Infinity;
    this.#flushing ??= this.#write().finally(() => {
      this.#flushing = null;
      if (this.pending > 0 && this.#timer === undefined) this.#schedule(FLUSH_MS);
    });
    return this.#flushing;
  }

  async #write(): Promise<void> {
    if (this.pending === 0) return;
    const seen = this.#seen;
    const infos = this.#infos;
    const claims = this.#claims;
    const releases = this.#releases;
    this.#seen = new Map();
    this.#infos = new Map();
    this.#claims = new Map();
    this.#releases = new Map();
    const relay = this.#relay;
    let generations: [number, number][];
    try {
      // Issued together: PostgreSQL pipelines them on the transaction's connection.
      generations = await this.#store.tx(async (t) => {
        // Claims refer to this relay's row, which a relay that was cut off may have lost.
        if (claims.size > 0) await t.relays.heartbeat({ id: relay.id, meshUrl: relay.meshUrl });
        const [, , , claimed] = await Promise.all([
          t.devices.markSeenMany([...seen].map(([rowid, s]) => ({ rowid, ...s }))),
          Promise.all([...infos].map(([rowid, info]) => t.devices.setInfo(rowid, info))),
          Promise.all(
            [...releases].map(([rowid, gen]) => t.relays.releaseLink(rowid, relay.id, gen)),
          ),
          Promise.all(
            [...claims.keys()].map(async (rowid) =>
              [rowid, await t.relays.claimLink(rowid, relay.id)] as [number, number]
            ),
          ),
        ]);
        return claimed;
      });
    } catch (err) {
      log.error("cannot write device presence", { devices: this.pending, error: err });
      this.#requeue(seen, infos, claims, releases);
      clearTimeout(this.#timer);
      this.#dueAt = Date.now() + RETRY_MS;
      this.#timer = setTimeout(() => this.flush(), RETRY_MS);
      return;
    }
    for (const [rowid, generation] of generations) {
      for (const c of claims.get(rowid)!) c.resolve(generation);
    }
  }

  /** Puts notes that could not be written back, newer notes taking precedence. */
  #requeue(
    seen: Map<number, { at: number; ip?: string }>,
    infos: Map<number, DeviceInfo>,
    claims: Map<number, Claim[]>,
    releases: Map<number, number>,
  ): void {
    for (const [rowid, s] of seen) if (!this.#seen.has(rowid)) this.#seen.set(rowid, s);
    for (const [rowid, i] of infos) if (!this.#infos.has(rowid)) this.#infos.set(rowid, i);
    for (const [rowid, g] of releases) if (!this.#releases.has(rowid)) this.#releases.set(rowid, g);
    for (const [rowid, c] of claims) {
      this.#claims.set(rowid, [...c, ...(this.#claims.get(rowid) ?? [])]);
    }
  }

  /** Stops retrying; pending claims are rejected (the relay is stopping). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dueAt = Infinity;
    const error = new Error("the relay is stopping");
    for (const claims of this.#claims.values()) for (const c of claims) c.reject(error);
    this.#claims.clear();
  }
}
