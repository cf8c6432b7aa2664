/**
 * Account management over the API, for full keys: keys (`od key`), shares (`od share`) and the
 * audit log (`od audit`). Revoking a key or removing a share closes the tunnels it allowed at
 * once.
 */
import type { KeyInfo, Share } from "../store/types.ts";
import {
  type AddedKey,
  type ApiKey,
  auditView,
  parseKeyAdd,
  parseShareAdd,
  type Revoked,
  type Share as ApiShare,
} from "../protocol/api.ts";
import { HttpError, json, readJson } from "./http.ts";
import type { RelayContext } from "./context.ts";
import type { RequestAudit } from "./audit.ts";
import { closeIfRevoked, recheckShares } from "./revoke.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** GET /v1/keys: the account's keys, never their secrets. */
export async function listKeys(ctx: RelayContext, key: KeyInfo): Promise<Response> {
  return json(
    (await ctx.store.accounts.listKeys(key.account)).map((k): ApiKey => ({
      id: k.id,
      role: k.role,
      label: k.label,
      createdAt: iso(k.createdAt),
      lastUsedAt: iso(k.lastUsedAt),
      revokedAt: iso(k.revokedAt),
    })),
  );
}

/** POST /v1/keys `{role, label}`: a new key, shown once in the response. */
export async function addKey(ctx: RelayContext, key: KeyInfo, req: Request, audit: RequestAudit) {
  const { role, label } = parseKeyAdd(await readJson(req, 4096));
  const added = await ctx.store.accounts.addKey(key.account, role, label);
  ctx.audit.record(audit, "ok", { reason: `added ${role} key ${added.id}` });
  const result: AddedKey = { id: added.id, account: key.account, role, key: added.key };
  return json(result, 201);
}

/** DELETE /v1/keys/ID: revokes one of the account's keys and closes its tunnels. */
export async function revokeKey(
  ctx: RelayContext,
  key: KeyInfo,
  id: string,
  audit: RequestAudit,
): Promise<Response> {
  const target = await ctx.store.accounts.keyById(id);
  if (!target || target.accountId !== key.accountId || target.revokedAt !== null) {
    throw new HttpError(404, `no active key "${id}" in account "${key.account}"`);
  }
  await ctx.store.accounts.revokeKey(id);
  // Here at once; other relays close theirs when the change feed tells them.
  const closed = await closeIfRevoked(ctx, id);
  ctx.audit.record(audit, "ok", { reason: `revoked key ${id}; closed ${closed} tunnels` });
  const result: Revoked = { revoked: id, tunnelsClosed: closed };
  return json(result);
}

function shareView(s: Share): ApiShare {
  return {
    id: s.id,
    owner: s.owner,
    grantee: s.grantee,
    device: s.device,
    filters: s.filters,
    services: s.services,
    createdAt: iso(s.createdAt),
  };
}

/** GET /v1/shares: shares the account has given or received. */
export async function listShares(ctx: RelayContext, key: KeyInfo): Promise<Response> {
  return json((await ctx.store.shares.involving(key.accountId)).map(shareView));
}

/** POST /v1/shares `{account, device?, filters?, services?}`: shares devices with an account. */
export async function addShare(ctx: RelayContext, key: KeyInfo, req: Request, audit: RequestAudit) {
  const body = parseShareAdd(await readJson(req, 16 * 1024));
  const { account: grantee, device, filters, services } = body;
  const granteeId = await ctx.store.accounts.find(grantee);
  if (granteeId === null) throw new HttpError(404, `account "${grantee}" does not exist`);
  if (granteeId === key.accountId) throw new HttpError(400, "an account cannot share with itself");
  if (device !== null && !(await ctx.store.devices.get(key.accountId, device))) {
    throw new HttpError(404, `no device "${device}" in account "${key.account}"`);
  }
  const share = await ctx.store.shares.add({
    ownerId: key.accountId,
    granteeId,
    device,
    filters,
    services,
    createdBy: key.id,
  });
  ctx.audit.record(audit, "ok", { reason: `shared with ${grantee} (share ${share.id})` });
  return json(shareView(share), 201);
}

/** DELETE /v1/shares/ID: removes a share and closes the grantee's tunnels it allowed. */
export async function removeShare(
  ctx: RelayContext,
  key: KeyInfo,
  id: number,
  audit: RequestAudit,
): Promise<Response> {
  const share = await ctx.store.shares.get(id);
  if (!share || !(await ctx.store.shares.remove(id, key.accountId))) {
    throw new HttpError(404, `no share ${id} given by account "${key.account}"`);
  }
  // Here at once; other relays re-check theirs when the change feed tells them.
  const closed = await recheckShares(ctx, share.ownerId);
  ctx.audit.record(audit, "ok", { reason: `removed share ${id}; closed ${closed} tunnels` });
  const result: Revoked = { removed: id, tunnelsClosed: closed };
  return json(result);
}

/** Most audit rows one request returns. */
const MAX_AUDIT_ROWS = 100_000;

/** Parses `limit`: an integer from 1 to MAX_AUDIT_ROWS; absent means the maximum. */
function parseLimit(value: string | null): number {
  if (value === null) return MAX_AUDIT_ROWS;
  const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_AUDIT_ROWS)) {
    throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_AUDIT_ROWS}`);
  }
  return n;
}

/** Parses a row id cursor (`after`, `before`); undefined when absent. */
function parseCursor(params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  if (value === null) return undefined;
  if (!/^\d{1,15}$/.test(value)) {
    throw new HttpError(400, `${name} must be an audit row id`);
  }
  return Number(value);
}

/**
 * GET /v1/audit?device=&since=&limit=[&order=newest][&after=ID|&before=ID]: the account's audit
 * rows (as actor or device owner), oldest first or newest first, a page after or before a row.
 */
export async function listAudit(
  ctx: RelayContext,
  key: KeyInfo,
  params: URLSearchParams,
): Promise<Response> {
  const order = params.get("order") ?? "oldest";
  if (order !== "oldest" && order !== "newest") {
    throw new HttpError(400, "order must be oldest or newest");
  }
  const since = params.get("since");
  const sinceMs = since === null
    ? undefined
    : /^\d{1,16}$/.test(since)
    ? Number(since)
    : Date.parse(since);
  if (sinceMs !== undefined && !Number.isFinite(sinceMs)) {
    throw new HttpError(400, `since "${since?.slice(0, 40)}" is not a time`);
  }
  const rows = await ctx.store.audit.query({
    accountId: key.accountId,
    device: params.get("device") ?? undefined,
    since: sinceMs,
    limit: parseLimit(params.get("limit")),
    afterId: parseCursor(params, "after"),
    beforeId: parseCursor(params, "before"),
    newest: order === "newest",
  });
  return json(rows.map(auditView));
}
