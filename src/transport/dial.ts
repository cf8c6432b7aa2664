/**
 * Reaching the relay from a daemon or client: API calls with od's HTTP client and links with
 * its WebSocket client, both opened by connection.ts (proxy from the environment or given
 * explicitly, CONNECT, TLS with an optional private CA). A refused upgrade or request is read as
 * the relay's JSON sentence; a failure to connect names the proxy or the relay that failed.
 */
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { openWebSocket, UpgradeRefused } from "./ws_client.ts";
import { httpRequest } from "./http_client.ts";
import { DialError } from "./dial_error.ts";
import type { SocketLink } from "./socket_link.ts";

/** Where the relay is and how to talk to it. */
export interface RelayTarget {
  /** Base URL, http(s)://host:port. */
  url: string;
  /** Bearer secret: an account key or a device credential. */
  secret: string;
  /** PEM text of a CA to trust in addition to the system's. */
  ca?: string;
  /** Extra request headers (the daemon's machine fingerprint). */
  headers?: Record<string, string>;
  /** An explicit proxy URL, `none` for a direct connection, unset for the environment's. */
  proxy?: string;
}

/** A refusal or failure reaching the relay, with the relay's sentence when it gave one. */
export class RelayError extends Error {
  override name = "RelayError";
  constructor(
    message: string,
    /** HTTP status, or 0 when the relay could not be reached at all. */
    readonly status: number,
    /** Seconds the relay asked us to wait (429 and some 503s). */
    readonly retryAfter: number | null = null,
    /** For a copied device state: the device it was copied from (header x-od-clone-of). */
    readonly cloneOf: string | null = null,
    /** For status 0: which hop failed and how. */
    readonly failure: DialError | null = null,
  ) {
    super(message);
  }
}

/**
 * A connection attempt (TCP, proxy, TLS, upgrade or response head) gives up after this long:
 * shorter than the default 15 s keepalive period, so a daemon never waits on one attempt longer
 * than it would take to notice a dead link, and long enough for a TLS handshake through a proxy
 * on a slow mobile link.
 */
export const CONNECT_TIMEOUT_MS = 10_000;

function headers(target: RelayTarget): Record<string, string> {
  return {
    ...target.headers,
    authorization: `Bearer ${target.secret}`,
    "x-od-protocol": SUBPROTOCOL,
  };
}

/** The sentence for a failure to reach the relay. */
function unreachable(target: RelayTarget, err: unknown): RelayError {
  if (err instanceof DialError) {
    return new RelayError(
      `cannot reach relay at ${target.url}: ${err.message}`,
      0,
      null,
      null,
      err,
    );
  }
  const detail = (err instanceof Error ? err.message : String(err)).replace(
    / \(os error \d+\)$/,
    "",
  );
  return new RelayError(`cannot reach relay at ${target.url}: ${detail}`, 0);
}

/** Calls a JSON API endpoint; resolves to the parsed body or throws RelayError. */
export async function callApi(
  target: RelayTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  let res: Response;
  const timeout = AbortSignal.timeout(CONNECT_TIMEOUT_MS + 20_000); // a stalled body ends too
  try {
    res = await httpRequest({
      url: new URL(path, target.url),
      method,
      headers: {
        ...headers(target),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      ca: target.ca,
      proxy: target.proxy,
      timeoutMs: CONNECT_TIMEOUT_MS,
      signal: timeout,
    });
  } catch (err) {
    throw unreachable(target, err);
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw unreachable(target, err);
  }
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    // not JSON: a proxy or another server answered
  }
  if (!res.ok) throw refusal(target, res, parsed, text);
  return parsed;
}

function refusal(
  target: RelayTarget,
  res: { status: number; headers: Headers },
  parsed: unknown,
  text: string,
): RelayError {
  const retry = Number(res.headers.get("retry-after"));
  const message = parsed && typeof parsed === "object" && "error" in parsed &&
      typeof parsed.error === "string"
    ? parsed.error
    : `relay at ${target.url} answered HTTP ${res.status}${
      text ? `: ${text.slice(0, 100).trim()}` : ""
    }`;
  return new RelayError(
    message,
    res.status,
    Number.isFinite(retry) && retry > 0 ? retry : null,
    res.headers.get("x-od-clone-of"),
  );
}

/**
 * Opens a link to `path` (with query `params`) and resolves once the WebSocket is open. A
 * refusal carries the relay's sentence, Retry-After and clone marker from its HTTP answer.
 */
export async function dialLink(
  target: RelayTarget,
  path: string,
  params: Record<string, string> = {},
): Promise<SocketLink> {
  const url = new URL(path, target.url);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  try {
    return await openWebSocket({
      url,
      protocol: SUBPROTOCOL,
      headers: headers(target),
      ca: target.ca,
      proxy: target.proxy,
      timeoutMs: CONNECT_TIMEOUT_MS,
    });
  } catch (err) {
    if (!(err instanceof UpgradeRefused)) throw unreachable(target, err);
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(err.body);
    } catch {
      // not JSON: another server answered
    }
    throw refusal(target, { status: err.status, headers: err.headers }, parsed, err.body);
  }
}

/** Starts a streaming GET (JSON lines); resolves to the open response or throws RelayError. */
export async function openStream(
  target: RelayTarget,
  path: string,
  signal?: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await httpRequest({
      url: new URL(path, target.url),
      method: "GET",
      headers: headers(target),
      ca: target.ca,
      proxy: target.proxy,
      timeoutMs: CONNECT_TIMEOUT_MS,
      signal,
    });
  } catch (err) {
    throw unreachable(target, err);
  }
  if (!res.ok) {
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    throw refusal(target, res, parsed, text);
  }
  return res;
}

/** Yields the non-empty lines of a streaming response body. */
export async function* lines(res: Response): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of res.body ?? []) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line !== "") yield line;
    }
  }
  if (buffered.trim() !== "") yield buffered.trim();
}
