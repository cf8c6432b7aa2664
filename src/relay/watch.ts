/**
 * The relay's side of the store's change feed (PostgreSQL LISTEN/NOTIFY, SQLite's polled change
 * log): everything one relay, `od admin` or another writer decides that this relay must act on.
 *
 * - keys: tunnels opened with a revoked or deleted key close;
 * - shares: tunnels that a removed share allowed close;
 * - devices: a removed device's link closes, a renamed one's daemon learns its new id;
 * - props: changed values are pushed to the daemon if it is connected here;
 * - events: appended elsewhere, delivered to `od events` followers here;
 * - links: a newer link of a device connected here closes this one;
 * - resync (the feed lost notifications): all of the above is checked again.
 *
 * Handlers run concurrently with requests; each catches and logs its own failures.
 */
import { CloseCode } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import type { StoreChange, Unsubscribe } from "../store/types.ts";
import type { RelayContext } from "./context.ts";
import { closeIfRevoked, recheckShares } from "./revoke.ts";

function run(what: string, task: Promise<unknown>): void {
  task.catch((err) => log.warn(`cannot act on a store change: ${what}`, { error: err }));
}

/** Subscribes the relay to the store's changes; resolves once the feed is live. */
export function watchStore(ctx: RelayContext): Promise<Unsubscribe> {
  const owners = new Set<number>();
  let sharesTimer: ReturnType<typeof setTimeout> | undefined;
  const shares = (ownerId: number) => {
    owners.add(ownerId);
    sharesTimer ??= setTimeout(() => {
      sharesTimer = undefined;
      for (const id of owners) run("shares", recheckShares(ctx, id));
      owners.clear();
    }, 0);
  };
  return ctx.store.subscribe((c: StoreChange) => {
    switch (c.kind) {
      case "keys":
        return run("keys", closeIfRevoked(ctx, c.keyId, true));
      case "shares":
        return shares(c.accountId);
      case "devices":
        return run("devices", deviceChanged(ctx, c.rowid));
      case "props":
        return ctx.mirror.changed(ctx, c.rowid);
      case "events":
        return ctx.events.remote(c.accountId, c.eventId);
      case "links":
        return ctx.members.onLink(c);
      case "resync":
        return run("resync", resync(ctx));
    }
  });
}

/** A device was added, renamed or removed: its link and tunnels here follow. */
async function deviceChanged(ctx: RelayContext, rowid: number): Promise<void> {
  const session = ctx.hub.get(rowid);
  const tunnels = [...ctx.hub.tunnels()].filter((t) => ctx.hub.rowidOf(t) === rowid);
  if (!session && tunnels.length === 0) return;
  const record = await ctx.store.devices.byRowid(rowid);
  if (!record) {
    session?.link.close(CloseCode.REVOKED, "the device was removed from its account");
    return;
  }
  if (session && session.record.name !== record.name) session.renamed(record.name);
  for (const t of tunnels) t.info.deviceName = record.name; // shares are re-checked by name
}

/** Checks everything the feed may have missed. */
async function resync(ctx: RelayContext): Promise<void> {
  const tunnels = [...ctx.hub.tunnels()];
  for (const keyId of new Set(tunnels.map((t) => t.info.keyId))) {
    await closeIfRevoked(ctx, keyId);
  }
  for (const ownerId of new Set(tunnels.map((t) => t.info.ownerId))) {
    await recheckShares(ctx, ownerId);
  }
  const rowids = new Set([...ctx.hub.sessions()].map((s) => s.record.rowid));
  for (const t of tunnels) rowids.add(ctx.hub.rowidOf(t) ?? 0);
  for (const rowid of rowids) {
    if (rowid > 0) await deviceChanged(ctx, rowid);
    if (ctx.hub.get(rowid)) ctx.mirror.changed(ctx, rowid);
  }
  await ctx.members.resync();
}
