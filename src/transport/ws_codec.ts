/**
 * The WebSocket wire format (RFC 6455) as pure functions: frame headers, masking, the rules a
 * received frame must follow, message assembly, close payloads and the opening handshake's
 * keys. No I/O: the socket link (socket_link.ts) feeds bytes in and writes what comes out, for
 * the relay's server side and the daemon's and client's side alike.
 *
 * Reading a frame is two steps, so a peer can never make us buffer more than we allow:
 * `parseHeader` reads the 2–14 header bytes and checks the frame's shape; `Assembler.admit`
 * checks it against the message in progress and the size limit *before* any payload byte is
 * buffered; once the payload is there, `Assembler.complete` yields the event. A violation
 * throws WsProtocolError carrying the close code to send (1002 protocol error, 1003 unsupported
 * data, 1007 invalid payload, 1009 too big).
 */

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** Close codes od sends or interprets (RFC 6455 §7.4.1). */
export const WsClose = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  NO_STATUS: 1005, // never sent: a close frame without a code
  ABNORMAL: 1006, // never sent: the connection dropped without a close frame
  INVALID_DATA: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
} as const;

/** A peer broke the WebSocket protocol; `code` is the close code to answer with. */
export class WsProtocolError extends Error {
  override name = "WsProtocolError";
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A parsed frame header. */
export interface FrameHeader {
  fin: boolean;
  opcode: number;
  /** The 4-byte masking key, or null for an unmasked frame. */
  mask: Uint8Array | null;
  /** Payload length in bytes. */
  length: number;
  /** Header length in bytes (2 to 14). */
  size: number;
}

/** Which end of the connection we are: servers receive masked frames, clients unmasked. */
export type Role = "server" | "client";

/** Largest control frame payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;
/** Largest close reason in bytes: a control payload minus the 2-byte code. */
export const MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2;

const isControl = (opcode: number) => (opcode & 0x8) !== 0;
const KNOWN = new Set<number>(Object.values(Opcode));

/**
 * Parses the frame header at `off`. Returns null while the header is incomplete; throws
 * WsProtocolError for reserved bits, unknown opcodes, control frames that are fragmented or
 * over 125 bytes, lengths that are not minimal or exceed 2^53, and a mask bit that does not
 * match the direction (clients mask, servers must not).
 */
export function parseHeader(buf: Uint8Array, off: number, role: Role): FrameHeader | null {
  if (buf.length - off < 2) return null;
  const b0 = buf[off];
  const b1 = buf[off + 1];
  if ((b0 & 0x70) !== 0) {
    throw new WsProtocolError(WsClose.PROTOCOL_ERROR, "reserved bits set in a frame header");
  }
  const opcode = b0 & 0x0f;
  if (!KNOWN.has(opcode)) {
    throw new WsProtocolError(
      WsClose.PROTOCOL_ERROR,
      `unknown frame opcode 0x${opcode.toString(16)}`,
    );
  }
  const fin = (b0 & 0x80) !== 0;
  const masked = (b1 & 0x80) !== 0;
  if (masked !== (role === "server")) {
    throw new WsProtocolError(
      WsClose.PROTOCOL_ERROR,
      role === "server" ? "a client frame was not masked" : "a server frame was masked",
    );
  }
  let length = b1 & 0x7f;
  let size = 2;
  if (length === 126) {
    if (buf.length - off < 4) return null;
    length = (buf[off + 2] << 8) | buf[off + 3];
    size = 4;
    if (length < 126) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, "non-minimal length");
  } else if (length === 127) {
    if (buf.length - off < 10) return null;
    const view = new DataView(buf.buffer, buf.byteOffset + off + 2, 8);
    const high = view.getUint32(0);
    if (high > 0x1fffff) {
      throw new WsProtocolError(WsClose.TOO_BIG, "frame length exceeds 2^53 bytes");
    }
    length = high * 2 ** 32 + view.getUint32(4);
    size = 10;
    if (length < 65536) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, "non-minimal length");
  }
  if (isControl(opcode)) {
    if (!fin) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, "a control frame is fragmented");
    if (length > MAX_CONTROL_PAYLOAD) {
      throw new WsProtocolError(
        WsClose.PROTOCOL_ERROR,
        `a control frame carries ${length} bytes; the limit is ${MAX_CONTROL_PAYLOAD}`,
      );
    }
  }
  let mask: Uint8Array | null = null;
  if (masked) {
    if (buf.length - off < size + 4) return null;
    mask = buf.slice(off + size, off + size + 4);
    size += 4;
  }
  return { fin, opcode, mask, length, size };
}

