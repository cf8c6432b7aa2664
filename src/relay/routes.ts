/**
 * The relay's routes: which role may call what. device keys enrol and serve only; client keys
 * list, connect and edit properties; full keys also manage keys, shares and devices, and read
 * the audit log. Device credentials open their device's link and nothing else.
 */
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { VERSION } from "../version.ts";
import { HttpError, json } from "./http.ts";
import type { RelayContext } from "./context.ts";
import type { RequestAudit } from "./audit.ts";
import { getDevice, listDevices, patchProps, removeDevice, renameDevice, whoami } from "./api.ts";
import { clone, enroll } from "./enroll.ts";
import { deviceLink, tunnel } from "./connect.ts";
import { streamEvents } from "./events_api.ts";
import {
  addKey,
  addShare,
  listAudit,
  listKeys,
  listShares,
  removeShare,
  revokeKey,
} from "./manage_api.ts";

/** Routes one request; `audit` collects who and what for the audit row. */
export async function route(
  ctx: RelayContext,
  req: Request,
  audit: RequestAudit,
): Promise<Response> {
  const { pathname, searchParams } = new URL(req.url);
  const method = req.method;
  const ip = audit.ip;
  const as = (action: string, roles: ("client" | "device" | "full")[]) => {
    audit.action = action;
    return ctx.auth.key(req, ip, roles, audit);
  };
  const client = (action: string) => as(action, ["client", "full"]);
  const full = (action: string) => as(action, ["full"]);

  if (pathname === "/v1/health" && method === "GET") {
    return json({ ok: true, version: VERSION, protocol: SUBPROTOCOL });
  }
  if (pathname === "/v1/device" && method === "GET") {
    audit.action = "device-link";
    return deviceLink(ctx, req, ip, audit);
  }
  if (pathname === "/v1/tunnel" && method === "GET") {
    audit.action = "tunnel";
    return tunnel(ctx, req, ip, audit);
  }
  if (pathname === "/v1/enroll" && method === "POST") {
    return await enroll(ctx, as("enroll", ["device", "full"]), req);
  }
  if (pathname === "/v1/clone" && method === "POST") {
    audit.action = "clone";
    return await clone(ctx, ctx.auth.device(req, ip, audit), req);
  }
  if (pathname === "/v1/devices" && method === "GET") {
    return listDevices(ctx, client("list"), searchParams);
  }
  if (pathname === "/v1/events" && method === "GET") {
    return streamEvents(ctx, client("events"), req);
  }
  if (pathname === "/v1/whoami" && method === "GET") {
    return whoami(as("whoami", ["client", "device", "full"]));
  }
  const device = /^\/v1\/devices\/([^/]+)(\/props|\/rename)?$/.exec(pathname);
  if (device) {
    const ref = decodeURIComponent(device[1]);
    audit.device = ref.slice(0, 120);
    const sub = device[2];
    if (!sub && method === "GET") return getDevice(ctx, client("get"), ref);
    if (sub === "/props" && method === "PATCH") {
      return await patchProps(ctx, client("props"), ref, req);
    }
    if (sub === "/rename" && method === "POST") {
      return await renameDevice(ctx, full("rename"), ref, req);
    }
    if (!sub && method === "DELETE") {
      return removeDevice(ctx, full("remove"), ref, searchParams.get("force") === "1");
    }
  }
  if (pathname === "/v1/keys" && method === "GET") return listKeys(ctx, full("keys"));
  if (pathname === "/v1/keys" && method === "POST") {
    return await addKey(ctx, full("key-add"), req, audit);
  }
  const key = /^\/v1\/keys\/([A-Za-z0-9-]{1,40})$/.exec(pathname);
  if (key && method === "DELETE") return revokeKey(ctx, full("key-revoke"), key[1], audit);
  if (pathname === "/v1/shares" && method === "GET") return listShares(ctx, client("shares"));
  if (pathname === "/v1/shares" && method === "POST") {
    return await addShare(ctx, full("share-add"), req, audit);
  }
  const share = /^\/v1\/shares\/(\d{1,12})$/.exec(pathname);
  if (share && method === "DELETE") {
    return removeShare(ctx, full("share-remove"), Number(share[1]), audit);
  }
  if (pathname === "/v1/audit" && method === "GET") {
    return listAudit(ctx, full("audit"), searchParams);
  }
  if (pathname === "/" && method === "GET") {
    return new Response(`od relay ${VERSION}\n`, { headers: { "content-type": "text/plain" } });
  }
  throw new HttpError(404, `no such endpoint: ${method} ${pathname}`);
}
