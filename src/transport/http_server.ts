/**
 * The relay's HTTP/1.1 server on sockets it owns (heads and bodies in http1.ts, WebSockets in
 * ws_codec.ts and socket_link.ts). Owning the socket is what Deno.serve cannot give: TCP_NODELAY
 * on every accepted connection, a WebSocket message limit enforced before a byte of an oversized
 * message is buffered, backpressure on every link, idle links that cost a couple of KiB, and a
 * 101 written together with the link's first frames.
 *
 * Handlers take a web `Request` and return a `Response`, or an `Upgrade` to accept a WebSocket.
 * Everything that can fail runs in the handler, before the 101; after it, `onOpen` runs inside
 * a boundary that closes that one link (1011) if it throws. A failure while serving one
 * connection closes that connection, is logged once, and touches nothing else.
 *
 * Lifecycle: `serveHttp` resolves once listening. When `signal` aborts, the listener closes, idle
 * keep-alive connections close, and `finished` resolves once requests in progress and open
 * links have ended (links are closed by their owners; a link still open after LINK_GRACE_MS is
 * dropped).
 */
import {
  ChunkedDecoder,
  headEnd,
  HttpParseError,
  MAX_HEAD,
  parseRequestHead,
  reasonPhrase,
  requestFraming,
  responseHead,
} from "./http1.ts";
import { type ByteConn, SocketLink } from "./socket_link.ts";
import { type AcceptedConn, type Acceptor, listenTls } from "./tls_listener.ts";
import { acceptFor, upgradeRequestProblem } from "./ws_codec.ts";
import { log } from "../shared/log.ts";

/** Facts about the connection a request came on. */
export interface ConnInfo {
  remoteAddr: Deno.NetAddr;
  secure: boolean;
}

/** Accepts a WebSocket upgrade; the handler's answer instead of a Response. */
export class Upgrade {
  constructor(
    readonly options: {
      /** The subprotocol to confirm in the 101. */
      protocol: string;
      /** Largest message the peer may send. */
      maxMessage: number;
      /** Queued bytes beyond which the peer counts as not reading. */
      maxQueued?: number;
      /** Messages sent in the same write as the 101 (the link's first frames). */
      first?: Uint8Array[];
      /** Runs once the 101 is written. A throw closes this link with 1011 and is logged. */
      onOpen(link: SocketLink): void;
    },
  ) {}
}

/** Handles one request. */
export type Handler = (req: Request, info: ConnInfo) => Promise<Response | Upgrade>;

/** Options for serveHttp. */
export interface ServeOptions {
  hostname: string;
  port: number;
  /** PEM certificate chain and key: serve HTTPS and WSS. */
  tls?: { cert: string; key: string };
  signal?: AbortSignal;
  handler: Handler;
}

/** A running server. */
export interface HttpServer {
  addr: Deno.NetAddr;
  finished: Promise<void>;
  /** Connections open now (HTTP and upgraded). */
  readonly connections: number;
}

const READ_CHUNK = 4 * 1024; // an HTTP request head fits; bodies stream through it
const BODY_READ = 64 * 1024; // largest read for a body of known length
const HEAD_TIMEOUT_MS = 10_000; // a client that sends no complete head in 10 s is dropped
const IDLE_TIMEOUT_MS = 60_000; // keep-alive connections idle longer are closed
const BODY_TIMEOUT_MS = 30_000; // a body that stalls this long ends the request
const LINK_GRACE_MS = 2_000; // on shutdown, links their owners did not close are dropped
const encoder = new TextEncoder();

/** Starts serving; resolves once the listener is bound. */
export async function serveHttp(options: ServeOptions): Promise<HttpServer> {
  // TLS through node:tls, whose sockets take NODELAY (see tls_listener.ts); plain TCP through
  // Deno.listen, whose connections are the leanest to hold and fastest to read.
  const listener: Acceptor = options.tls
    ? await listenTls({ hostname: options.hostname, port: options.port, ...options.tls })
    : Deno.listen({ hostname: options.hostname, port: options.port }) as unknown as Acceptor;
  const secure = options.tls !== undefined;
  const open = new Set<Connection>();
  let stopping = false;
  const accepting = (async () => {
    while (!stopping) {
      let conn: AcceptedConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (stopping || err instanceof Deno.errors.BadResource) break;
        log.debug("accept failed", { error: err }); // e.g. EMFILE; the next accept may work
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (!secure) (conn as unknown as Deno.TcpConn).setNoDelay(true);
      const c = new Connection(conn, { remoteAddr: conn.remoteAddr, secure });
      open.add(c);
      c.serve(options.handler).catch((err) => {
        log.debug("connection failed", { ip: c.info.remoteAddr.hostname, error: err });
      }).finally(() => open.delete(c));
    }
  })();
  const finished = new Promise<void>((resolve) => {
    const stop = async () => {
      stopping = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      for (const c of open) c.stopWhenIdle();
      const deadline = Date.now() + LINK_GRACE_MS;
      while (open.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const c of open) c.abort();
      resolve();
    };
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener("abort", stop, { once: true });
  });
  return {
    addr: listener.addr,
    finished,
    get connections() {
      return open.size;
    },
  };
}