/** What a complete frame amounts to. */
export type WsEvent =
  | { kind: "message"; data: Uint8Array }
  | { kind: "ping"; payload: Uint8Array }
  | { kind: "pong"; payload: Uint8Array }
  | { kind: "close"; code: number; reason: string };

/**
 * Assembles frames into messages and enforces what depends on earlier frames: a data frame may
 * not start while a fragmented message is open, a continuation needs one, text messages are
 * refused (od speaks binary only), and a message may not exceed `maxMessage` bytes.
 */
export class Assembler {
  #maxMessage: number;
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #open = false; // a fragmented message is in progress

  constructor(maxMessage: number) {
    this.#maxMessage = maxMessage;
  }

  /** Checks a header before its payload is buffered; throws WsProtocolError if refused. */
  admit(h: FrameHeader): void {
    if (isControl(h.opcode)) return; // parseHeader bounded them
    if (h.opcode === Opcode.CONTINUATION) {
      if (!this.#open) {
        throw new WsProtocolError(
          WsClose.PROTOCOL_ERROR,
          "a continuation frame arrived with no message to continue",
        );
      }
    } else {
      if (this.#open) {
        throw new WsProtocolError(
          WsClose.PROTOCOL_ERROR,
          "a new message started inside a fragmented one",
        );
      }
      if (h.opcode === Opcode.TEXT) {
        throw new WsProtocolError(
          WsClose.UNSUPPORTED_DATA,
          "text messages are not part of the od protocol",
        );
      }
    }
    if (this.#fragmentBytes + h.length > this.#maxMessage) {
      throw new WsProtocolError(
        WsClose.TOO_BIG,
        `a message of at least ${this.#fragmentBytes + h.length} bytes exceeds the ` +
          `${this.#maxMessage}-byte limit`,
      );
    }
  }

