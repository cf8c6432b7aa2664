/**
 * The relay's routes as one table: method, path, who may call it, the audit action, and the
 * handler. The role matrix is this table — device keys enrol and nothing else; client keys
 * list, connect and edit properties; full keys also manage keys, shares and devices and read
 * the audit log; a device's own credential opens its link and enrols its clones — and
 * tests/access_test.ts walks it with every kind of caller.
 *
 * The web dashboard (src/relay/dashboard) adds its pages, assets and session endpoints. A
 * dashboard session cookie stands for the key it was opened with on every route for account
 * keys except the WebSocket ones, enrolment and signing in (acceptsSession); routes whose access
 * is "session" take nothing else. A request with an Authorization header is judged by that alone.
 *
 * The router authenticates before any handler runs (a WebSocket endpoint checks the protocol
 * version first, so a mismatched peer learns that before anything else), records who and what
 * for the audit row as soon as it is known, and turns a malformed path escape or request body
 * into a 400 with a sentence.
 */
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { BadRequest, type Health } from "../protocol/api.ts";
import type { KeyRole } from "../protocol/keys.ts";
import type { DeviceRecord, KeyInfo } from "../store/types.ts";
import { VERSION } from "../version.ts";
import { checkProtocol, HttpError, json } from "./http.ts";
import type { RelayContext } from "./context.ts";
import type { RequestAudit } from "./audit.ts";
import type { Upgrade } from "../transport/http_server.ts";
import { getDevice, listDevices, patchProps, removeDevice, renameDevice, whoami } from "./api.ts";
import { clone, enroll } from "./enroll.ts";
import { deviceLink, tunnel } from "./connect.ts";
import { streamEvents } from "./events_api.ts";
import { DASHBOARD_ROUTES } from "./dashboard/routes.ts";
import type { Session } from "./dashboard/session.ts";
import {
  addKey,
  addShare,
  listAudit,
  listKeys,
  listShares,
  removeShare,
  revokeKey,
} from "./manage_api.ts";

/**
 * Who may call a route: anyone, a device's own credential, a dashboard session only, account
 * keys of these roles (and sessions of them, where acceptsSession says so), or only another
 * relay of the mesh (proving the mesh key; no account key, credential or session counts).
 */
export type Access = "none" | "device-credential" | "session" | "mesh-peer" | readonly KeyRole[];

/** What a handler gets: the request, its decoded path parameters and who is calling. */
export interface Call {
  ctx: RelayContext;
  req: Request;
  audit: RequestAudit;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The account key, on routes for key roles. */
  key: KeyInfo;
  /** The device, on routes for a device credential. */
  device: DeviceRecord;
  /** The dashboard session, when one authenticated the call. */
  session?: Session;
}

/** One route. */
export interface Route {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  /** Path with `:name` parameters (see PARAMS). */
  path: string;
  access: Access;
  /** The action named in audit rows. */
  action: string;
  /** A WebSocket endpoint: the protocol version is checked before credentials. */
  websocket?: boolean;
  handler: (call: Call) => Response | Upgrade | Promise<Response | Upgrade>;
}

const CLIENT: readonly KeyRole[] = ["client", "full"];
const FULL: readonly KeyRole[] = ["full"];
const ANY_KEY: readonly KeyRole[] = ["client", "device", "full"];

