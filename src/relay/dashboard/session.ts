/**
 * Dashboard sessions on the relay: signing in with an account key opens a session whose random
 * secret lives only in an HttpOnly, SameSite=Strict cookie (Secure under TLS) and, hashed, in
 * the store. Every request with the cookie is checked against the store: the session must exist
 * and not have expired, and its key must not be revoked — so revoking the key, or signing out,
 * ends the session on the next request, on every relay sharing the store.
 *
 * Requests that change something must also come from the relay's own origin (Origin, and
 * Sec-Fetch-Site where the browser sends it) and carry the session's CSRF token, which is
 * derived from the secret: a page on another site can neither read it nor compute it.
 *
 * The store is reached through SessionBackend, which the store's SessionStore
 * (src/store/types.ts) satisfies on SQLite and PostgreSQL alike.
 */
import { timingSafeEqual } from "node:crypto";
import type { KeyRole } from "../../protocol/keys.ts";
import type { KeyInfo, SessionRecord } from "../../store/types.ts";
import { hashSecret } from "../../store/hash.ts";
import {
  CSRF_HEADER,
  SECURE_SESSION_COOKIE,
  SESSION_COOKIE,
  type SessionInfo,
} from "../../protocol/dashboard.ts";
import { HttpError } from "../http.ts";
import { FailureLimiter } from "../ratelimit.ts";
import type { RequestAudit } from "../audit.ts";

/** How long a session lasts after signing in: a working day, then the key is asked again. */
export const SESSION_TTL_MS = 12 * 3_600_000;

const SECRET_RE = /^od_session_[A-Za-z0-9_-]{43}$/;
const SAFE_METHODS = new Set(["GET", "HEAD"]);

type Awaitable<T> = T | Promise<T>;

/** What sessions need of the store: `store.sessions` of either store layer. */
export interface SessionBackend {
  create(hash: Uint8Array, keyId: string, createdAt: number, expiresAt: number): Awaitable<void>;
  find(hash: Uint8Array): Awaitable<SessionRecord | null>;
  remove(hash: Uint8Array): Awaitable<boolean>;
}

/** A session that authenticated a request. */
export interface Session {
  key: KeyInfo;
  /** The secret's hash, to end it. */
  hash: Uint8Array;
  secure: boolean;
  info: SessionInfo;
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** The CSRF token of a session: not the secret, but only computable from it. */
function csrfToken(secret: string): string {
  return base64url(hashSecret(`od-csrf:${secret}`));
}

/** The session secret a request's cookies carry, with whether it came in the Secure cookie. */
function cookieSecret(req: Request): { secret: string; secure: boolean } | null {
  const header = req.headers.get("cookie");
  if (!header) return null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    if (name === SECURE_SESSION_COOKIE || name === SESSION_COOKIE) {
      return { secret: part.slice(eq + 1).trim(), secure: name === SECURE_SESSION_COOKIE };
    }
  }
  return null;
}

/**
 * True if a browser request comes from the relay's own pages: its Origin names the host the
 * request was sent to. A proxy that forwards the host name without its port (nginx's `$host`)
 * is compared by name.
 */
export function sameOrigin(req: Request): boolean {
  const site = req.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin") return false;
  const origin = req.headers.get("origin");
  if (!origin) return false;
  let from: URL;
  try {
    from = new URL(origin);
  } catch {
    return false;
  }
  const host = new URL(req.url).host;
  return from.host === host || (!/:\d+$/.test(host) && from.hostname === host);
}

/** Opens, checks and ends dashboard sessions. */
export class SessionAuth {
  #backend: () => SessionBackend;
  #tls: boolean;
  #limiter = new FailureLimiter();

  /** `backend` is called per use, so a store swapped under a running relay is followed. */
  constructor(backend: () => SessionBackend, options: { tls: boolean }) {
    this.#backend = backend;
    this.#tls = options.tls;
  }

