/**
 * Who may see and reach which device. An account sees its own devices; another account sees a
 * device only through a share from its owner that names it (`--device`) or whose filters it
 * matches, and reaches only the services the share lists (all, if it lists none). Shared devices
 * are read-only for the grantee. A device the caller may not see is reported exactly like one
 * that does not exist, so names do not leak across accounts.
 */
import type { KeyInfo } from "../store/accounts.ts";
import type { DeviceRecord } from "../store/devices.ts";
import type { Share } from "../store/shares.ts";
import { formatDeviceRef, parseDeviceRef } from "../protocol/names.ts";
import { type Filter, matches, parseFilters } from "../protocol/filter.ts";
import { HttpError } from "./http.ts";
import type { Device } from "../protocol/api.ts";
import { deviceView } from "./device_view.ts";
import type { RelayContext } from "./context.ts";

/** A device the caller may see, and the share that lets it (null for its own). */
export interface Visible {
  record: DeviceRecord;
  share: Share | null;
}

/** True if `share` covers the device (by name, or by filters over its properties). */
export function shareCovers(ctx: RelayContext, share: Share, record: DeviceRecord): boolean {
  if (record.accountId !== share.ownerId) return false;
  if (share.device !== null) return share.device === record.name;
  const view = deviceView(ctx.hub, record, ctx.store.props.present(record.rowid));
  return matches(view.props, parseFilters(share.filters));
}

/** True if the share lets the grantee reach `service`. */
export function shareAllowsService(share: Share, service: string): boolean {
  return share.services.length === 0 || share.services.includes(service);
}

/** Finds a device the key may see, as `dev` or `owner.dev`; 400/404 otherwise. */
export function resolveVisible(ctx: RelayContext, key: KeyInfo, refText: string): Visible {
  let ref;
  try {
    ref = parseDeviceRef(refText);
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  const shown = formatDeviceRef(ref);
  const notFound = () =>
    new HttpError(404, `no device "${shown}" in account "${key.account}" or shared with it`);
  if (ref.account === null || ref.account === key.account) {
    const record = ctx.store.devices.get(key.accountId, ref.device);
    if (!record) throw notFound();
    return { record, share: null };
  }
  const ownerId = ctx.store.accounts.find(ref.account);
  const record = ownerId === null ? null : ctx.store.devices.get(ownerId, ref.device);
  if (!record || ownerId === null) throw notFound();
  const share = ctx.store.shares.received(key.accountId, ownerId).find((s) =>
    shareCovers(ctx, s, record)
  );
  if (!share) throw notFound();
  return { record, share };
}

/** Like resolveVisible, but only for the key's own devices (edits, rename, removal). */
export function resolveOwn(ctx: RelayContext, key: KeyInfo, refText: string): DeviceRecord {
  const { record, share } = resolveVisible(ctx, key, refText);
  if (share) {
    throw new HttpError(403, `device "${share.owner}.${record.name}" is shared with you read-only`);
  }
  return record;
}

/** Which visible devices to list: filters, state, and a page after a device ref. */
export interface DeviceQuery {
  filters: Filter[];
  state?: "online" | "offline";
  /** Only devices listed after this ref (own ids come first, then `owner.id` refs). */
  after?: string;
  limit?: number;
}

const CHUNK = 1000; // own devices read per query while filling a page

/**
 * The devices the key may see, matching `q`: its own by id, then those shared with its account
 * by ref. User-property filters on its own devices run in SQL; share coverage is computed only
 * when the account has received shares.
 */
export function visibleDevices(
  ctx: RelayContext,
  key: KeyInfo,
  q: DeviceQuery = { filters: [] },
): Device[] {
  const limit = q.limit ?? Infinity;
  const keep = (v: Device) =>
    (q.state === undefined || v.state === q.state) && matches(v.props, q.filters);
  const out: Device[] = [];
  const props = q.filters.filter((f) => !f.key.startsWith("on:"));
  const inShared = q.after?.includes(".") ?? false; // the page starts among shared devices
  let after = q.after;
  while (!inShared) {
    const rows = ctx.store.devices.list(key.accountId, { after, limit: CHUNK, props });
    const values = ctx.store.props.ofDevices(rows.map((d) => d.rowid));
    for (const d of rows) {
      const view = deviceView(ctx.hub, d, values.get(d.rowid) ?? {});
      if (keep(view)) out.push(view);
      if (out.length >= limit) return out;
    }
    if (rows.length < CHUNK) break;
    after = rows.at(-1)!.name;
  }
  const shares = ctx.store.shares.received(key.accountId);
  if (shares.length === 0) return out;
  const shared = new Map<number, Device>();
  for (const share of shares) {
    const ownerProps = ctx.store.props.ofAccount(share.ownerId);
    for (const d of ctx.store.devices.list(share.ownerId)) {
      if (shared.has(d.rowid) || !shareCovers(ctx, share, d)) continue;
      shared.set(d.rowid, deviceView(ctx.hub, d, ownerProps.get(d.rowid) ?? {}, key.accountId));
    }
  }
  const rest = [...shared.values()].filter((v) => (!inShared || v.ref > q.after!) && keep(v)).sort((
    a,
    b,
  ) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  return out.concat(rest.slice(0, limit - out.length));
}
