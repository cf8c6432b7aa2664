/**
 * od's own WebSocket client (RFC 6455) for the links of daemons and clients. Deno's built-in
 * WebSocket turns TCP_NODELAY off, so every pair of small writes waits for a delayed ACK: about
 * 40 ms on each TLS handshake and on many round trips of an ssh handshake through a tunnel. Here
 * the socket is ours: NODELAY on, an HTTP CONNECT proxy when the environment names one, TLS with
 * an optional private CA, and the relay's refusal read straight from the HTTP response.
 *
 * Lifecycle: `openWebSocket` resolves once the upgrade has succeeded; frames then arrive through
 * the FrameLink until it closes. Incoming messages larger than the protocol allows close the link
 * before they are buffered.
 */
import { MAX_FRAME_SIZE } from "../protocol/frame.ts";
import { BaseLink, CloseCode, type FrameLink } from "./link.ts";
import { proxyFor } from "./proxy.ts";

/** How to open a client WebSocket. */
export interface WsOptions {
  url: URL;
  protocol: string;
  headers: Record<string, string>;
  /** PEM of a CA to trust besides the system roots. */
  ca?: string;
  timeoutMs: number;
}

/** The relay answered the upgrade with something other than 101. */
export class UpgradeRefused extends Error {
  override name = "UpgradeRefused";
  constructor(readonly status: number, readonly headers: Headers, readonly body: string) {
    super(`HTTP ${status}`);
  }
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEADERS = 16 * 1024;
const MAX_BODY = 64 * 1024;
const MAX_MESSAGE = MAX_FRAME_SIZE + 1024; // a frame plus room for WebSocket framing
const READ_SIZE = 128 * 1024;
const COALESCE = 256 * 1024; // queued small frames are written together, up to this
const NUDGE_MS = 2; // well inside the 40 ms delayed-ACK timer, long enough to ride on a reply
const EMPTY_PONG = () => encodeClientFrame(0xa, new Uint8Array(0));
const encoder = new TextEncoder();

/** Opens a WebSocket; throws UpgradeRefused for an HTTP answer, other errors for the network. */
export async function openWebSocket(opts: WsOptions): Promise<ClientSocketLink> {
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

async function handshake(conn: Deno.Conn, opts: WsOptions): Promise<ClientSocketLink> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await writeAll(conn, encoder.encode(upgradeRequest(opts, key)));
  const reader = new ByteReader(conn);
  const head = await reader.readHead();
  if (head.status !== 101) {
    throw new UpgradeRefused(head.status, head.headers, await reader.readBody(head.headers));
  }
  const accept = await sha1Base64(key + GUID);
  if (head.headers.get("sec-websocket-accept") !== accept) {
    throw new Error("the relay's WebSocket handshake is invalid");
  }
  if (head.headers.get("sec-websocket-protocol") !== opts.protocol) {
    throw new Error(`the relay did not accept subprotocol ${opts.protocol}`);
  }
  return new ClientSocketLink(conn, reader.rest(), opts.url.protocol === "wss:");
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
  if (proxy) await tunnelThrough(tcp, proxy, opts.url.host || `${host}:${port}`);
  if (!secure) return tcp;
  return await Deno.startTls(tcp, {
    hostname: host,
    caCerts: opts.ca ? [opts.ca] : undefined,
    alpnProtocols: ["http/1.1"],
  });
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
  const head = await new ByteReader(conn).readHead();
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
}

/** An HTTP CONNECT proxy refused; the message is meant for the user as it is. */
export class ProxyError extends Error {}

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

async function sha1Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Reads an HTTP response head (and body) from a connection, keeping what follows. */
class ByteReader {
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

