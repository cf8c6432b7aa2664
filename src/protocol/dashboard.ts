/**
 * The web dashboard's part of the HTTP API, shared by the relay (src/relay/dashboard) and the
 * browser code (web/):
 *
 *   POST   /v1/session   (bearer: a client or full key) → 201 SessionInfo + the session cookie
 *   GET    /v1/session   (the session cookie)           → SessionInfo, or 204 without a cookie
 *   DELETE /v1/session   (cookie, Origin, CSRF header)  → { signedOut: true } + a cleared cookie
 *
 * With the session cookie the browser calls the same /v1 endpoints as the CLI, with the role of
 * the key it signed in with (never the WebSocket ones, never enrolment). Every request that
 * changes something must come from the relay's own origin and carry CSRF_HEADER with the
 * session's token.
 */
import type { KeyRole } from "./keys.ts";

/** The request header that carries a session's CSRF token. */
export const CSRF_HEADER = "x-od-csrf";

/** The session cookie's name over plain HTTP. */
export const SESSION_COOKIE = "od_session";
/** The session cookie's name under TLS: `__Host-` makes browsers demand Secure, Path=/ and no Domain. */
export const SECURE_SESSION_COOKIE = "__Host-od_session";

/** A signed-in dashboard session as the relay describes it to the page. */
export interface SessionInfo {
  account: string;
  keyId: string;
  role: KeyRole;
  /** The token to send in CSRF_HEADER with every change. */
  csrf: string;
  /** When the session ends (ISO 8601); signing in again starts a new one. */
  expiresAt: string;
}

/** DELETE /v1/session answer. */
export interface SignedOut {
  signedOut: true;
}