/** Every route of the relay. */
export const ROUTES: readonly Route[] = [
  { method: "GET", path: "/v1/health", access: "none", action: "health", handler: () => health() },
  {
    method: "GET",
    path: "/v1/device",
    access: "device-credential",
    action: "device-link",
    websocket: true,
    handler: (c) => deviceLink(c.ctx, c.req, c.audit.ip, c.device),
  },
  {
    method: "GET",
    path: "/v1/tunnel",
    access: CLIENT,
    action: "tunnel",
    websocket: true,
    handler: (c) => tunnel(c.ctx, c.req, c.audit, c.key),
  },
  {
    method: "GET",
    path: "/v1/mesh",
    access: "mesh-peer",
    action: "mesh",
    websocket: true,
    handler: (c) => c.ctx.mesh.accept(c.req),
  },
  {
    method: "POST",
    path: "/v1/enroll",
    access: ["device", "full"],
    action: "enroll",
    handler: (c) => enroll(c.ctx, c.key, c.req),
  },
  {
    method: "POST",
    path: "/v1/clone",
    access: "device-credential",
    action: "clone",
    handler: (c) => clone(c.ctx, c.device, c.req),
  },
  {
    method: "GET",
    path: "/v1/whoami",
    access: ANY_KEY,
    action: "whoami",
    handler: (c) => whoami(c.key),
  },
  {
    method: "GET",
    path: "/v1/devices",
    access: CLIENT,
    action: "list",
    handler: (c) => listDevices(c.ctx, c.key, c.query),
  },
  {
    method: "GET",
    path: "/v1/devices/:device",
    access: CLIENT,
    action: "get",
    handler: (c) => getDevice(c.ctx, c.key, c.params.device),
  },
  {
    method: "PATCH",
    path: "/v1/devices/:device/props",
    access: CLIENT,
    action: "props",
    handler: (c) => patchProps(c.ctx, c.key, c.params.device, c.req),
  },
  {
    method: "POST",
    path: "/v1/devices/:device/rename",
    access: FULL,
    action: "rename",
    handler: (c) => renameDevice(c.ctx, c.key, c.params.device, c.req),
  },
  {
    method: "DELETE",
    path: "/v1/devices/:device",
    access: FULL,
    action: "remove",
    handler: (c) => removeDevice(c.ctx, c.key, c.params.device, c.query.get("force") === "1"),
  },
  {
    method: "GET",
    path: "/v1/events",
    access: CLIENT,
    action: "events",
    handler: (c) => streamEvents(c.ctx, c.key, c.req),
  },
  {
    method: "GET",
    path: "/v1/keys",
    access: FULL,
    action: "keys",
    handler: (c) => listKeys(c.ctx, c.key),
  },
  {
    method: "POST",
    path: "/v1/keys",
    access: FULL,
    action: "key-add",
    handler: (c) => addKey(c.ctx, c.key, c.req, c.audit),
  },
  {
    method: "DELETE",
    path: "/v1/keys/:key",
    access: FULL,
    action: "key-revoke",
    handler: (c) => revokeKey(c.ctx, c.key, c.params.key, c.audit),
  },
  {
    method: "GET",
    path: "/v1/shares",
    access: CLIENT,
    action: "shares",
    handler: (c) => listShares(c.ctx, c.key),
  },
  {
    method: "POST",
    path: "/v1/shares",
    access: FULL,
    action: "share-add",
    handler: (c) => addShare(c.ctx, c.key, c.req, c.audit),
  },
  {
    method: "DELETE",
    path: "/v1/shares/:share",
    access: FULL,
    action: "share-remove",
    handler: (c) => removeShare(c.ctx, c.key, Number(c.params.share), c.audit),
  },
  {
    method: "GET",
    path: "/v1/audit",
    access: FULL,
    action: "audit",
    handler: (c) => listAudit(c.ctx, c.key, c.query),
  },
  ...DASHBOARD_ROUTES,
];

/** What each path parameter may look like before it is decoded. */
const PARAMS: Record<string, string> = {
  device: "[^/]{1,300}",
  key: "[A-Za-z0-9-]{1,40}",
  share: "\\d{1,12}",
};

const compiled = ROUTES.map((route) => {
  const names: string[] = [];
  const source = route.path.replace(/:([a-z]+)/g, (_, name: string) => {
    names.push(name);
    return `(${PARAMS[name]})`;
  });
  return { route, names, re: new RegExp(`^${source}$`) };
});

function health(): Response {
  const body: Health = { ok: true, version: VERSION, protocol: SUBPROTOCOL };
  return json(body);
}

function decode(value: string, name: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new HttpError(400, `the ${name} in the path has a malformed %-escape`);
  }
}

/** The route for a method and path, with its raw parameters; 404 if there is none. */
export function findRoute(method: string, pathname: string): { route: Route; raw: string[] } {
  for (const { route, names, re } of compiled) {
    if (route.method !== method) continue;
    const m = re.exec(pathname);
    if (m) return { route, raw: names.flatMap((n, i) => [n, m[i + 1]]) };
  }
  throw new HttpError(404, `no such endpoint: ${method} ${pathname.slice(0, 200)}`);
}

/**
 * True if a dashboard session may stand for an account key on `route`: never on WebSockets (a
 * page on another site can open one with the browser's cookies), enrolment or signing in.
 */
export function acceptsSession(route: Route): boolean {
  return typeof route.access === "object" && !route.websocket &&
    route.action !== "enroll" && route.action !== "sign-in";
}

/** Routes one request; `audit` collects who and what for the audit row. */
export async function route(
  ctx: RelayContext,
  req: Request,
  audit: RequestAudit,
): Promise<Response | Upgrade> {
  const url = new URL(req.url);
  const { route, raw } = findRoute(req.method, url.pathname);
  audit.action = route.action;
  const params: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) params[raw[i]] = decode(raw[i + 1], raw[i]);
  const device = params.device ?? (route.websocket ? url.searchParams.get("device") : null);
  if (device !== null) audit.device = device.toLowerCase().slice(0, 120);
  if (route.websocket) {
    const service = url.searchParams.get("service");
    if (service !== null) audit.service = service.slice(0, 40);
    checkProtocol(req);
  }
  const call = { ctx, req, audit, params, query: url.searchParams } as Call;
  if (route.access === "device-credential") {
    call.device = await ctx.auth.device(req, audit.ip, audit);
  } else if (
    route.access === "session" ||
    (acceptsSession(route) && !req.headers.has("authorization") && ctx.sessions.present(req))
  ) {
    const roles = route.access === "session" ? ["client", "full"] as const : route.access;
    call.session = await ctx.sessions.check(req, roles as readonly KeyRole[], audit);
    call.key = call.session.key;
  } else if (route.access !== "none" && route.access !== "mesh-peer") {
    call.key = await ctx.auth.key(req, audit.ip, [...route.access], audit);
  }
  try {
    return await route.handler(call);
  } catch (err) {
    if (err instanceof BadRequest) throw new HttpError(400, err.message);
    throw err;
  }
}
