/**
 * The relay's plain HTTP endpoints for devices: listing with properties, one device, property
 * edits, rename and removal, plus identity. Enrolment and clones live in enroll.ts; who may see
 * which device is decided in access.ts.
 */
import type { KeyInfo } from "../store/accounts.ts";
import { ConflictError } from "../store/accounts.ts";
import type { DeviceRecord } from "../store/devices.ts";
import { idProblem } from "../protocol/names.ts";
import { checkKeys, keyProblem, type PropChange, valueProblem } from "../protocol/props.ts";
import { CloseCode } from "../transport/link.ts";
import { HttpError, json, readJson } from "./http.ts";
import type { Hub } from "./hub.ts";
import type { RelayContext } from "./context.ts";
import { resolveOwn, resolveVisible, visibleDevices } from "./access.ts";
import { parseFilters } from "../protocol/filter.ts";

/** A device as the API shows it. */
export interface DeviceView {
  id: string;
  account: string;
  /** How the caller names it: `id` for its own devices, `account.id` for shared ones. */
  ref: string;
  state: "online" | "offline";
  since: string | null;
  lastSeen: string | null;
  ip: string | null;
  version: string | null;
  parent: string | null;
  createdAt: string;
  services: string[];
  /** Host public keys of the sshd the device exposes, as `type base64`. */
  hostKeys: string[];
  /** User properties and the relay's read-only `on:` properties. */
  props: Record<string, string>;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The API view of a stored device, with its live state from the hub. */
export function deviceView(
  hub: Hub,
  d: DeviceRecord,
  props: Record<string, string>,
  viewerAccountId = d.accountId,
): DeviceView {
  const live = hub.get(d.rowid);
  const view: DeviceView = {
    id: d.name,
    account: d.account,
    ref: viewerAccountId === d.accountId ? d.name : `${d.account}.${d.name}`,
    state: live ? "online" : "offline",
    since: live ? iso(live.since) : null,
    lastSeen: live ? new Date().toISOString() : iso(d.lastSeen),
    ip: live ? live.ip : d.lastIp,
    version: live?.info?.version ?? d.version,
    parent: d.parent,
    createdAt: new Date(d.createdAt).toISOString(),
    services: live?.info?.services ?? d.services,
    hostKeys: live?.info?.hostKeys ?? d.hostKeys,
    props: {},
  };
  const on: Record<string, string | null> = {
    "on:state": view.state,
    "on:since": view.since,
    "on:lastSeen": view.lastSeen,
    "on:ip": view.ip,
    "on:version": view.version,
    "on:parent": view.parent,
    "on:createdAt": view.createdAt,
  };
  for (const [k, v] of Object.entries(on)) if (v !== null) view.props[k] = v;
  Object.assign(view.props, props);
  return view;
}

const MAX_PAGE = 10_000; // devices in one page of GET /v1/devices?limit=
const MAX_FILTERS = 32; // filters in one listing; people write a handful

/**
 * GET /v1/devices[?limit=N&after=REF&filter=K=V…&state=online|offline]: the devices the key's
 * account owns or has been shared, own ones by id first, then shared ones by ref. With `limit`,
 * one page: a full page means there may be more after its last ref.
 */
export function listDevices(ctx: RelayContext, key: KeyInfo, params: URLSearchParams): Response {
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
  return json(visibleDevices(ctx, key, { filters, state, after: after?.toLowerCase(), limit }));
}

/** GET /v1/devices/REF: one device. */
export function getDevice(ctx: RelayContext, key: KeyInfo, ref: string): Response {
  const { record } = resolveVisible(ctx, key, ref);
  return json(deviceView(ctx.hub, record, ctx.store.props.present(record.rowid), key.accountId));
}

/** PATCH /v1/devices/REF/props `{set: {k: v}, rm: [k]}`: all or nothing. */
export async function patchProps(
  ctx: RelayContext,
  key: KeyInfo,
  ref: string,
  req: Request,
): Promise<Response> {
  const d = resolveOwn(ctx, key, ref);
  const body = await readJson(req, 2 * 1024 * 1024); // 256 values of 4 KiB, as JSON
  const set = body.set ?? {};
  const rm = body.rm ?? [];
  if (typeof set !== "object" || set === null || Array.isArray(set) || !Array.isArray(rm)) {
    throw new HttpError(400, "props body must be {set: {KEY: VALUE}, rm: [KEY]}");
  }
  const at = Date.now();
  const changes: PropChange[] = [];
  for (const [k, v] of Object.entries(set as Record<string, unknown>)) {
    if (typeof v !== "string") {
      throw new HttpError(400, `value of property "${k}" must be a string`);
    }
    const problem = keyProblem(k) ?? valueProblem(k, v);
    if (problem) throw new HttpError(400, problem);
    changes.push({ k, v, at });
  }
  try {
    checkKeys(rm.map(String));
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  for (const k of rm) changes.push({ k: String(k), v: null, at });
  const { applied, rejected } = ctx.store.props.applyAll(d.rowid, changes);
  if (rejected) throw new HttpError(400, rejected);
  announceProps(ctx, d, applied, "client");
  return json({ id: d.name, props: ctx.store.props.present(d.rowid) });
}

/** Logs a props event and pushes applied changes to the device if it is online. */
export function announceProps(
  ctx: RelayContext,
  d: DeviceRecord,
  applied: PropChange[],
  origin: "client" | "device",
): void {
  if (applied.length === 0) return;
  ctx.events.emit(d.accountId, d.name, "props", {
    origin,
    changes: applied.map((c) => ({ key: c.k, value: c.v })),
  });
  if (origin === "client") ctx.hub.get(d.rowid)?.pushProps(applied, false);
}

/** POST /v1/devices/REF/rename `{name}`. */
export async function renameDevice(
  ctx: RelayContext,
  key: KeyInfo,
  ref: string,
  req: Request,
): Promise<Response> {
  const d = resolveOwn(ctx, key, ref);
  const body = await readJson(req, 4096);
  const name = typeof body.name === "string" ? body.name : "";
  const problem = idProblem(name);
  if (problem) throw new HttpError(400, problem);
  try {
    ctx.store.devices.rename(d.rowid, d.accountId, name.toLowerCase());
  } catch (err) {
    if (err instanceof ConflictError) throw new HttpError(409, err.message);
    throw err;
  }
  ctx.hub.get(d.rowid)?.renamed(name.toLowerCase());
  ctx.events.emit(d.accountId, name.toLowerCase(), "renamed", { from: d.name });
  return json({ id: name.toLowerCase(), from: d.name });
}

/** DELETE /v1/devices/REF[?force=1]: refused while online unless forced. */
export function removeDevice(ctx: RelayContext, key: KeyInfo, ref: string, force: boolean) {
  const d = resolveOwn(ctx, key, ref);
  const live = ctx.hub.get(d.rowid);
  if (live && !force) {
    throw new HttpError(409, `device "${d.name}" is online; stop its daemon first or use --force`);
  }
  ctx.store.devices.remove(d.rowid);
  live?.link.close(CloseCode.REVOKED, "the device was removed from its account");
  ctx.events.emit(d.accountId, d.name, "removed", {});
  return json({ removed: d.name });
}

/** GET /v1/whoami: the key's account, id and role. */
export function whoami(key: KeyInfo): Response {
  return json({ account: key.account, keyId: key.id, role: key.role });
}
