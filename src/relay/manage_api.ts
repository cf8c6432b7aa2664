/**
 * Account management over the API, for full keys: keys (`od key`), shares (`od share`) and the
 * audit log (`od audit`). Revoking a key or removing a share closes the tunnels it allowed at
 * once.
 */
import type { KeyInfo } from "../store/accounts.ts";
import { KEY_ROLES, type KeyRole } from "../protocol/keys.ts";
import { normalizeDeviceArg, normalizeId } from "../protocol/names.ts";
import { parseFilters } from "../protocol/filter.ts";
import { serviceProblem } from "../protocol/names.ts";
import { ResetCode } from "../protocol/frame.ts";
import { HttpError, json, readJson } from "./http.ts";
import type { RelayContext } from "./context.ts";
import type { RequestAudit } from "./audit.ts";
import { shareAllowsService, shareCovers } from "./access.ts";
import type { Share } from "../store/shares.ts";
import { auditView } from "../cli/audit_table.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** GET /v1/keys: the account's keys, never their secrets. */
export function listKeys(ctx: RelayContext, key: KeyInfo): Response {
  return json(
    ctx.store.accounts.listKeys(key.account).map((k) => ({
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
  const body = await readJson(req, 4096);
  const role = body.role as KeyRole;
  if (!KEY_ROLES.includes(role)) throw new HttpError(400, `role must be ${KEY_ROLES.join(", ")}`);
  const label = typeof body.label === "string" ? body.label.slice(0, 200) : "";
  const added = ctx.store.accounts.addKey(key.account, role, label);
  ctx.audit.record(audit, "ok", { reason: `added ${role} key ${added.id}` });
  return json({ id: added.id, account: key.account, role, key: added.key }, 201);
}

/** DELETE /v1/keys/ID: revokes one of the account's keys and closes its tunnels. */
export function revokeKey(ctx: RelayContext, key: KeyInfo, id: string, audit: RequestAudit) {
  const target = ctx.store.accounts.listKeys(key.account).find((k) => k.id === id);
  if (!target || target.revokedAt !== null) {
    throw new HttpError(404, `no active key "${id}" in account "${key.account}"`);
  }
  ctx.store.accounts.revokeKey(id);
  const closed = ctx.hub.closeTunnels((t) => t.info.keyId === id, "the key was revoked");
  ctx.audit.record(audit, "ok", { reason: `revoked key ${id}; closed ${closed} tunnels` });
  return json({ revoked: id, tunnelsClosed: closed });
}

function shareView(s: Share) {
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
export function listShares(ctx: RelayContext, key: KeyInfo): Response {
  return json(ctx.store.shares.involving(key.accountId).map(shareView));
}

function parseShareBody(body: Record<string, unknown>) {
  try {
    const grantee = normalizeId(String(body.account ?? ""), "account name");
    const device = body.device == null ? null : normalizeDeviceArg(String(body.device));
    const filters = Array.isArray(body.filters) ? body.filters.map(String) : [];
    parseFilters(filters);
    const services = Array.isArray(body.services) ? body.services.map(String) : [];
    for (const s of services) if (serviceProblem(s)) throw new RangeError(serviceProblem(s)!);
    if (device !== null && filters.length > 0) {
      throw new RangeError("give a device or filters, not both");
    }
    if (device !== null && device.includes(".")) {
      throw new RangeError("share only your own devices");
    }
    return { grantee, device, filters, services };
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

/** POST /v1/shares `{account, device?, filters?, services?}`: shares devices with an account. */
export async function addShare(ctx: RelayContext, key: KeyInfo, req: Request, audit: RequestAudit) {
  const { grantee, device, filters, services } = parseShareBody(await readJson(req, 16 * 1024));
  const granteeId = ctx.store.accounts.find(grantee);
  if (granteeId === null) throw new HttpError(404, `account "${grantee}" does not exist`);
  if (granteeId === key.accountId) throw new HttpError(400, "an account cannot share with itself");
  if (device !== null && !ctx.store.devices.get(key.accountId, device)) {
    throw new HttpError(404, `no device "${device}" in account "${key.account}"`);
  }
  const share = ctx.store.shares.add({
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
export function removeShare(ctx: RelayContext, key: KeyInfo, id: number, audit: RequestAudit) {
  const share = ctx.store.shares.get(id);
  if (!share || !ctx.store.shares.remove(id, key.accountId)) {
    throw new HttpError(404, `no share ${id} given by account "${key.account}"`);
  }
  const remaining = ctx.store.shares.received(share.granteeId, share.ownerId);
  const closed = ctx.hub.closeTunnels(
    (t) => {
      if (t.info.accountId !== share.granteeId || t.info.ownerId !== share.ownerId) return false;
      const record = ctx.store.devices.get(share.ownerId, t.info.deviceName);
      return !record ||
        !remaining.some((s) =>
          shareCovers(ctx, s, record) && shareAllowsService(s, t.info.service)
        );
    },
    "the share was removed",
    ResetCode.REFUSED,
  );
  ctx.audit.record(audit, "ok", { reason: `removed share ${id}; closed ${closed} tunnels` });
  return json({ removed: id, tunnelsClosed: closed });
}

/** GET /v1/audit?device=&since=: the account's audit rows (as actor or device owner). */
export function listAudit(ctx: RelayContext, key: KeyInfo, params: URLSearchParams): Response {
  const since = params.get("since");
  const sinceMs = since === null
    ? undefined
    : /^\d+$/.test(since)
    ? Number(since)
    : Date.parse(since);
  if (sinceMs !== undefined && !Number.isFinite(sinceMs)) {
    throw new HttpError(400, `since "${since}" is not a time`);
  }
  const rows = ctx.store.audit.query({
    accountId: key.accountId,
    device: params.get("device") ?? undefined,
    since: sinceMs,
    limit: Math.min(Number(params.get("limit") ?? 10_000) || 10_000, 100_000),
  });
  return json(rows.map(auditView));
}
