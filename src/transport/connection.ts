/**
 * One connection to the relay for od's own HTTP and WebSocket clients: TCP with NODELAY, an
 * HTTP CONNECT tunnel through a proxy when one applies (proxy.ts), then TLS with an optional
 * private CA. Every failure is a DialError naming the hop that failed and its address, and the
 * whole attempt has one deadline, so a silent network costs a bounded wait, never the kernel's
 * two minutes of SYN retries.
 *
 * Lifecycle: `openConnection` resolves with an open byte connection and the proxy used; on any
 * failure or timeout the half-open connection is closed before the error is thrown.
 */
import { headEnd, MAX_HEAD, parseResponseHead, type ResponseHead } from "./http1.ts";
import { proxyAddress, proxyFor, redactProxy } from "./proxy.ts";
import { connectFailure, DialError, errText, type Hop } from "./dial_error.ts";

/** How to reach the relay. */
export interface ConnectOptions {
  /** The relay URL (http, https, ws or wss). */
  url: URL;
  /** PEM of a CA to trust besides the system roots. */
  ca?: string;
  /** An explicit proxy URL, `none`, or undefined for the environment's (proxy.ts). */
  proxy?: string;
  /** When the attempt gives up (Date.now() time). */
  deadline: number;
}

/** An open connection and what it went through. */
export interface OpenConnection {
  conn: Deno.Conn;
  /** The proxy used, or null for a direct connection. */
  proxy: URL | null;
  /** `host:port` of the relay. */
  relay: string;
}

const encoder = new TextEncoder();

