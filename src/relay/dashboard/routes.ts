/**
 * The dashboard's rows of the relay's route table (src/relay/routes.ts appends them): its pages,
 * each the same HTML shell that loads the embedded script and style, those two assets, and the
 * session endpoints (src/protocol/dashboard.ts).
 *
 * Pages are public, since the shell holds nothing but code, except that the keys and audit
 * pages answer 403 to a session of a client key (the shell then says why). Signing in takes a
 * key as a bearer secret, like every other call, and never a session cookie.
 */
import type { Route } from "../routes.ts";
import type { RelayContext } from "../context.ts";
import type { RequestAudit } from "../audit.ts";
import { HttpError, json } from "../http.ts";
import type { SignedOut } from "../../protocol/dashboard.ts";
import type { KeyInfo } from "../../store/types.ts";
import type { Session } from "./session.ts";
import { assetResponse, pageResponse } from "./pages.ts";
import { ASSETS } from "./assets.ts";

/** Pages only a full key may open: the shell answers 403 to a client key's session. */
const FULL_PAGES = ["/keys", "/audit"];
/** Pages anyone may load: the shell signs in or shows the page. */
const PAGES = ["/", "/device/:device", "/shares"];

/** The page shell for a full-key page: 403 for a client key's session, else 200. */
async function fullPage(ctx: RelayContext, req: Request, audit: RequestAudit) {
  if (!ctx.sessions.present(req)) return pageResponse(200);
  try {
    await ctx.sessions.check(req, ["full"], audit);
    return pageResponse(200);
  } catch (err) {
    if (err instanceof HttpError && err.status === 403) return pageResponse(403);
    return pageResponse(200); // an ended session: the shell asks to sign in
  }
}

/** POST /v1/session: opens a session for the key presented. */
async function signIn(ctx: RelayContext, key: KeyInfo, req: Request, audit: RequestAudit) {
  const { info, cookie } = await ctx.sessions.open(key, req);
  ctx.audit.record(audit, "ok", { reason: "signed in to the dashboard" });
  return json(info, 201, { "set-cookie": cookie });
}

/** DELETE /v1/session: ends the session and clears its cookie. */
async function signOut(ctx: RelayContext, session: Session, audit: RequestAudit) {
  const cookie = await ctx.sessions.close(session);
  ctx.audit.record(audit, "ok", { reason: "signed out of the dashboard" });
  const body: SignedOut = { signedOut: true };
  return json(body, 200, { "set-cookie": cookie });
}

/** The dashboard's routes. */
export const DASHBOARD_ROUTES: readonly Route[] = [
  ...PAGES.map((path): Route => ({
    method: "GET",
    path,
    access: "none",
    action: "page",
    handler: () => pageResponse(200),
  })),
  ...FULL_PAGES.map((path): Route => ({
    method: "GET",
    path,
    access: "none",
    action: "page",
    handler: (c) => fullPage(c.ctx, c.req, c.audit),
  })),
  ...Object.keys(ASSETS).map((name): Route => ({
    method: "GET",
    path: `/assets/${name}`,
    access: "none",
    action: "asset",
    handler: (c) => assetResponse(name, c.req),
  })),
  {
    method: "POST",
    path: "/v1/session",
    access: ["client", "full"],
    action: "sign-in",
    handler: (c) => signIn(c.ctx, c.key, c.req, c.audit),
  },
  {
    // Public, so that a page loaded by nobody in particular is not a refusal to audit: 204
    // without a session cookie, the session with a valid one, 401 with an ended one.
    method: "GET",
    path: "/v1/session",
    access: "none",
    action: "session",
    handler: async (c) =>
      c.ctx.sessions.present(c.req)
        ? json((await c.ctx.sessions.check(c.req, ["client", "full"], c.audit)).info)
        : new Response(null, { status: 204, headers: { "cache-control": "no-store" } }),
  },
  {
    method: "DELETE",
    path: "/v1/session",
    access: "session",
    action: "sign-out",
    handler: (c) => signOut(c.ctx, c.session!, c.audit),
  },
];
