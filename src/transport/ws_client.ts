/**
 * od's WebSocket client (RFC 6455, wire format in ws_codec.ts) for the links of daemons and
 * clients. Deno's built-in WebSocket turns TCP_NODELAY off, so every pair of small writes waits
 * for a delayed ACK: about 40 ms on each TLS handshake and on many round trips of an ssh
 * handshake through a tunnel. Here the socket is ours: NODELAY on, an HTTP CONNECT proxy when
 * the environment names one, TLS with an optional private CA, the 101 checked header by header,
 * and the relay's refusal read straight from the HTTP response.
 *
 * Lifecycle: `openWebSocket` resolves once the upgrade has succeeded; frames then arrive through
 * the SocketLink until it closes.
 */
import { MAX_FRAME_SIZE } from "../protocol/frame.ts";
import { headEnd, MAX_HEAD, parseResponseHead, type ResponseHead } from "./http1.ts";
import { proxyFor } from "./proxy.ts";
import { SocketLink } from "./socket_link.ts";
import { newHandshakeKey, upgradeResponseProblem } from "./ws_codec.ts";

/** How to open a client WebSocket. */
export interface WsOptions {
  url: URL;
  protocol: string;
  headers: Record<string, string>;
  /** PEM of a CA to trust besides the system roots. */
  ca?: string;
  timeoutMs: number;
  /** Bytes queued beyond which the peer counts as not reading (SocketLink's default if unset). */
  maxQueued?: number;
}

/** The relay answered the upgrade with something other than 101. */
export class UpgradeRefused extends Error {
  override name = "UpgradeRefused";
  constructor(readonly status: number, readonly headers: Headers, readonly body: string) {
    super(`HTTP ${status}`);
  }
}

const MAX_BODY = 64 * 1024; // a refusal is a sentence; more is not read
const MAX_MESSAGE = MAX_FRAME_SIZE; // one od frame per WebSocket message
const encoder = new TextEncoder();