  async readHead(): Promise<{ status: number; headers: Headers }> {
    let end: number;
    while ((end = indexOfCrlfCrlf(this.#buf)) < 0) {
      if (this.#buf.length > MAX_HEADERS) {
        throw new Error("the relay's response headers are too long");
      }
      if (!(await this.#more())) throw new Error("the connection closed during the handshake");
    }
    const text = new TextDecoder().decode(this.#buf.subarray(0, end));
    this.#buf = this.#buf.slice(end + 4);
    const [statusLine, ...lines] = text.split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
    if (!Number.isFinite(status)) throw new Error("the relay did not answer with HTTP");
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    return { status, headers };
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

function indexOfCrlfCrlf(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Encodes one client frame: FIN, opcode, mask bit, length, random mask, masked payload. */
export function encodeClientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const lenBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = 2 + lenBytes + 4;
  // Place the payload on a 4-byte boundary so it can be masked a word at a time.
  const pad = (4 - (head % 4)) % 4;
  const out = new Uint8Array(new ArrayBuffer(pad + head + n), pad, head + n);
  out[0] = 0x80 | opcode;
  if (lenBytes === 0) out[1] = 0x80 | n;
  else if (lenBytes === 2) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer, out.byteOffset + 2, 8).setBigUint64(0, BigInt(n));
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, head - 4);
  out.set(payload, head);
  maskInPlace(out.subarray(head), mask);
  return out;
}

/** XORs `data` with the 4-byte mask, a word at a time where aligned. */
export function maskInPlace(data: Uint8Array, mask: Uint8Array): void {
  let i = 0;
  if (data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >> 2);
    const key = new Uint32Array(mask.slice().buffer)[0]; // same byte order as the words
    for (let w = 0; w < words.length; w++) words[w] ^= key;
    i = words.length << 2;
  }
  for (; i < data.length; i++) data[i] ^= mask[i & 3];
}

/** A FrameLink over od's client WebSocket. */
export class ClientSocketLink extends BaseLink implements FrameLink {
  #conn: Deno.Conn;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #socketClosed: Promise<void>;
  #resolveSocketClosed!: () => void;
  #fragments: Uint8Array[] = [];
  #closeSent = false;
  #dropTimer: ReturnType<typeof setTimeout> | undefined;
  #nudge: boolean;
  #nudgeTimer: ReturnType<typeof setTimeout> | undefined;
  #lastWrite = 0;

  /**
   * `nudge` is for TLS relays: Deno's TLS server sockets keep Nagle on, so the relay holds a
   * small write until its previous one is acknowledged, and our kernel delays that ACK up to
   * 40 ms when we have nothing to send. After receiving data, if we send nothing within
   * NUDGE_MS, an empty WebSocket pong (6 bytes, ignored by the relay) carries the ACK at once.
   */
  constructor(conn: Deno.Conn, leftover: Uint8Array, nudge = false) {
    super();
    this.#conn = conn;
    this.#nudge = nudge;
    this.#socketClosed = new Promise((r) => (this.#resolveSocketClosed = r));
    this.#readLoop(leftover).catch((err) => this.#fail(CloseCode.PROTOCOL, errText(err)));
  }

  get bufferedAmount(): number {
    return this.#queued;
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.#enqueue(encodeClientFrame(0x2, frame));
  }

  close(code: number = CloseCode.NORMAL, reason = ""): void {
    if (this.closed) return;
    this.#sendClose(code, reason);
    this.finish(code, reason);
    // The relay answers with its own close frame; give it a moment, then drop the socket.
    this.#dropLater(1000);
  }

  /** Resolves when the socket has really closed, or after `ms`. */
  async flushed(ms = 2000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#socketClosed, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    const text = encoder.encode(reason).subarray(0, 120);
    const payload = new Uint8Array(2 + text.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(text, 2);
    this.#enqueue(encodeClientFrame(0x8, payload));
  }

  #enqueue(bytes: Uint8Array): void {
    this.#lastWrite = performance.now();
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#writing) this.#pump();
  }

  async #pump(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        let chunk = this.#queue.shift()!;
        // Many small frames queued at once go out in one write.
        if (this.#queue.length > 0 && chunk.length < COALESCE) {
          const parts = [chunk];
          let size = chunk.length;
          while (this.#queue.length > 0 && size + this.#queue[0].length <= COALESCE) {
            size += this.#queue[0].length;
            parts.push(this.#queue.shift()!);
          }
          chunk = new Uint8Array(size);
          let off = 0;
          for (const p of parts) {
            chunk.set(p, off);
            off += p.length;
          }
        }
        await writeAll(this.#conn, chunk);
        this.#queued -= chunk.length;
      }
    } catch (err) {
      this.#fail(1006, `writing to the relay failed: ${errText(err)}`);
    } finally {
      this.#writing = false;
    }
  }

  // Payloads of at least this size are handed on as views of the read buffer; smaller ones are
  // copied, so a buffer that held only small messages can be read into again.
  static readonly #ZERO_COPY = 4096;

  async #readLoop(leftover: Uint8Array): Promise<void> {
    let buf = leftover;
    let pinned = true; // whether views of `buf` were handed out
    while (true) {
      let off = 0;
      while (true) {
        const frame = parseHeader(buf, off);
        if (!frame) break;
        if (frame.masked) return this.#fail(CloseCode.PROTOCOL, "the relay sent a masked frame");
        if (frame.length > MAX_MESSAGE) {
          return this.#fail(CloseCode.PROTOCOL, `the relay sent a ${frame.length}-byte message`);
        }
        if (buf.length < frame.start + frame.length) break;
        let payload = buf.subarray(frame.start, frame.start + frame.length);
        if (payload.length < ClientSocketLink.#ZERO_COPY) payload = payload.slice();
        else pinned = true;
        this.#onMessage(frame.fin, frame.opcode, payload);
        off = frame.start + frame.length;
      }
      const rest = buf.subarray(off);
      let next: Uint8Array;
      if (!pinned && buf.buffer.byteLength >= rest.length + READ_SIZE / 2) {
        next = new Uint8Array(buf.buffer, 0, buf.buffer.byteLength);
        next.copyWithin(0, rest.byteOffset, rest.byteOffset + rest.length);
      } else {
        next = new Uint8Array(Math.max(READ_SIZE, rest.length + READ_SIZE));
        next.set(rest);
      }
      pinned = false;
      const n = await this.#conn.read(next.subarray(rest.length)).catch(() => null);
      if (n === null) return this.#fail(1006, "the relay closed the connection");
      // Also for a partial frame: the relay may be holding back the frame's last few bytes.
      this.#scheduleNudge();
      buf = next.subarray(0, rest.length + n);
    }
  }

  #onMessage(fin: boolean, opcode: number, payload: Uint8Array): void {
    if (opcode === 0x9) return this.#enqueue(encodeClientFrame(0xa, payload.slice()));
    if (opcode === 0xa) return;
    if (opcode === 0x8) {
      const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
      const reason = new TextDecoder().decode(payload.subarray(2));
      this.#sendClose(code === 1005 ? CloseCode.NORMAL : code, "");
      this.finish(code, reason);
      this.#dropLater(100);
      return;
    }
    if (opcode === 0x1) {
      return this.#fail(CloseCode.PROTOCOL, "text messages are not part of the od protocol");
    }
    if (opcode === 0x2 || opcode === 0x0) {
      this.#fragments.push(payload);
      if (!fin) {
        if (this.#fragments.reduce((n, f) => n + f.length, 0) > MAX_MESSAGE) {
          this.#fail(CloseCode.PROTOCOL, "the relay sent a message that is too large");
        }
        return;
      }
      const parts = this.#fragments;
      this.#fragments = [];
      this.deliver(parts.length === 1 ? parts[0] : concat(parts));
    }
  }

  #scheduleNudge(): void {
    if (!this.#nudge || this.#nudgeTimer !== undefined || this.closed) return;
    const received = performance.now();
    this.#nudgeTimer = setTimeout(() => {
      this.#nudgeTimer = undefined;
      if (this.#lastWrite < received && !this.closed) this.#enqueue(EMPTY_PONG());
    }, NUDGE_MS);
  }

  #fail(code: number, reason: string): void {
    if (!this.closed) {
      this.#sendClose(code === 1006 ? CloseCode.NORMAL : code, reason);
      this.finish(code, reason);
    }
    this.#dropLater(code === 1006 ? 0 : 100);
  }

  #dropLater(ms: number): void {
    clearTimeout(this.#dropTimer);
    this.#dropTimer = setTimeout(() => this.#drop(), ms);
  }

  #drop(): void {
    clearTimeout(this.#dropTimer);
    clearTimeout(this.#nudgeTimer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#resolveSocketClosed();
  }
}

function parseHeader(buf: Uint8Array, off: number) {
  if (buf.length - off < 2) return null;
  const b0 = buf[off];
  const b1 = buf[off + 1];
  let length = b1 & 0x7f;
  let start = off + 2;
  if (length === 126) {
    if (buf.length - off < 4) return null;
    length = (buf[off + 2] << 8) | buf[off + 3];
    start = off + 4;
  } else if (length === 127) {
    if (buf.length - off < 10) return null;
    const big = new DataView(buf.buffer, buf.byteOffset + off + 2, 8).getBigUint64(0);
    length = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
    start = off + 10;
  }
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, length, start, masked: (b1 & 0x80) !== 0 };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
