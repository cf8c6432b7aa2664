/// <reference lib="dom" />
/**
 * The page's calls to the relay: the same /v1 API as the CLI, authenticated by the session
 * cookie the browser sends by itself. Changes carry the session's CSRF token. A refusal becomes
 * an ApiError with the relay's sentence; a 401 means the session ended (signed out elsewhere,
 * expired, or its key revoked) and goes to the handler that shows the sign-in form; a 429 is
 * retried after the Retry-After the relay names, a few times.
 */
import { CSRF_HEADER, type SessionInfo } from "../src/protocol/dashboard.ts";

/** A refused call: the HTTP status and the relay's one sentence. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const RETRIES_429 = 3; // a bulk edit of many devices can outrun the per-address budget briefly
const MAX_WAIT_S = 10;

let session: SessionInfo | null = null;
let onEnded: (reason: string) => void = () => {};

/** The signed-in session, or null. */
export function currentSession(): SessionInfo | null {
  return session;
}

/** Sets the session (after signing in or reading it) and what to do when it ends. */
export function setSession(s: SessionInfo | null, ended?: (reason: string) => void): void {
  session = s;
  if (ended) onEnded = ended;
}

async function errorOf(res: Response): Promise<ApiError> {
  let sentence = `the relay answered ${res.status} ${res.statusText}`.trim();
  try {
    const body = await res.json();
    if (typeof body?.error === "string") sentence = body.error;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, sentence);
}

/** Sends a request with the CSRF token on changes; retries 429s; throws ApiError on refusals. */
export async function request(
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers[CSRF_HEADER] = session.csrf;
  for (let attempt = 0;; attempt++) {
    const res = await fetch(path, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "same-origin",
      signal: options.signal,
    });
    if (res.ok) return res;
    if (res.status === 429 && attempt < RETRIES_429) {
      const wait = Math.min(MAX_WAIT_S, Number(res.headers.get("retry-after")) || 1);
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, wait * 1000));
      continue;
    }
    const err = await errorOf(res);
    if (res.status === 401 && session && !headers.authorization) {
      session = null;
      onEnded(err.message);
    }
    throw err;
  }
}

/** A JSON call; resolves to the parsed body. */
export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const res = await request(method, path, { body, signal });
  return await res.json() as T;
}

/** Query string from pairs, skipping empty values. */
export function query(pairs: [string, string | number | undefined][]): string {
  const params = new URLSearchParams();
  for (const [k, v] of pairs) if (v !== undefined && v !== "") params.append(k, String(v));
  const text = params.toString();
  return text ? `?${text}` : "";
}