/** Opens a WebSocket; throws UpgradeRefused for an HTTP answer, other errors for the network. */
export async function openWebSocket(opts: WsOptions): Promise<SocketLink> {
  let conn: Deno.Conn | null = null;
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new Error("timed out waiting for the relay"));
    }, opts.timeoutMs);
  });
  const connecting = connect(opts);
  connecting.then((c) => timedOut && c.close(), () => {}); // a late connection is not leaked
  try {
    conn = await Promise.race([connecting, timeout]);
    return await Promise.race([handshake(conn, opts), timeout]);
  } catch (err) {
    try {
      conn?.close();
    } catch {
      // already closed
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function handshake(conn: Deno.Conn, opts: WsOptions): Promise<SocketLink> {
  const key = newHandshakeKey();
  await writeAll(conn, encoder.encode(upgradeRequest(opts, key)));
  const reader = new HeadReader(conn, "the relay");
  const head = await reader.readHead();
  if (head.status !== 101) {
    throw new UpgradeRefused(head.status, head.headers, await reader.readBody(head.headers));
  }
  const problem = await upgradeResponseProblem(head.headers, key, opts.protocol);
  if (problem) throw new HandshakeError(`the relay's WebSocket handshake is invalid: ${problem}`);
  return new SocketLink(conn, {
    role: "client",
    maxMessage: MAX_MESSAGE,
    leftover: reader.rest(),
    nudge: opts.url.protocol === "wss:",
    maxQueued: opts.maxQueued,
  });
}

async function connect(opts: WsOptions): Promise<Deno.Conn> {
  const secure = opts.url.protocol === "wss:";
  const port = Number(opts.url.port || (secure ? 443 : 80));
  const host = opts.url.hostname.replace(/^\[|\]$/g, "");
  const proxy = proxyFor(opts.url);
  const first = proxy
    ? { hostname: proxy.hostname.replace(/^\[|\]$/g, ""), port: Number(proxy.port || 80) }
    : { hostname: host, port };
  const tcp = await Deno.connect(first);
  tcp.setNoDelay(true);
  // CONNECT always names the port (RFC 9110 §9.3.6), also when the URL leaves it implicit.
  const authority = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (proxy) await tunnelThrough(tcp, proxy, authority);
  if (!secure) return tcp;
  const tls = await Deno.startTls(tcp, {
    hostname: host,
    caCerts: opts.ca ? [opts.ca] : undefined,
    alpnProtocols: ["http/1.1"],
  });
  try {
    await tls.handshake();
  } catch (err) {
    tls.close();
    throw new TlsError(errText(err), { cause: err });
  }
  return tls;
}

async function tunnelThrough(conn: Deno.Conn, proxy: URL, authority: string): Promise<void> {
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  const auth = proxy.username
    ? `Proxy-Authorization: Basic ${btoa(String.fromCharCode(...encoder.encode(credentials)))}\r\n`
    : "";
  await writeAll(
    conn,
    encoder.encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`),
  );
  const reader = new HeadReader(conn, "the proxy");
  const head = await reader.readHead();
  if (head.status === 407 || head.status === 401) { // some proxies (tinyproxy) answer 401
    throw new ProxyError(
      proxy.username
        ? `the proxy ${proxy.host} rejected the user and password given in the proxy URL (HTTP ${head.status})`
        : `the proxy ${proxy.host} requires authentication (HTTP ${head.status}); give it as http://USER:PASSWORD@${proxy.host} in HTTPS_PROXY`,
    );
  }
  if (head.status !== 200) {
    throw new ProxyError(
      `the proxy ${proxy.host} refused to connect to ${authority} (HTTP ${head.status})`,
    );
  }
  if (reader.rest().length > 0) {
    throw new ProxyError(`the proxy ${proxy.host} sent data before the tunnel was open`);
  }
}

/** An HTTP CONNECT proxy refused; the message is meant for the user as it is. */
export class ProxyError extends Error {}

/** The relay answered, but not with a valid WebSocket handshake; the message says how. */
export class HandshakeError extends Error {}

/** The TLS handshake with the relay failed; the message is the runtime's. */
export class TlsError extends Error {}

function errText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/ \(os error \d+\)$/, "");
}

function upgradeRequest(opts: WsOptions, key: string): string {
  const lines = [
    `GET ${opts.url.pathname}${opts.url.search} HTTP/1.1`,
    `Host: ${opts.url.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    `Sec-WebSocket-Protocol: ${opts.protocol}`,
    ...Object.entries(opts.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return lines.join("\r\n") + "\r\n\r\n";
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Reads an HTTP response head (and a bounded body) from a connection, keeping what follows. */
class HeadReader {
  #conn: Deno.Conn;
  #who: string;
  #buf = new Uint8Array(0);

  constructor(conn: Deno.Conn, who: string) {
    this.#conn = conn;
    this.#who = who;
  }

  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(16 * 1024);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  async readHead(): Promise<ResponseHead> {
    let end: number;
    while ((end = headEnd(this.#buf)) < 0) {
      if (this.#buf.length > MAX_HEAD) {
        throw new Error(`${this.#who}'s response headers are too long`);
      }
      if (!(await this.#more())) {
        throw new Error(`${this.#who} closed the connection during the handshake`);
      }
    }
    const head = parseResponseHead(this.#buf.subarray(0, end));
    this.#buf = this.#buf.slice(end);
    return head;
  }

  async readBody(headers: Headers): Promise<string> {
    const length = Number(headers.get("content-length") ?? NaN);
    const want = Number.isFinite(length) ? Math.min(length, MAX_BODY) : MAX_BODY;
    while (this.#buf.length < want && await this.#more().catch(() => false));
    let body = new TextDecoder().decode(this.#buf.subarray(0, want));
    if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
      body = body.replace(/(^|\r\n)[0-9a-fA-F]+\r\n/g, "$1").replace(/\r\n/g, "");
    }
    return body;
  }

  rest(): Uint8Array {
    return this.#buf;
  }
}
