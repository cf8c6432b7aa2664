/**
 * The od wire protocol: binary frames carried one per WebSocket message.
 *
 * Flow
 * 1. Handshake. Every WebSocket is opened with the subprotocol `od.<PROTOCOL_VERSION>` and an
 *    `Authorization: Bearer <key>` header. A relay that speaks another version refuses the
 *    upgrade with HTTP 426 and a sentence saying which versions each side speaks, so a mismatched
 *    peer learns why before any frame is exchanged.
 * 2. Device link (daemon ⇄ relay, one per device). The relay sends CONTROL `hello`; the daemon
 *    answers CONTROL `info` (version, services, host keys). The relay opens streams with OPEN;
 *    the daemon answers OPENED once it has dialled the service, or RESET with the reason.
 * 3. Client link (od pipe ⇄ relay, one per tunnel). Carries a single stream, id 1. Right after
 *    the upgrade the client sends an unsolicited PONG, which the relay ignores: it acknowledges
 *    the 101 at once, so a relay whose socket delays small writes (Nagle) sends the next one
 *    without waiting for a delayed ACK. The relay answers with the device's RESET, or with
 *    OPENED carrying who the device is (id, account, sshd host keys, for pinning) as JSON, all
 *    in one write; then it switches DATA, CREDIT, EOF and RESET between the two links,
 *    rewriting only the stream id in place.
 * 4. Steady state. Each side of a stream starts with `STREAM_WINDOW` bytes it may send; CREDIT
 *    grants more. A receiver grants credit for bytes it has written out, so a slow reader
 *    stalls the writer instead of filling buffers. Where both ends and the relay announce it
 *    ("windows", see control.ts and the tunnel's OPENED), a receiver may also grant ahead, up
 *    to `MAX_WINDOW` in all, when the sender reports BLOCKED (it had data but no credit while
 *    its link was idle): windows grow towards the path's bandwidth-delay product and shrink
 *    again when the sender stops asking. The relay checks the arithmetic, resets streams that
 *    overrun it, and passes credit on only as far as its memory budget allows.
 * 5. Close. EOF ends one direction (TCP half-close); a stream is finished when both directions
 *    have ended. RESET aborts both directions at once and carries a code and a reason.
 *    PING/PONG on stream 0 detect a dead peer behind a silent network.
 *
 * All integers are big-endian. Every frame starts with a 5-byte header: type (u8) and stream
 * id (u32). Stream 0 is the link itself.
 */

/** Protocol version; doubles as the WebSocket subprotocol `od.1`. */
export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol for this protocol version. */
export const SUBPROTOCOL = `od.${PROTOCOL_VERSION}`;
/** Bytes of the frame header: type u8 + stream u32. */
export const HEADER_SIZE = 5;
/** Largest DATA payload: 64 KiB matches the read size of Deno sockets and keeps latency low. */
export const MAX_DATA = 64 * 1024;
/** Largest frame of any type; checked before anything is decoded or allocated. */
export const MAX_FRAME_SIZE = HEADER_SIZE + MAX_DATA;
/** Bytes one side of a stream may send before its first CREDIT: every peer assumes this. */
export const STREAM_WINDOW = 1024 * 1024;
/** Largest window a stream may grow to where all three parties support growing windows. */
export const MAX_WINDOW = 16 * 1024 * 1024;
/**
 * Request header by which a daemon or client says it can grow windows (value "1"). The relay
 * then tells each end per stream: `maxWindow` in OPEN (to the device) and in OPENED's device
 * info (to the client). Peers that never say so keep the fixed window and never see BLOCKED.
 */
export const WINDOWS_HEADER = "x-od-windows";
/** The only stream id a client link uses. */
export const CLIENT_STREAM = 1;
/** Largest stream id; ids are u32 and never reused within a link. */
export const MAX_STREAM_ID = 0xffffffff;

/** Frame type codes. */
export const FrameType = {
  OPEN: 0x01, //     stream | JSON {service, from, maxWindow?} relay → device
  OPENED: 0x02, //   stream | (empty) or JSON device info       device → relay → client
  DATA: 0x03, //     stream | bytes (1..MAX_DATA)              both ways
  CREDIT: 0x04, //   stream | u32 bytes granted                both ways
  EOF: 0x05, //      stream | (empty)  sender will send no more DATA
  RESET: 0x06, //    stream | u8 code, UTF-8 reason            both ways, aborts the stream
  CONTROL: 0x07, //  0      | JSON object (see control.ts)     link-level messages
  PING: 0x08, //     0      | 8 opaque bytes                   either side
  PONG: 0x09, //     0      | the 8 bytes of the PING          answer
  BLOCKED: 0x0a, //  stream | (empty)  had data, no credit      both ways, only with "windows"
} as const;

