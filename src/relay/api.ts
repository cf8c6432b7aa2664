/**
 * The relay's plain HTTP endpoints for devices: listing with properties, one device, property
 * edits, rename and removal, plus identity. Enrolment and clones live in enroll.ts; who may see
 * which device is decided in access.ts.
 */
import { ConflictError, type DeviceRecord, type KeyInfo } from "../store/types.ts";
import {
  parsePropsPatch,
  parseRename,
  type PropsResult,
  type RenameResult,
  type Whoami,
} from "../protocol/api.ts";
import type { PropChange } from "../protocol/props.ts";
import { CloseCode } from "../transport/link.ts";
import { HttpError, json, readJson } from "./http.ts";
import type { RelayContext } from "./context.ts";
import { resolveOwn, resolveVisible, visibleDevices } from "./access.ts";
import { deviceView } from "./device_view.ts";
import { parseFilters } from "../protocol/filter.ts";
import { remoteLinks } from "./whereabouts.ts";

// 256 values of 4 KiB as plain JSON; values of escaped characters must come in several requests.
const MAX_PATCH_BODY = 2 * 1024 * 1024;

const MAX_PAGE = 10_000; // devices in one page of GET /v1/devices?limit=
const MAX_FILTERS = 32; // filters in one listing; people write a handful

/**
 * GET /v1/devices[?limit=N&after=REF&filter=K=V…&state=online|offline]: the devices the key's
 * account owns or has been shared, own ones by id first, then shared ones by ref. With `limit`,
 * one page: a full page means there may be more after its last ref.
 */
export async function listDevices(
  ctx: RelayContext,
  key: KeyInfo,
  params: URLSearchParams,
): Promise<Response> {
  const limitText = params.get("limit");
  const limit = limitText === null ? undefined : Number(limitText);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= MAX_PAGE)) {
    throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_PAGE}`);
  }
  const after = params.get("after") ?? undefined;
  if (after !== undefined && !/^[a-z0-9.-]{1,120}$/i.test(after)) {
    throw new HttpError(400, `after "${after.slice(0, 120)}" is not a device ref`);
  }
  const state = params.get("state") ?? undefined;
  if (state !== undefined && state !== "online" && state !== "offline") {
    throw new HttpError(400, "state must be online or offline");
  }
  const filterArgs = params.getAll("filter");
  if (filterArgs.length > MAX_FILTERS) throw new HttpError(400, `at most ${MAX_FILTERS} filters`);
  let filters;
  try {
    filters = parseFilters(filterArgs);
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  return json(
    await visibleDevices(ctx, key, { filters, state, after: after?.toLowerCase(), limit }),
  );
}

/** GET /v1/devices/REF: one device. */
export async function getDevice(ctx: RelayContext, key: KeyInfo, ref: string): Promise<Response> {
  const { record } = await resolveVisible(ctx, key, ref);
  const [props, remote] = await Promise.all([
    ctx.store.props.present(record.rowid),
    remoteLinks(ctx, [record.rowid]),
  ]);
  return json(deviceView(ctx.hub, record, props, key.accountId, remote.get(record.rowid)));
}

/** PATCH /v1/devices/REF/props `{set: {k: v}, rm: [k]}`: all or nothing. */
export async function patchProps(
  ctx: RelayContext,
  key: KeyInfo,
  ref: string,
  req: Request,
): Promise<Response> {
  const d = await resolveOwn(ctx, key, ref);
  const { set, rm } = parsePropsPatch(await readJson(req, MAX_PATCH_BODY));
  const at = Date.now();
  const changes: PropChange[] = [
    ...Object.entries(set).map(([k, v]) => ({ k, v, at })),
    ...rm.map((k) => ({ k, v: null, at })),
  ];
  const { applied, rejected } = await ctx.store.props.applyAll(d.rowid, changes);
  if (rejected) throw new HttpError(400, rejected);
  await announceProps(ctx, d, applied, "client");
  const result: PropsResult = { id: d.name, props: await ctx.store.props.present(d.rowid) };
  return json(result);
}

/**
 * Logs a props event and pushes applied changes to the device if this relay holds it (a relay
 * holding it elsewhere learns of them from the store's change feed, see watch.ts).
 */
export async function announceProps(
  ctx: RelayContext,
  d: DeviceRecord,
  applied: PropChange[],
  origin: "client" | "device",
): Promise<void> {
  if (applied.length === 0) return;
  const session = origin === "client" ? ctx.hub.get(d.rowid) : undefined;
  if (session) ctx.mirror.push(session, applied);
  await ctx.events.emit(d.accountId, d.name, "props", {
    origin,
    changes: applied.map((c) => ({ key: c.k, value: c.v })),
  });
}

/** POST /v1/devices/REF/rename `{name}`; an online device's session takes the new name. */
export async function renameDevice(
  ctx: RelayContext,
  key: KeyInfo,
  ref: string,
  req: Request,
): Promise<Response> {
  const d = await resolveOwn(ctx, key, ref);
  const { name } = parseRename(await readJson(req, 4096));
  try {
    await ctx.store.devices.rename(d.rowid, d.accountId, name);
  } catch (err) {
    if (err instanceof ConflictError) throw new HttpError(409, err.message);
    throw err;
  }
  const session = ctx.hub.get(d.rowid);
  session?.renamed(name);
  for (const t of session?.streams() ?? []) t.info.deviceName = name; // re-checked by shares
  await ctx.events.emit(d.accountId, name, "renamed", { from: d.name });
  const result: RenameResult = { id: name, from: d.name };
  return json(result);
}

/**
 * DELETE /v1/devices/REF[?force=1]: refused while online (on any relay) unless forced. A relay
 * holding the device elsewhere closes its link when the feed tells it of the removal.
 */
export async function removeDevice(ctx: RelayContext, key: KeyInfo, ref: string, force: boolean) {
  const d = await resolveOwn(ctx, key, ref);
  const live = ctx.hub.get(d.rowid);
  const online = live !== undefined || (await remoteLinks(ctx, [d.rowid])).has(d.rowid);
  if (online && !force) {
    throw new HttpError(409, `device "${d.name}" is online; stop its daemon first or use --force`);
  }
  await ctx.store.devices.remove(d.rowid);
  live?.link.close(CloseCode.REVOKED, "the device was removed from its account");
  await ctx.events.emit(d.accountId, d.name, "removed", {});
  return json({ removed: d.name });
}

/** GET /v1/whoami: the key's account, id and role. */
export function whoami(key: KeyInfo): Response {
  const who: Whoami = { account: key.account, keyId: key.id, role: key.role };
  return json(who);
}
