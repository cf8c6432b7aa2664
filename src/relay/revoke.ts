/**
 * Closing tunnels that lost their permission: a revoked (or deleted) key, a removed share. Any
 * relay may have decided it (the API on this relay, another relay, `od admin`); every relay
 * re-checks its own tunnels when the store's change feed says keys or shares changed (watch.ts),
 * so a tunnel closes wherever its client or its device is connected.
 */
import { ResetCode } from "../protocol/frame.ts";
import { log } from "../shared/log.ts";
import type { RelayContext } from "./context.ts";
import { shareAllowsService, shareCovers } from "./access.ts";
import type { RelayStream } from "./tunnel.ts";

/**
 * Closes the tunnels opened with key `keyId` if it is revoked or gone (and ends its event
 * streams), and logs it; returns how many tunnels. `announced` says the feed told of a change to the key (the key is then read even when
 * no tunnel here uses it, so the log shows every revocation this relay has taken in).
 */
export async function closeIfRevoked(
  ctx: RelayContext,
  keyId: string,
  announced = false,
): Promise<number> {
  let uses = false;
  for (const t of ctx.hub.tunnels()) uses ||= t.info.keyId === keyId;
  if (!uses && !announced && !ctx.events.listensWith(keyId)) return 0;
  const key = await ctx.store.accounts.keyById(keyId);
  if (key !== null && key.revokedAt === null) return 0;
  const n = ctx.hub.closeTunnels((t) => t.info.keyId === keyId, "the key was revoked");
  // `od events` and dashboard pages of the key end too: they must not go on receiving events.
  ctx.events.endKeys(new Set([keyId]), "the key was revoked");
  log.info("keys revoked", { keys: keyId, tunnelsClosed: n });
  return n;
}

/**
 * Closes the tunnels of other accounts to devices of `ownerId` that no share of the owner
 * allows any more (the device is no longer covered, or the service no longer listed).
 */
export async function recheckShares(ctx: RelayContext, ownerId: number): Promise<number> {
  const affected = [...ctx.hub.tunnels()].filter((t) =>
    t.info.ownerId === ownerId && t.info.accountId !== ownerId && !t.finished
  );
  if (affected.length === 0) return 0;
  const refused = new Set<RelayStream>();
  const byGrantee = Map.groupBy(affected, (t) => t.info.accountId);
  for (const [granteeId, tunnels] of byGrantee) {
    const shares = await ctx.store.shares.received(granteeId, ownerId);
    for (const t of tunnels) {
      const rowid = ctx.hub.rowidOf(t);
      const record = rowid === undefined ? null : await ctx.store.devices.byRowid(rowid);
      let allowed = false;
      for (const s of shares) {
        if (!record || !shareAllowsService(s, t.info.service)) continue;
        if (await shareCovers(ctx, s, record)) {
          allowed = true;
          break;
        }
      }
      if (!allowed) refused.add(t);
    }
  }
  const n = ctx.hub.closeTunnels((t) => refused.has(t), "the share was removed", ResetCode.REFUSED);
  if (n > 0) log.info("share removed", { owner: ownerId, tunnelsClosed: n });
  return n;
}