  /**
   * Takes an admitted frame's unmasked payload; returns the event it completes, or null while a
   * message is still fragmented. The payload may be kept as is (not copied).
   */
  complete(h: FrameHeader, payload: Uint8Array): WsEvent | null {
    switch (h.opcode) {
      case Opcode.PING:
        return { kind: "ping", payload };
      case Opcode.PONG:
        return { kind: "pong", payload };
      case Opcode.CLOSE:
        return { kind: "close", ...parseClosePayload(payload) };
    }
    if (h.fin && !this.#open) return { kind: "message", data: payload };
    this.#open = true;
    this.#fragments.push(payload);
    this.#fragmentBytes += payload.length;
    if (!h.fin) return null;
    const data = concat(this.#fragments, this.#fragmentBytes);
    this.#fragments = [];
    this.#fragmentBytes = 0;
    this.#open = false;
    return { kind: "message", data };
  }

  /** Bytes held for a fragmented message. */
  get buffered(): number {
    return this.#fragmentBytes;
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** XORs `data` in place with the 4-byte mask, a word at a time where the bytes are aligned. */
export function maskInPlace(data: Uint8Array, mask: Uint8Array): void {
  let i = 0;
  if (data.length >= 16) {
    // Bytes up to a 4-byte boundary one by one, then whole words with the mask turned to start
    // where they do: a payload behind a 14-byte header is never aligned, and byte by byte a
    // 64 KiB frame took a few percent of a core at 1 Gbit/s.
    for (; (data.byteOffset + i) % 4 !== 0; i++) data[i] ^= mask[i & 3];
    const turned = new Uint8Array(4);
    for (let k = 0; k < 4; k++) turned[k] = mask[(i + k) & 3];
    const key = new Uint32Array(turned.buffer)[0]; // same byte order as the words
    const words = new Uint32Array(data.buffer, data.byteOffset + i, (data.length - i) >> 2);
    for (let w = 0; w < words.length; w++) words[w] ^= key;
    i += words.length << 2;
  }
  for (; i < data.length; i++) data[i] ^= mask[i & 3];
}

/** Bytes of the header `encodeFrame` writes for a payload of `n` bytes. */
export function headerSize(n: number, masked: boolean): number {
  return (n < 126 ? 2 : n < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Encodes one frame into `out` at `off` (which must have room for headerSize + payload) and
 * returns the bytes written. Clients pass `masked` and get a fresh random key per frame.
 */
export function writeFrame(
  out: Uint8Array,
  off: number,
  opcode: number,
  payload: Uint8Array,
  masked: boolean,
  fin = true,
): number {
  const n = payload.length;
  out[off] = (fin ? 0x80 : 0) | opcode;
  let p = off + 2;
  if (n < 126) out[off + 1] = n;
  else if (n < 65536) {
    out[off + 1] = 126;
    out[off + 2] = n >> 8;
    out[off + 3] = n & 0xff;
    p = off + 4;
  } else {
    out[off + 1] = 127;
    const view = new DataView(out.buffer, out.byteOffset + off + 2, 8);
    view.setUint32(0, Math.floor(n / 2 ** 32));
    view.setUint32(4, n >>> 0);
    p = off + 10;
  }
  if (masked) {
    out[off + 1] |= 0x80;
    const mask = crypto.getRandomValues(out.subarray(p, p + 4));
    p += 4;
    out.set(payload, p);
    maskInPlace(out.subarray(p, p + n), mask);
  } else out.set(payload, p);
  return p + n - off;
}

/** Encodes one frame as a new buffer. */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  masked: boolean,
  fin = true,
): Uint8Array {
  const out = new Uint8Array(headerSize(payload.length, masked) + payload.length);
  writeFrame(out, 0, opcode, payload, masked, fin);
  return out;
}

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // back to a character boundary
  return strictUtf8.decode(bytes.subarray(0, end));
}

/** The payload of a close frame: the code, then the reason cut to fit on a UTF-8 boundary. */
export function encodeClosePayload(code: number, reason: string): Uint8Array {
  const text = encoder.encode(truncateUtf8(reason, MAX_CLOSE_REASON));
  const out = new Uint8Array(2 + text.length);
  out[0] = code >> 8;
  out[1] = code & 0xff;
  out.set(text, 2);
  return out;
}

/** Close codes a peer may put on the wire (RFC 6455 §7.4). */
export function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** Reads a close frame's payload; an empty one means "no status" (1005). */
export function parseClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length === 0) return { code: WsClose.NO_STATUS, reason: "" };
  if (payload.length === 1) {
    throw new WsProtocolError(WsClose.PROTOCOL_ERROR, "a close frame has a 1-byte payload");
  }
  const code = (payload[0] << 8) | payload[1];
  if (!validCloseCode(code)) {
    throw new WsProtocolError(WsClose.PROTOCOL_ERROR, `invalid close code ${code}`);
  }
  try {
    return { code, reason: strictUtf8.decode(payload.subarray(2)) };
  } catch {
    throw new WsProtocolError(WsClose.INVALID_DATA, "a close reason is not valid UTF-8");
  }
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; // RFC 6455 §1.3

/** A fresh Sec-WebSocket-Key: 16 random bytes, base64. */
export function newHandshakeKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
}

/** The Sec-WebSocket-Accept answering `key`. */
export async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** True if a comma-separated header value contains `token` (case-insensitive). */
export function hasToken(value: string | null, token: string): boolean {
  return (value ?? "").split(",").some((t) => t.trim().toLowerCase() === token);
}

/**
 * Checks a server's 101 answer: Upgrade, Connection, Sec-WebSocket-Accept and the chosen
 * subprotocol. Returns null when it is valid, else what is wrong, as a sentence fragment.
 */
export async function upgradeResponseProblem(
  headers: Headers,
  key: string,
  protocol: string,
): Promise<string | null> {
  if (!hasToken(headers.get("upgrade"), "websocket")) return "its 101 lacks Upgrade: websocket";
  if (!hasToken(headers.get("connection"), "upgrade")) return "its 101 lacks Connection: Upgrade";
  if (headers.get("sec-websocket-accept") !== await acceptFor(key)) {
    return "its Sec-WebSocket-Accept does not match our key";
  }
  if (headers.get("sec-websocket-protocol") !== protocol) {
    return `it did not accept subprotocol ${protocol}`;
  }
  return null;
}

/**
 * Checks a client's upgrade request (method aside): returns null if it is a valid WebSocket
 * version 13 upgrade, else what is wrong.
 */
export function upgradeRequestProblem(headers: Headers): string | null {
  if (!hasToken(headers.get("upgrade"), "websocket")) return "Upgrade: websocket is missing";
  if (!hasToken(headers.get("connection"), "upgrade")) return "Connection: Upgrade is missing";
  if (headers.get("sec-websocket-version") !== "13") return "Sec-WebSocket-Version must be 13";
  const key = headers.get("sec-websocket-key") ?? "";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return "Sec-WebSocket-Key is not 16 bytes of base64";
  return null;
}