  /** True if the request carries a session cookie (valid or not). */
  present(req: Request): boolean {
    return cookieSecret(req) !== null;
  }

  /**
   * Opens a session for `key` (already authenticated); returns its description and the
   * Set-Cookie value. The cookie is Secure when the relay or the page the browser is on speaks
   * TLS (a TLS proxy in front says so with X-Forwarded-Proto, the browser with Origin).
   */
  async open(key: KeyInfo, req: Request, now = Date.now()) {
    const secret = `od_session_${base64url(crypto.getRandomValues(new Uint8Array(32)))}`;
    const expiresAt = now + SESSION_TTL_MS;
    await this.#backend().create(hashSecret(secret), key.id, now, expiresAt);
    const secure = this.#tls || req.headers.get("origin")?.startsWith("https:") === true ||
      req.headers.get("x-forwarded-proto") === "https";
    const name = secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
    const cookie = `${name}=${secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${
      SESSION_TTL_MS / 1000
    }${secure ? "; Secure" : ""}`;
    return { info: this.#info(key, secret, expiresAt), cookie };
  }

  #info(key: KeyInfo, secret: string, expiresAt: number): SessionInfo {
    return {
      account: key.account,
      keyId: key.id,
      role: key.role,
      csrf: csrfToken(secret),
      expiresAt: new Date(expiresAt).toISOString(),
    };
  }

  #fail(addr: string, message: string): never {
    this.#limiter.fail(addr);
    throw new HttpError(401, message);
  }

  /**
   * The session of a request, if its key has one of `roles`; 401/403/429 with a sentence
   * otherwise. Changes (any method but GET and HEAD) must also pass the origin and CSRF checks.
   */
  async check(req: Request, roles: readonly KeyRole[], audit: RequestAudit): Promise<Session> {
    const wait = this.#limiter.retryAfter(audit.ip);
    if (wait > 0) {
      throw new HttpError(429, `too many failed sign-ins or sessions; retry in ${wait} s`, {
        "retry-after": String(wait),
      });
    }
    const cookie = cookieSecret(req);
    // Not a failed guess, so not throttled: just nobody signed in.
    if (!cookie) throw new HttpError(401, "not signed in: sign in to the dashboard with your key");
    if (!SECRET_RE.test(cookie.secret)) this.#fail(audit.ip, "the session cookie is malformed");
    const hash = hashSecret(cookie.secret);
    const found = await this.#backend().find(hash);
    if (!found) this.#fail(audit.ip, "the session has ended; sign in again");
    const key = found.key;
    audit.keyId = key.id;
    audit.accountId = key.accountId;
    if (found.expiresAt <= Date.now()) {
      await this.#backend().remove(hash);
      this.#fail(audit.ip, "the session has expired; sign in again");
    }
    if (key.revokedAt !== null) {
      this.#fail(audit.ip, `key ${key.id} has been revoked, which ended this session`);
    }
    if (!roles.includes(key.role)) {
      throw new HttpError(
        403,
        `a ${key.role} key cannot do this; it needs a ${roles.join(" or ")} key`,
      );
    }
    if (!SAFE_METHODS.has(req.method)) {
      if (!sameOrigin(req)) {
        throw new HttpError(403, "a change through a session must come from the relay's own pages");
      }
      const token = req.headers.get(CSRF_HEADER) ?? "";
      const expected = new TextEncoder().encode(csrfToken(cookie.secret));
      const given = new TextEncoder().encode(token);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new HttpError(403, "the request's CSRF token is missing or wrong; reload the page");
      }
    }
    return {
      key,
      hash,
      secure: cookie.secure,
      info: this.#info(key, cookie.secret, found.expiresAt),
    };
  }

  /** Ends a session; returns the Set-Cookie value that clears its cookie. */
  async close(session: Session): Promise<string> {
    await this.#backend().remove(session.hash);
    const name = session.secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
    return `${name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${
      session.secure ? "; Secure" : ""
    }`;
  }
}
