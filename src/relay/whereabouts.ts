/**
 * Where a device is connected. A device held by this relay has a session in the hub; one held
 * by another relay has a device link in the store naming that relay, and counts as online only
 * while that relay's heartbeat is recent (DEAD_AFTER_BEATS intervals), so a relay that died
 * stops showing its devices online within that bound even before anyone reclaims its rows.
 */
import { DEAD_AFTER_BEATS, type RelayRecord } from "../store/types.ts";
import type { RelayContext } from "./context.ts";

/** A device's link held by another live relay. */
export interface RemoteLink {
  relayId: string;
  /** The other relay's mesh URL ("" if it has none). */
  meshUrl: string;
  /** The link's generation (grows with every new link of the device). */
  generation: number;
  /** When the device connected there (ms). */
  since: number;
}

/** Relays whose heartbeat is recent enough to count as alive, by id (this relay included). */
export async function liveRelays(ctx: RelayContext): Promise<Map<string, RelayRecord>> {
  const since = Date.now() - DEAD_AFTER_BEATS * ctx.heartbeatMs;
  const relays = await ctx.store.relays.list();
  return new Map(relays.filter((r) => r.heartbeatAt >= since).map((r) => [r.id, r]));
}

/**
 * The links other live relays hold for the devices in `rowids` that this relay does not hold;
 * devices that are not in the map are offline, or online here (see the hub).
 */
export async function remoteLinks(
  ctx: RelayContext,
  rowids: readonly number[],
): Promise<Map<number, RemoteLink>> {
  const out = new Map<number, RemoteLink>();
  const wanted = rowids.filter((r) => !ctx.hub.get(r));
  if (wanted.length === 0) return out;
  const [links, live] = await Promise.all([ctx.store.relays.links(wanted), liveRelays(ctx)]);
  for (const link of links.values()) {
    if (link.relayId === null || link.relayId === ctx.relayId) continue;
    const relay = live.get(link.relayId);
    if (!relay) continue;
    out.set(link.rowid, {
      relayId: relay.id,
      meshUrl: relay.meshUrl,
      generation: link.generation,
      since: link.since,
    });
  }
  return out;
}