/** One accepted connection: keep-alive requests until it closes or is upgraded. */
class Connection {
  readonly info: ConnInfo;
  #conn: ByteConn;
  #buf: Uint8Array = new Uint8Array(0); // bytes read but not yet consumed
  #idle = true; // between requests
  #stopping = false;
  #link: SocketLink | null = null;

  constructor(conn: ByteConn, info: ConnInfo) {
    this.#conn = conn;
    this.info = info;
  }

  /** Closes the connection now if it is between requests, else after the current one. */
  stopWhenIdle(): void {
    this.#stopping = true;
    if (this.#idle && !this.#link) this.abort();
  }

  /** Closes the connection at once. */
  abort(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async serve(handler: Handler): Promise<void> {
    let first = true;
    try {
      while (!this.#stopping) {
        const head = await this.#readHead(first ? HEAD_TIMEOUT_MS : IDLE_TIMEOUT_MS);
        first = false;
        if (!head) return;
        this.#idle = false;
        const keepGoing = await this.#request(head, handler);
        this.#idle = true;
        if (!keepGoing) return;
      }
    } finally {
      if (!this.#link) this.abort();
      else await this.#link.flushed(24 * 3600_000); // the link owns the connection now
    }
  }

  /** Reads one request head; null when the client closed or went idle between requests. */
  async #readHead(timeoutMs: number): Promise<Uint8Array | null> {
    const timer = setTimeout(() => this.abort(), timeoutMs);
    try {
      let end: number;
      while ((end = headEnd(this.#buf)) < 0) {
        if (this.#buf.length >= MAX_HEAD) {
          await this.#writeError(431, "the request head is too large");
          return null;
        }
        if (!plausibleStart(this.#buf)) {
          await this.#writeError(400, "this is not an HTTP request");
          return null;
        }
        const chunk = await this.#read();
        if (!chunk) return null;
        // Leading blank lines before a request are ignored (RFC 9112 §2.2).
        this.#buf = concat(this.#buf, chunk);
        while (this.#buf[0] === 13 && this.#buf[1] === 10) this.#buf = this.#buf.subarray(2);
      }
      const head = this.#buf.subarray(0, end);
      this.#buf = this.#buf.subarray(end);
      return head;
    } finally {
      clearTimeout(timer);
    }
  }

  async #read(size = READ_CHUNK): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(size);
    const n = await this.#conn.read(chunk).catch(() => null);
    if (n === null) return null;
    // A short read of a large buffer is copied out, so a client that trickles a body a byte at
    // a time cannot make each byte hold a whole buffer.
    return size > READ_CHUNK && n < size / 4 ? chunk.slice(0, n) : chunk.subarray(0, n);
  }

  /** Serves one request; returns whether the connection may carry another. */
  async #request(headBytes: Uint8Array, handler: Handler): Promise<boolean> {
    let head;
    try {
      head = parseRequestHead(headBytes);
    } catch (err) {
      if (!(err instanceof HttpParseError)) throw err;
      await this.#writeError(err.status, err.message);
      return false;
    }
    const scheme = this.info.secure ? "https" : "http";
    let url: URL;
    try {
      url = new URL(`${scheme}://${head.headers.get("host") || "localhost"}${head.target}`);
    } catch {
      await this.#writeError(400, "the Host header or request target is malformed");
      return false;
    }
    const framing = requestFraming(head.headers);
    const body = new BodyReader(this, framing);
    const req = new Request(url, {
      method: head.method,
      headers: head.headers,
      body: body.stream(head.method),
    });
    let answer: Response | Upgrade;
    try {
      answer = await handler(req, this.info);
    } catch (err) {
      log.error("request failed", {
        path: url.pathname,
        ip: this.info.remoteAddr.hostname,
        error: err,
      });
      answer = jsonError(500, "internal error");
    }
    if (answer instanceof Upgrade) return await this.#upgrade(head.headers, answer);
    const keepAlive = head.version === "1.1" &&
      !/\bclose\b/i.test(head.headers.get("connection") ?? "") && body.complete && !this.#stopping;
    await this.#respond(answer, head.method === "HEAD", keepAlive);
    return keepAlive;
  }

  async #upgrade(headers: Headers, up: Upgrade): Promise<boolean> {
    const problem = upgradeRequestProblem(headers);
    if (problem) {
      await this.#writeError(400, `not a valid WebSocket upgrade: ${problem}`);
      return false;
    }
    const accept = await acceptFor(headers.get("sec-websocket-key")!);
    const head = encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${up.options.protocol}\r\n\r\n`,
    );
    const link = new SocketLink(this.#conn, {
      role: "server",
      maxMessage: up.options.maxMessage,
      maxQueued: up.options.maxQueued,
      leftover: this.#buf,
      head,
    });
    this.#link = link;
    this.#buf = new Uint8Array(0);
    for (const frame of up.options.first ?? []) link.send(frame);
    try {
      up.options.onOpen(link);
    } catch (err) {
      log.error("link handler failed", { ip: this.info.remoteAddr.hostname, error: err });
      link.close(1011, "internal error");
    }
    return false;
  }

  async #respond(res: Response, headOnly: boolean, keepAlive: boolean): Promise<void> {
    const headers = new Headers(res.headers);
    headers.set("connection", keepAlive ? "keep-alive" : "close");
    const length = headers.get("content-length");
    const chunked = res.body !== null && length === null && !headOnly;
    if (res.body === null && length === null) headers.set("content-length", "0");
    if (chunked) headers.set("transfer-encoding", "chunked");
    await this.#write(
      responseHead(res.status, res.statusText || reasonPhrase(res.status), headers),
    );
    if (headOnly || res.body === null) {
      await res.body?.cancel();
      return;
    }
    const reader = res.body.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value.length === 0) continue;
        if (chunked) {
          await this.#write(concat(encoder.encode(`${value.length.toString(16)}\r\n`), value));
          await this.#write(encoder.encode("\r\n"));
        } else await this.#write(value);
      }
      if (chunked) await this.#write(encoder.encode("0\r\n\r\n"));
    } catch (err) {
      await reader.cancel(err).catch(() => {}); // the client went away: stop the producer
      throw err;
    }
  }

  async #writeError(status: number, message: string): Promise<void> {
    await this.#respond(jsonError(status, message), false, false).catch(() => {});
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** Body bytes: first what was read past the head, then the socket. */
  async takeBody(max: number): Promise<Uint8Array | null> {
    if (this.#buf.length > 0) {
      const out = this.#buf.subarray(0, max);
      this.#buf = this.#buf.subarray(out.length);
      return out;
    }
    const timer = setTimeout(() => this.abort(), BODY_TIMEOUT_MS);
    try {
      // A body of known length is read in pieces up to its size (at most BODY_READ), not 4 KiB
      // at a time: fewer reads and fewer buffers left for the collector under a flood.
      const chunk = await this.#read(Math.max(READ_CHUNK, Math.min(max, BODY_READ)));
      if (chunk && chunk.length > max) {
        this.#buf = chunk.subarray(max);
        return chunk.subarray(0, max);
      }
      return chunk;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Gives back bytes read past the end of a body (the next request's). */
  unread(bytes: Uint8Array): void {
    this.#buf = concat(bytes, this.#buf);
  }
}

/** Streams one request body off the connection, as its framing says. */
class BodyReader {
  complete: boolean;
  #conn: Connection;
  #left: number;
  #chunked: ChunkedDecoder | null;

  constructor(conn: Connection, framing: ReturnType<typeof requestFraming>) {
    this.#conn = conn;
    this.#left = framing.kind === "length" ? framing.length : 0;
    this.#chunked = framing.kind === "chunked" ? new ChunkedDecoder() : null;
    this.complete = framing.kind === "none";
  }

  stream(method: string): ReadableStream<Uint8Array> | null {
    if (this.complete || method === "GET" || method === "HEAD") return null;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await this.#next();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
  }

  async #next(): Promise<Uint8Array | null> {
    while (!this.complete) {
      if (this.#chunked) {
        const input = await this.#conn.takeBody(READ_CHUNK);
        if (!input) throw new Error("the client closed the connection mid-body");
        const parts = this.#chunked.push(input);
        if (this.#chunked.done) {
          this.complete = true;
          this.#conn.unread(this.#chunked.rest);
        }
        const data = concat(...parts);
        if (data.length > 0) return data;
        continue;
      }
      const input = await this.#conn.takeBody(Math.min(this.#left, 64 * 1024));
      if (!input) throw new Error("the client closed the connection mid-body");
      this.#left -= input.length;
      if (this.#left === 0) this.complete = true;
      return input;
    }
    return null;
  }
}

/** False once the bytes so far cannot begin a request line (a method of capitals, a space). */
function plausibleStart(buf: Uint8Array): boolean {
  for (let i = 0; i < buf.length && i < 32; i++) {
    if (buf[i] === 32) return i > 0;
    if (buf[i] < 65 || buf[i] > 90) return false;
  }
  return buf.length < 32;
}

function jsonError(status: number, message: string): Response {
  const body = encoder.encode(JSON.stringify({ error: message }));
  return new Response(body, {
    status,
    headers: { "content-type": "application/json", "content-length": String(body.length) },
  });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