/** Why a stream was reset; the client maps these to its messages and exit codes. */
export const ResetCode = {
  CANCELLED: 0, //     the other end went away or gave up
  NOT_EXPOSED: 1, //   the device does not expose that service
  DIAL_FAILED: 2, //   the device could not connect to its service
  DEVICE_GONE: 3, //   the device link closed
  PROTOCOL: 4, //      a peer broke the protocol (window overrun, bad frame)
  REFUSED: 5, //       policy: key revoked, share removed, not allowed
  LIMIT: 6, //         too many streams or pending opens
  TIMEOUT: 7, //       the device did not answer an OPEN in time
} as const;

/** A decoded frame. */
export type Frame =
  | {
    type: typeof FrameType.OPEN;
    stream: number;
    service: string;
    from: string;
    /** Where the client can grow windows: how far (absent: the fixed STREAM_WINDOW). */
    maxWindow?: number;
  }
  | { type: typeof FrameType.OPENED; stream: number; info: Record<string, unknown> | null }
  | { type: typeof FrameType.DATA; stream: number; data: Uint8Array }
  | { type: typeof FrameType.CREDIT; stream: number; bytes: number }
  | { type: typeof FrameType.EOF; stream: number }
  | { type: typeof FrameType.RESET; stream: number; code: number; reason: string }
  | { type: typeof FrameType.CONTROL; stream: 0; message: Record<string, unknown> }
  | { type: typeof FrameType.PING; stream: 0; nonce: Uint8Array }
  | { type: typeof FrameType.PONG; stream: 0; nonce: Uint8Array }
  | { type: typeof FrameType.BLOCKED; stream: number };

/** A frame that breaks the protocol; the link that sent it is closed. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder(); // reasons are shown to people; a cut character is harmless
const MAX_REASON = 512; // a reason is one sentence; anything longer is cut

function header(type: number, stream: number, payloadSize: number): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE + payloadSize);
  buf[0] = type;
  new DataView(buf.buffer).setUint32(1, stream);
  return buf;
}

function json(type: number, stream: number, value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value));
  if (body.length > MAX_DATA) {
    throw new RangeError(`Frame payload of ${body.length} bytes is too big`);
  }
  const buf = header(type, stream, body.length);
  buf.set(body, HEADER_SIZE);
  return buf;
}

/**
 * Encodes OPEN: the relay asks the device to dial `service` for stream `stream`; `maxWindow`
 * when the stream's windows may grow (both ends and the relay support it).
 */
export function encodeOpen(
  stream: number,
  service: string,
  from: string,
  maxWindow?: number,
): Uint8Array {
  return json(FrameType.OPEN, stream, maxWindow ? { service, from, maxWindow } : { service, from });
}

/** Encodes OPENED: the stream is connected; the relay adds what the client should know. */
export function encodeOpened(stream: number, info?: Record<string, unknown>): Uint8Array {
  return info ? json(FrameType.OPENED, stream, info) : header(FrameType.OPENED, stream, 0);
}

/** Encodes DATA by copying `data`; hot paths fill `dataFrame()` buffers instead. */
export function encodeData(stream: number, data: Uint8Array): Uint8Array {
  const buf = header(FrameType.DATA, stream, data.length);
  buf.set(data, HEADER_SIZE);
  return buf;
}

/** A DATA frame of `size` payload bytes whose payload the caller fills at HEADER_SIZE. */
export function dataFrame(stream: number, size: number): Uint8Array {
  return header(FrameType.DATA, stream, size);
}

/** Encodes CREDIT: the sender has consumed `bytes` more and the peer may send that many. */
export function encodeCredit(stream: number, bytes: number): Uint8Array {
  const buf = header(FrameType.CREDIT, stream, 4);
  new DataView(buf.buffer).setUint32(HEADER_SIZE, bytes);
  return buf;
}

/** Encodes EOF: the sender will send no more DATA on this stream. */
export function encodeEof(stream: number): Uint8Array {
  return header(FrameType.EOF, stream, 0);
}

/** Encodes BLOCKED: the sender has data to send and no credit left. */
export function encodeBlocked(stream: number): Uint8Array {
  return header(FrameType.BLOCKED, stream, 0);
}

/** Encodes RESET with a code from `ResetCode` and a one-sentence reason. */
export function encodeReset(stream: number, code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason.slice(0, MAX_REASON));
  const buf = header(FrameType.RESET, stream, 1 + text.length);
  buf[HEADER_SIZE] = code;
  buf.set(text, HEADER_SIZE + 1);
  return buf;
}

/** Encodes a CONTROL message; throws RangeError if it would exceed the frame limit. */
export function encodeControl(message: Record<string, unknown>): Uint8Array {
  return json(FrameType.CONTROL, 0, message);
}

