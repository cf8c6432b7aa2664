/**
 * Presence writes in batches: when devices connect, disconnect and report themselves, the relay
 * notes it here, and the notes are written together a moment later in one transaction. A fleet
 * of 10,000 devices returning after a restart thus costs a few commits a second instead of one
 * per device, and the periodic "still seen" refresh of every connected device is one commit.
 * Nothing is scheduled while nothing is pending.
 */
import type { Store } from "../store/store.ts";
import type { DeviceInfo } from "../protocol/control.ts";
import { log } from "../shared/log.ts";

/** How long a note waits for others: on:lastSeen and reports may be this stale after a crash. */
const FLUSH_MS = 250;

/** Pending presence notes of connected and departed devices. */
export class PresenceWriter {
  #store: Store;
  #seen = new Map<number, { at: number; ip?: string }>();
  #infos = new Map<number, DeviceInfo>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Notes that a device was seen at `at` (from `ip`, when it connected). */
  seen(rowid: number, seen: { at: number; ip?: string }): void {
    const ip = seen.ip ?? this.#seen.get(rowid)?.ip; // keep a pending connect's address
    this.#seen.set(rowid, ip === undefined ? { at: seen.at } : { at: seen.at, ip });
    this.#schedule();
  }

  /** Notes what a daemon reported about itself. */
  info(rowid: number, info: DeviceInfo): void {
    this.#infos.set(rowid, info);
    this.#schedule();
  }

  /** When a note not yet written says the device was last seen, if there is one. */
  pendingSeen(rowid: number): number | undefined {
    return this.#seen.get(rowid)?.at;
  }

  /** Number of notes not yet written. */
  get pending(): number {
    return this.#seen.size + this.#infos.size;
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Writes everything pending in one transaction. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.pending === 0) return;
    const seen = this.#seen;
    const infos = this.#infos;
    this.#seen = new Map();
    this.#infos = new Map();
    try {
      this.#store.devices.writePresence(seen, infos);
    } catch (err) {
      log.error("cannot write device presence", { devices: seen.size, error: err });
    }
  }
}
