/**
 * This relay among the relays of one store: its row, heartbeated every interval; the device
 * links it holds, claimed with a generation as devices connect and released as they leave; and
 * the reclaiming of relays whose heartbeat stopped.
 *
 * - A device that connects here claims its link with a generation higher than any before, so a
 *   relay still holding an older link of it learns from the change feed (kind "links") that a
 *   newer one exists and closes its own: two links of one device resolve to the newest.
 * - A relay judges others dead only after its own heartbeats have succeeded for DEAD_AFTER_BEATS
 *   intervals in a row: after the database was away, every live relay must first have had the
 *   chance to beat again, or relays would reclaim each other.
 * - If this relay was reclaimed all the same (cut off from the database for longer than the
 *   bound while its devices stayed connected), it claims its links again when it learns of it.
 */
import { DEAD_AFTER_BEATS, type StoreChange } from "../store/types.ts";
import { CloseCode } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import type { RelayContext } from "./context.ts";
import type { DeviceSession } from "./device_session.ts";

/** A relay id: the host name and a random suffix, so relays on one host differ. */
export function defaultRelayId(): string {
  const host = (Deno.hostname?.() ?? "relay").toLowerCase().replace(/[^a-z0-9-]+/g, "-");
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(3)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return `${host.slice(0, 40)}-${suffix}`;
}

/** This relay's row, heartbeat and device links. */
export class Membership {
  #ctx: RelayContext;
  #generations = new Map<DeviceSession, number>();
  #closed = new Set<DeviceSession>(); // left before their claim was written
  #healthySince: number | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating: Promise<void> | null = null;

  constructor(ctx: RelayContext) {
    this.#ctx = ctx;
  }

  /** Writes the first heartbeat (rejects if the store is unreachable) and starts the loop. */
  async start(options: { forgetOthers: boolean }): Promise<void> {
    const { store, relayId } = this.#ctx;
    if (options.forgetOthers) {
      // The embedded store has one relay: rows left by earlier runs describe nothing live.
      for (const r of await store.relays.list()) await store.relays.leave(r.id);
    } else {
      await store.relays.leave(relayId); // an earlier run with the same --relay-id
    }
    await store.relays.heartbeat({ id: relayId, meshUrl: this.#ctx.meshUrl });
    this.#healthySince = Date.now();
    this.#timer = setInterval(() => this.beat(), this.#ctx.heartbeatMs);
  }

  /** One heartbeat, then reclaiming dead relays when this one has been healthy long enough. */
  beat(): Promise<void> {
    this.#beating ??= this.#beat().finally(() => (this.#beating = null));
    return this.#beating;
  }

  async #beat(): Promise<void> {
    const { store, relayId, heartbeatMs } = this.#ctx;
    try {
      await store.relays.heartbeat({ id: relayId, meshUrl: this.#ctx.meshUrl });
    } catch (err) {
      if (this.#healthySince !== null) log.warn("relay heartbeat failed", { error: err });
      this.#healthySince = null;
      return;
    }
    const now = Date.now();
    if (this.#healthySince === null) {
      log.info("relay heartbeat restored");
      this.#healthySince = now;
      await this.resync(); // what changed while we could not see is read again
    }
    if (now - this.#healthySince < DEAD_AFTER_BEATS * heartbeatMs) return;
    try {
      const reclaimed = await store.relays.reclaim();
      if (reclaimed.relays.length > 0) {
        log.info("reclaimed dead relays", {
          relays: reclaimed.relays.join(","),
          devices: reclaimed.devices.length,
        });
      }
    } catch (err) {
      log.warn("cannot reclaim dead relays", { error: err });
    }
  }

  /** A device connected here: claims its link. */
  claim(session: DeviceSession): void {
    this.#ctx.presence.claim(session.record.rowid).then((generation) => {
      if (this.#closed.delete(session)) return this.#letGo(session, generation);
      this.#generations.set(session, generation);
    }, () => this.#closed.delete(session));
  }

  /** A device left (or was replaced here): releases its link if the claim is still ours. */
  release(session: DeviceSession): void {
    const generation = this.#generations.get(session);
    this.#generations.delete(session);
    if (generation === undefined) this.#closed.add(session);
    else this.#letGo(session, generation);
  }

  #letGo(session: DeviceSession, generation: number): void {
    // A newer session of the same device here owns the link (both claims may have shared one
    // write, and so one generation).
    const current = this.#ctx.hub.get(session.record.rowid);
    if (generation > 0 && (current === undefined || current === session)) {
      this.#ctx.presence.release(session.record.rowid, generation);
    }
  }

  /** The generation of a session's link, once claimed. */
  generationOf(session: DeviceSession): number | undefined {
    return this.#generations.get(session);
  }

  /** Acts on a change of a device link (change feed kind "links"). */
  onLink(change: Extract<StoreChange, { kind: "links" }>): void {
    const session = this.#ctx.hub.get(change.rowid);
    if (!session) return;
    this.#judge(session, change.relayId, change.generation);
  }

  #judge(session: DeviceSession, relayId: string | null, generation: number): void {
    const mine = this.#generations.get(session);
    if (mine === undefined) return; // our claim is being written; it will be the newest
    if (relayId !== null && relayId !== this.#ctx.relayId && generation > mine) {
      session.link.close(CloseCode.REPLACED, `the device connected to relay ${relayId}`);
    } else if (relayId === null && generation === mine) {
      // Reclaimed while the device is still here: claim it again.
      this.#generations.delete(session);
      this.claim(session);
    }
  }

  /** Compares every link held here with the store's (after the feed reconnected). */
  async resync(): Promise<void> {
    const sessions = [...this.#generations.keys()];
    if (sessions.length === 0) return;
    try {
      const links = await this.#ctx.store.relays.links(sessions.map((s) => s.record.rowid));
      for (const s of sessions) {
        const link = links.get(s.record.rowid);
        if (this.#ctx.hub.get(s.record.rowid) !== s) continue;
        if (!link) {
          this.#generations.delete(s);
          this.claim(s);
        } else this.#judge(s, link.relayId, link.generation);
      }
    } catch (err) {
      log.warn("cannot compare device links with the store", { error: err });
    }
  }

  /** Stops heartbeating and, if the store answers, gives up every link and the row. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
    await this.#beating;
    try {
      await this.#ctx.store.relays.leave(this.#ctx.relayId);
    } catch (err) {
      log.warn("cannot leave the relays table; others reclaim this relay later", { error: err });
    }
  }
}