/** Host and port of a URL, the port always shown. */
export function urlAddress(url: URL): { host: string; port: number; address: string } {
  const secure = url.protocol === "https:" || url.protocol === "wss:";
  const port = Number(url.port || (secure ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return { host, port, address: `${host.includes(":") ? `[${host}]` : host}:${port}` };
}

/** Opens TCP (through the proxy) and TLS to the relay; throws DialError. */
export async function openConnection(opts: ConnectOptions): Promise<OpenConnection> {
  const { host, port, address: relay } = urlAddress(opts.url);
  const proxy = proxyFor(opts.url, opts.proxy);
  const proxyAt = proxy ? proxyAddress(proxy) : "";
  const first: { hop: Hop; address: string; what: string } = proxy
    ? { hop: "proxy", address: proxyAt, what: `the proxy ${proxyAt}` }
    : { hop: "relay", address: relay, what: `the relay ${relay}` };
  const step = new Step(opts.deadline);
  let tcp: Deno.TcpConn;
  try {
    tcp = await step.run(
      Deno.connect({
        hostname: proxy ? proxy.hostname.replace(/^\[|\]$/g, "") : host,
        port: proxy ? Number(proxy.port || 80) : port,
      }),
      (err) => connectFailure(err, first.hop, first.address, first.what),
      () => {
        const e = new DialError(
          first.hop,
          "timeout",
          first.address,
          `${first.what} did not answer within ${step.seconds} s (no reply to the connection attempt)`,
        );
        e.silent = true; // nothing came back: most likely this device's own network is out
        return e;
      },
      (c) => c.close(),
    );
  } catch (err) {
    if (err instanceof DialError) err.proxy = proxy && redactProxy(proxy);
    throw err;
  }
  try {
    tcp.setNoDelay(true);
    if (proxy) {
      await step.run(
        tunnel(tcp, proxy, relay),
        (e) =>
          e instanceof DialError ? e : new DialError(
            "proxy",
            "protocol",
            proxyAt,
            `the proxy ${proxyAt} did not answer the CONNECT with HTTP (${errText(e)})`,
          ),
        () => proxyTimeout(proxy, relay, step),
      );
    }
    if (opts.url.protocol !== "https:" && opts.url.protocol !== "wss:") {
      return { conn: tcp, proxy, relay };
    }
    const tls = await handshakeTls(tcp, host, relay, opts.ca, step);
    return { conn: tls, proxy, relay };
  } catch (err) {
    try {
      tcp.close();
    } catch {
      // already closed (TLS owns it)
    }
    if (err instanceof DialError) err.proxy = proxy && redactProxy(proxy);
    throw err;
  }
}

/** TLS over `tcp` to the relay, within the attempt's deadline; throws DialError. */
async function handshakeTls(
  tcp: Deno.TcpConn,
  host: string,
  relay: string,
  ca: string | undefined,
  step: Step,
): Promise<Deno.TlsConn> {
  const tls = await Deno.startTls(tcp, {
    hostname: host,
    caCerts: ca ? [ca] : undefined,
    alpnProtocols: ["http/1.1"],
  });
  try {
    await step.run(
      tls.handshake(),
      (err) => tlsFailure(err, relay),
      () =>
        new DialError(
          "relay",
          "timeout",
          relay,
          `the relay ${relay} accepted the connection but did not finish the TLS handshake ` +
            `within ${step.seconds} s`,
        ),
    );
    return tls;
  } catch (err) {
    try {
      tls.close();
    } catch {
      // already closed
    }
    throw err;
  }
}

function proxyTimeout(proxy: URL, relay: string, step: Step): DialError {
  const e = new DialError(
    "proxy",
    "timeout",
    proxyAddress(proxy),
    `the proxy ${proxyAddress(proxy)} did not open a tunnel to ${relay} within ${step.seconds} s ` +
      `(the relay may be unreachable from the proxy)`,
  );
  e.silent = true;
  return e;
}

function tlsFailure(err: unknown, relay: string): DialError {
  const text = errText(err);
  if (/reset|closed|eof|broken pipe/i.test(text) && !/certificate/i.test(text)) {
    return new DialError(
      "relay",
      "closed",
      relay,
      `the relay ${relay} closed the connection during the TLS handshake`,
      {
        cause: err,
      },
    );
  }
  const hint = /certificate|UnknownIssuer|issuer|verif/i.test(text)
    ? "; pass the relay's CA with --ca or OD_CA"
    : "";
  return new DialError(
    "relay",
    "tls",
    relay,
    `TLS failed with the relay ${relay} (${text})${hint}`,
    {
      cause: err,
    },
  );
}

/** Runs the steps of one attempt against a single deadline. */
export class Step {
  #deadline: number;
  #started = Date.now();

  constructor(deadline: number) {
    this.#deadline = deadline;
  }

  /** The whole attempt's budget in seconds, for messages. */
  get seconds(): number {
    return Math.round((this.#deadline - this.#started) / 1000);
  }

  /**
   * Awaits `work` until the deadline. A rejection becomes `fail(err)`, the deadline
   * `timeout()`; a result that arrives after the deadline is handed to `discard`.
   */
  async run<T>(
    work: Promise<T>,
    fail: (err: unknown) => unknown,
    timeout: () => unknown,
    discard?: (late: T) => void,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let late = false;
    const expired = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), Math.max(0, this.#deadline - Date.now()));
    });
    work.then((v) => late && discard?.(v), () => {});
    try {
      const result = await Promise.race([work.then((v) => ({ v })), expired]);
      if (result === "expired") {
        late = true;
        throw timeout();
      }
      return result.v;
    } catch (err) {
      if (late) throw err;
      throw fail(err);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Asks the proxy for a tunnel to `authority`; throws DialError naming the proxy or the relay. */
async function tunnel(conn: Deno.Conn, proxy: URL, authority: string): Promise<void> {
  const at = proxyAddress(proxy);
  const user = decodeURIComponent(proxy.username);
  const auth = proxy.username
    ? `Proxy-Authorization: Basic ${
      btoa(String.fromCharCode(...encoder.encode(`${user}:${decodeURIComponent(proxy.password)}`)))
    }\r\n`
    : "";
  // CONNECT always names the port (RFC 9110 §9.3.6), also when the URL leaves it implicit.
  try {
    await writeAll(
      conn,
      encoder.encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`),
    );
  } catch (err) {
    throw connectFailure(err, "proxy", at, `the proxy ${at}`);
  }
  const reader = new HeadReader(conn);
  let head: ResponseHead | null;
  try {
    head = await reader.readHead();
  } catch (err) {
    throw err instanceof DialError ? err : connectFailure(err, "proxy", at, `the proxy ${at}`);
  }
  if (head === null) {
    throw new DialError(
      "proxy",
      "closed",
      at,
      `the proxy ${at} closed the connection instead of opening a tunnel to ${authority}`,
    );
  }
  if (head.status === 200) {
    if (reader.rest().length > 0) {
      throw new DialError("proxy", "protocol", at, `the proxy ${at} sent data before the tunnel`);
    }
    return;
  }
  throw connectRefusal(head, proxy, authority);
}

/** A proxy's non-200 answer to CONNECT as a sentence (squid says more in X-Squid-Error). */
function connectRefusal(head: ResponseHead, proxy: URL, authority: string): DialError {
  const at = proxyAddress(proxy);
  const status = `HTTP ${head.status}${head.reason ? ` ${head.reason}` : ""}`;
  if (head.status === 407 || head.status === 401) { // some proxies (tinyproxy) answer 401
    const user = decodeURIComponent(proxy.username);
    return new DialError(
      "proxy",
      "auth",
      at,
      proxy.username
        ? `the proxy ${at} rejected the user "${user}" and its password (${status}); check ` +
          `the credentials in the proxy URL`
        : `the proxy ${at} requires a login (${status}); give it in the proxy URL as ` +
          `http://USER:PASSWORD@${at}`,
    );
  }
  const squid = head.headers.get("x-squid-error") ?? "";
  const errno = Number(/ (\d+)$/.exec(squid)?.[1] ?? NaN);
  if (head.status === 502 || head.status === 503 || head.status === 504) {
    const kind = /DNS/.test(squid)
      ? "dns"
      : errno === 111
      ? "refused"
      : errno === 110 || head.status === 504
      ? "timeout"
      : errno === 101 || errno === 113
      ? "unreachable"
      : "denied";
    const why = {
      dns: "its DNS lookup of the relay failed",
      refused: "the relay refused the connection",
      timeout: "the relay did not answer",
      unreachable: "the relay is unreachable from it",
      denied: "",
    }[kind];
    return new DialError(
      "relay",
      kind,
      authority,
      `the proxy ${at} could not connect to ${authority}${why ? `: ${why}` : ""} (${status}${
        squid ? `, ${squid}` : ""
      })`,
    );
  }
  return new DialError(
    "proxy",
    "denied",
    at,
    `the proxy ${at} refused a tunnel to ${authority} (${status}${squid ? `, ${squid}` : ""})`,
  );
}

/** Writes all of `bytes`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

const MAX_BODY = 64 * 1024; // a refusal is a sentence; more is not read

/** Reads an HTTP response head (and a bounded body) from a connection, keeping what follows. */
export class HeadReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
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

  /** The head, or null if the peer closed before sending one; throws if it is malformed. */
  async readHead(): Promise<ResponseHead | null> {
    let end: number;
    while ((end = headEnd(this.#buf)) < 0) {
      if (this.#buf.length > MAX_HEAD) throw new Error("the response headers are too long");
      if (!(await this.#more())) return null;
    }
    const head = parseResponseHead(this.#buf.subarray(0, end));
    this.#buf = this.#buf.slice(end);
    return head;
  }

  /** A refusal's body, at most MAX_BODY bytes, as text. */
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

  /** Bytes read past the head. */
  rest(): Uint8Array {
    return this.#buf;
  }
}