/** Encodes PING or PONG with an 8-byte nonce. */
export function encodePing(type: typeof FrameType.PING | typeof FrameType.PONG, nonce: Uint8Array) {
  if (nonce.length !== 8) throw new RangeError("Ping nonce must be 8 bytes");
  const buf = header(type, 0, 8);
  buf.set(nonce, HEADER_SIZE);
  return buf;
}

/** Changes the stream id of an encoded frame in place, so the relay can forward it uncopied. */
export function setStream(frame: Uint8Array, stream: number): void {
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setUint32(1, stream);
}

/** Reads type and stream id without decoding the payload; null if the header is incomplete. */
export function peekHeader(frame: Uint8Array): { type: number; stream: number } | null {
  if (frame.length < HEADER_SIZE) return null;
  return {
    type: frame[0],
    stream: new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1),
  };
}

function parseJson(payload: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError(`Malformed ${what} frame: payload is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`Malformed ${what} frame: payload is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function expectSize(payload: Uint8Array, size: number, what: string): void {
  if (payload.length !== size) {
    throw new ProtocolError(
      `Malformed ${what} frame: payload is ${payload.length} bytes, not ${size}`,
    );
  }
}

function expectLinkStream(stream: number, what: string, link: boolean): void {
  if ((stream === 0) !== link) {
    throw new ProtocolError(
      `Malformed ${what} frame: ${link ? "must use stream 0" : "stream 0 is reserved"}`,
    );
  }
}

/**
 * Decodes one frame. Throws ProtocolError for anything malformed; the size is checked before
 * the payload is looked at. DATA payloads are views into `frame`, not copies.
 */
export function decodeFrame(frame: Uint8Array): Frame {
  if (frame.length > MAX_FRAME_SIZE) {
    throw new ProtocolError(
      `Frame of ${frame.length} bytes exceeds the ${MAX_FRAME_SIZE}-byte limit`,
    );
  }
  const head = peekHeader(frame);
  if (!head) throw new ProtocolError(`Frame of ${frame.length} bytes is shorter than its header`);
  const { type, stream } = head;
  const payload = frame.subarray(HEADER_SIZE);
  switch (type) {
    case FrameType.OPEN: {
      expectLinkStream(stream, "OPEN", false);
      const m = parseJson(payload, "OPEN");
      if (typeof m.service !== "string" || typeof m.from !== "string") {
        throw new ProtocolError("Malformed OPEN frame: service and from must be strings");
      }
      const maxWindow = Number.isSafeInteger(m.maxWindow) &&
          (m.maxWindow as number) > STREAM_WINDOW && (m.maxWindow as number) <= MAX_WINDOW
        ? m.maxWindow as number
        : undefined; // absent or out of range: the fixed window
      const open = { type, stream, service: m.service, from: m.from };
      return maxWindow === undefined ? open : { ...open, maxWindow };
    }
    case FrameType.OPENED:
      expectLinkStream(stream, "OPENED", false);
      return { type, stream, info: payload.length === 0 ? null : parseJson(payload, "OPENED") };
    case FrameType.DATA:
      expectLinkStream(stream, "DATA", false);
      if (payload.length === 0) throw new ProtocolError("Malformed DATA frame: empty payload");
      return { type, stream, data: payload };
    case FrameType.CREDIT: {
      expectLinkStream(stream, "CREDIT", false);
      expectSize(payload, 4, "CREDIT");
      const bytes = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
      if (bytes === 0 || bytes > MAX_WINDOW) {
        throw new ProtocolError(
          `Malformed CREDIT frame: ${bytes} bytes is outside 1..${MAX_WINDOW}`,
        );
      }
      return { type, stream, bytes };
    }
    case FrameType.EOF:
      expectLinkStream(stream, "EOF", false);
      expectSize(payload, 0, "EOF");
      return { type, stream };
    case FrameType.BLOCKED:
      expectLinkStream(stream, "BLOCKED", false);
      expectSize(payload, 0, "BLOCKED");
      return { type, stream };
    case FrameType.RESET: {
      expectLinkStream(stream, "RESET", false);
      if (payload.length < 1) throw new ProtocolError("Malformed RESET frame: missing code");
      const reason = lenient.decode(payload.subarray(1, 1 + MAX_REASON));
      return { type, stream, code: payload[0], reason };
    }
    case FrameType.CONTROL:
      expectLinkStream(stream, "CONTROL", true);
      return { type, stream: 0, message: parseJson(payload, "CONTROL") };
    case FrameType.PING:
    case FrameType.PONG:
      expectLinkStream(stream, "PING", true);
      expectSize(payload, 8, "PING");
      return { type, stream: 0, nonce: payload };
    default:
      throw new ProtocolError(`Unknown frame type 0x${type.toString(16).padStart(2, "0")}`);
  }
}
