/**
 * Reaching the relay from a daemon or client: API calls with fetch and links with od's own
 * WebSocket client (ws_client.ts), both trusting an optional private CA and honouring
 * HTTPS_PROXY/NO_PROXY. A refused upgrade is read as the relay's JSON sentence.
 */
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { proxyFor } from "./proxy.ts";
import {
  HandshakeError,
  openWebSocket,
  ProxyError,
  TlsError,
  UpgradeRefused,
} from "./ws_client.ts";
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
  ) {
    super(message);
  }
}

const HANDSHAKE_TIMEOUT_MS = 15_000; // a relay that takes longer is unreachable for practical use
const clients = new Map<string, Deno.HttpClient>();

/** The HTTP client trusting `ca`, shared per CA; undefined for the system roots only. */
function httpClient(ca?: string): Deno.HttpClient | undefined {
  if (!ca) return undefined;
  let client = clients.get(ca);
  if (!client) {
    client = Deno.createHttpClient({ caCerts: [ca] });
    clients.set(ca, client);
  }
  return client;
}

/** Closes the shared HTTP clients so a finished process leaves no resources open. */
export function closeHttpClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

function headers(target: RelayTarget): Record<string, string> {
  return {
    ...target.headers,
    authorization: `Bearer ${target.secret}`,
    "x-od-protocol": SUBPROTOCOL,
  };
}

function unreachable(target: RelayTarget, err: unknown): RelayError {
  if (err instanceof ProxyError || err instanceof HandshakeError) {
    return new RelayError(`cannot reach relay at ${target.url}: ${err.message}`, 0);
  }
  if (err instanceof TlsError) {
    const hint = /certificate|UnknownIssuer|issuer|verif/i.test(err.message)
      ? "; pass the relay's CA with --ca or OD_CA"
      : "";
    return new RelayError(
      `cannot reach relay at ${target.url}: TLS failed (${err.message})${hint}`,
      0,
    );
  }
  // fetch says only "fetch failed"; the reason is in the cause chain.
  let detail = err instanceof Error ? err.message : String(err);
  for (let e = err; e instanceof Error && e.cause; e = e.cause) {
    if (e.cause instanceof Error) detail = e.cause.message;
  }
  const proxy = proxyFor(new URL(target.url));
  const tls = new URL(target.url).protocol === "https:";
  const cause = proxy && /unsuccessful tunnel/i.test(detail)
    ? `the proxy ${proxy.host} refused to open a tunnel (${
      proxy.username
        ? "check the user and password in the proxy URL"
        : `if it requires a login, give it as http://USER:PASSWORD@${proxy.host} in HTTPS_PROXY`
    })`
    : /refused/i.test(detail)
    ? "connection refused"
    : /closed during the handshake/i.test(detail)
    ? "the relay closed the connection during the handshake"
    : tls && /certificate|UnknownIssuer|tls/i.test(detail) // never for http://
    ? `TLS failed (${detail.replace(/^.*?: /, "")}); pass the relay's CA with --ca or OD_CA`
    : /dns|lookup|resolve/i.test(detail)
    ? "host name not found"
    : /timed? ?out|aborted/i.test(detail)
    ? "timed out"
    : detail.replace(/ \(os error \d+\)$/, "");
  return new RelayError(`cannot reach relay at ${target.url}: ${cause}`, 0);
}

/** Calls a JSON API endpoint; resolves to the parsed body or throws RelayError. */
export async function callApi(
  target: RelayTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(new URL(path, target.url), {
      method,
      headers: {
        ...headers(target),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      client: httpClient(target.ca),
      signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS),
    });
  } catch (err) {
    throw unreachable(target, err);
  }
  const text = await res.text();
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
      timeoutMs: HANDSHAKE_TIMEOUT_MS,
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
    res = await fetch(new URL(path, target.url), {
      headers: headers(target),
      client: httpClient(target.ca),
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
