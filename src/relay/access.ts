/**
 * Who may see and reach which device. An account sees its own devices; another account sees a
 * device only through a share from its owner that names it (`--device`) or whose filters it
 * matches, and reaches only the services the share lists (all, if it lists none). Shared devices
 * are read-only for the grantee. A device the caller may not see is reported exactly like one
 * that does not exist, so names do not leak across accounts.
 */
import type { DeviceRecord, KeyInfo, Share } from "../store/types.ts";
import { formatDeviceRef, parseDeviceRef } from "../protocol/names.ts";
import { type Filter, matches, parseFilters } from "../protocol/filter.ts";
import { HttpError } from "./http.ts";
import type { Device } from "../protocol/api.ts";
import { deviceView } from "./device_view.ts";
import type { RelayContext } from "./context.ts";
import { remoteLinks } from "./whereabouts.ts";

/** A device the caller may see, and the share that lets it (null for its own). */
export interface Visible {
  record: DeviceRecord;
  share: Share | null;
}

/**
 * True if `share` covers the device (by name, or by filters over its properties, the relay's
 * `on:` properties included); `props` are its present properties when the caller has them.
 */
export async function shareCovers(
  ctx: RelayContext,
  share: Share,
  record: DeviceRecord,
  props?: Record<string, string>,
): Promise<boolean> {
  if (record.accountId !== share.ownerId) return false;
  if (share.device !== null) return share.device === record.name;
  const filters = parseFilters(share.filters);
  const values = props ?? await ctx.store.props.present(record.rowid);
  const remote = filters.some((f) => f.key.startsWith("on:"))
    ? (await remoteLinks(ctx, [record.rowid])).get(record.rowid)
    : undefined;
  return matches(deviceView(ctx.hub, record, values, record.accountId, remote).props, filters);
}

/** True if the share lets the grantee reach `service`. */
export function shareAllowsService(share: Share, service: string): boolean {
  return share.services.length === 0 || share.services.includes(service);
}

/** Finds a device the key may see, as `dev` or `owner.dev`; 400/404 otherwise. */
export async function resolveVisible(
  ctx: RelayContext,
  key: KeyInfo,
  refText: string,
): Promise<Visible> {
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
    const record = await ctx.store.devices.get(key.accountId, ref.device);
    if (!record) throw notFound();
    return { record, share: null };
  }
  const ownerId = await ctx.store.accounts.find(ref.account);
  const record = ownerId === null ? null : await ctx.store.devices.get(ownerId, ref.device);
  if (!record || ownerId === null) throw notFound();
  for (const share of await ctx.store.shares.received(key.accountId, ownerId)) {
    if (await shareCovers(ctx, share, record)) return { record, share };
  }
  throw notFound();
}

/** Like resolveVisible, but only for the key's own devices (edits, rename, removal). */
export async function resolveOwn(
  ctx: RelayContext,
  key: KeyInfo,
  refText: string,
): Promise<DeviceRecord> {
  const { record, share } = await resolveVisible(ctx, key, refText);
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

const CHUNK = 1000; // devices read per query while filling a page

/** Views of a page of stored devices, with their properties and where they are connected. */
async function views(
  ctx: RelayContext,
  rows: DeviceRecord[],
  viewer: number,
): Promise<Device[]> {
  const rowids = rows.map((d) => d.rowid);
  const [values, remote] = await Promise.all([
    ctx.store.props.ofDevices(rowids),
    remoteLinks(ctx, rowids),
  ]);
  return rows.map((d) =>
    deviceView(ctx.hub, d, values.get(d.rowid) ?? {}, viewer, remote.get(d.rowid))
  );
}

/**
 * The devices the key may see, matching `q`: its own by id, then those shared with its account
 * by ref. User-property filters run in SQL, the relay's `on:` properties on the views; share
 * coverage is computed only when the account has received shares.
 */
export async function visibleDevices(
  ctx: RelayContext,
  key: KeyInfo,
  q: DeviceQuery = { filters: [] },
): Promise<Device[]> {
  const limit = q.limit ?? Infinity;
  const keep = (v: Device) =>
    (q.state === undefined || v.state === q.state) && matches(v.props, q.filters);
  const out: Device[] = [];
  const props = q.filters.filter((f) => !f.key.startsWith("on:"));
  const inShared = q.after?.includes(".") ?? false; // the page starts among shared devices
  let after = q.after;
  while (!inShared) {
    const page = await ctx.store.devices.list({
      accountId: key.accountId,
      after,
      limit: CHUNK,
      filters: props,
    });
    for (const view of await views(ctx, page.devices, key.accountId)) {
      if (keep(view)) out.push(view);
      if (out.length >= limit) return out;
    }
    if (page.next === null) break;
    after = page.next;
  }
  const shares = await ctx.store.shares.received(key.accountId);
  if (shares.length === 0) return out;
  const shared = new Map<number, Device>();
  for (const share of shares) {
    for (const view of await sharedViews(ctx, share, key.accountId)) {
      if (!shared.has(view.rowid)) shared.set(view.rowid, view.device);
    }
  }
  const rest = [...shared.values()].filter((v) => (!inShared || v.ref > q.after!) && keep(v)).sort((
    a,
    b,
  ) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  return out.concat(rest.slice(0, limit - out.length));
}

/** The views of every device one share covers, as its grantee sees them. */
async function sharedViews(
  ctx: RelayContext,
  share: Share,
  viewer: number,
): Promise<{ rowid: number; device: Device }[]> {
  const rows: DeviceRecord[] = [];
  if (share.device !== null) {
    const record = await ctx.store.devices.get(share.ownerId, share.device);
    if (record) rows.push(record);
  } else {
    const filters = parseFilters(share.filters).filter((f) => !f.key.startsWith("on:"));
    let after: string | undefined;
    do {
      const page = await ctx.store.devices.list({
        accountId: share.ownerId,
        after,
        limit: CHUNK,
        filters,
      });
      rows.push(...page.devices);
      after = page.next ?? undefined;
    } while (after !== undefined);
  }
  const out: { rowid: number; device: Device }[] = [];
  const seen = await views(ctx, rows, viewer);
  const filters = parseFilters(share.filters);
  for (const [i, view] of seen.entries()) {
    // Coverage is judged on the owner's view (its `on:` properties are the same for both).
    if (share.device !== null || matches(view.props, filters)) {
      out.push({ rowid: rows[i].rowid, device: view });
    }
  }
  return out;
}
