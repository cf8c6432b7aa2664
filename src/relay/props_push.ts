/**
 * Property values travelling to connected daemons. For each device connected here the relay
 * remembers the value and time of every key the daemon has (sent with the greeting, sent by
 * the daemon, or pushed since). When the store's change feed says a device's properties
 * changed — through the API of any relay — the relay holding the device reads them and pushes
 * exactly the keys whose value or time differ, so a change reaches the daemon once, wherever
 * it was made, and a daemon's own changes are not echoed back to it.
 */
import type { PropChange, PropValue } from "../protocol/props.ts";
import { log } from "../shared/log.ts";
import type { RelayContext } from "./context.ts";
import type { DeviceSession } from "./device_session.ts";

const COALESCE_MS = 20; // the per-key notices of one request are read back together
const MAX_UNHELD = 10_000; // notices for devices not (yet) here, kept to catch a connect race

/** What each connected daemon knows of its properties. */
export class PropsMirror {
  #known = new WeakMap<DeviceSession, Map<string, PropValue>>();
  #dirty = new Set<number>();
  #unheld = new Map<number, number>(); // row id → when a change was announced
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** A new session's daemon got `props` (all keys, read at `readAt`) with its greeting. */
  init(ctx: RelayContext, session: DeviceSession, props: PropChange[], readAt: number): void {
    this.#known.set(session, new Map(props.map((c) => [c.k, { v: c.v, at: c.at }])));
    const changedAt = this.#unheld.get(session.record.rowid);
    if (changedAt !== undefined && changedAt >= readAt) this.changed(ctx, session.record.rowid);
  }

  /** The daemon sent these values (now stored) itself. */
  noteFromDevice(session: DeviceSession, changes: PropChange[]): void {
    const known = this.#known.get(session);
    for (const c of changes) known?.set(c.k, { v: c.v, at: c.at });
  }

  /** Pushes to the daemon those of `changes` it does not have yet. */
  push(session: DeviceSession, changes: PropChange[]): void {
    const known = this.#known.get(session);
    if (!known) return;
    const fresh = changes.filter((c) => {
      const k = known.get(c.k);
      return k === undefined || k.at !== c.at || k.v !== c.v;
    });
    if (fresh.length === 0) return;
    for (const c of fresh) known.set(c.k, { v: c.v, at: c.at });
    session.pushProps(fresh);
  }

  /** The feed says the properties of device `rowid` changed (on any relay). */
  changed(ctx: RelayContext, rowid: number): void {
    if (!ctx.hub.get(rowid)) {
      if (this.#unheld.size >= MAX_UNHELD) this.#unheld.clear();
      this.#unheld.set(rowid, Date.now());
      return;
    }
    this.#dirty.add(rowid);
    this.#timer ??= setTimeout(() => this.#refresh(ctx), COALESCE_MS);
  }

  async #refresh(ctx: RelayContext): Promise<void> {
    this.#timer = undefined;
    const rowids = [...this.#dirty];
    this.#dirty.clear();
    for (const rowid of rowids) {
      const session = ctx.hub.get(rowid);
      if (!session) continue;
      try {
        const stored = await ctx.store.props.load(rowid);
        this.push(session, [...stored].map(([k, p]) => ({ k, v: p.v, at: p.at })));
      } catch (err) {
        log.warn("cannot read properties to push to a device", {
          device: session.record.name,
          error: err,
        });
      }
    }
  }

  /** Stops the pending read (the relay is stopping). */
  close(): void {
    clearTimeout(this.#timer);
  }
}
