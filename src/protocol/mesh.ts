/**
 * The mesh protocol between relays that share one store: the od frame protocol (frame.ts) over
 * one authenticated WebSocket per pair of relays, so a client connected to one relay reaches a
 * device connected to another.
 *
 * Flow
 * 1. Handshake. Relay A dials relay B's mesh URL at MESH_PATH with the subprotocol od.1 and
 *    four headers: its id, B's id, the time, a random nonce, and a proof: HMAC-SHA256 of
 *    `dialText(...)` under the mesh key both were given (`--mesh-key`). B refuses the upgrade
 *    (401) unless the proof is right, the time is within MAX_SKEW_MS of its own and the nonce
 *    is new; account keys and device credentials mean nothing here. B's first frame is CONTROL
 *    `mesh-hello` with its own proof over `answerText(...)`, so A knows B holds the key too
 *    before it sends anything.
 * 2. Streams. Either relay opens streams on the link: the dialer with odd ids, the acceptor
 *    with even ones. OPEN carries `MeshOpen` (which device, for whom, which service, and
 *    `maxWindow` if the client can grow windows); the relay holding the device opens a stream
 *    on the device's link and answers OPENED, or RESET with the device's or its own reason.
 *    OPENED carries `{maxWindow}` where the device can grow windows too (never more than was
 *    offered); without it both relays keep the fixed STREAM_WINDOW and BLOCKED is not spoken.
 *    Then DATA, CREDIT, BLOCKED, EOF and RESET pass unchanged but for the stream id, exactly
 *    as between a client and a device: flow control stays end to end, and each relay on the
 *    path holds at most a window per stream.
 * 3. Keepalive and close. PING/PONG on stream 0 as on every od link; when the link closes, the
 *    streams on it are reset on both relays.
 */
import {
  encodeControl,
  FrameType,
  HEADER_SIZE,
  MAX_DATA,
  MAX_WINDOW,
  ProtocolError,
  STREAM_WINDOW,
} from "./frame.ts";

/** The relays' WebSocket endpoint. */
export const MESH_PATH = "/v1/mesh";
/** How far the dialer's clock may be from the acceptor's. */
export const MAX_SKEW_MS = 5 * 60_000;

/** The handshake's request headers. */
export const MeshHeader = {
  RELAY: "x-od-mesh-relay", //   the dialer's relay id
  PEER: "x-od-mesh-peer", //     the id of the relay it means to reach
  TIME: "x-od-mesh-time", //     the dialer's clock, ms since the epoch
  NONCE: "x-od-mesh-nonce", //   32 hex digits, new for every dial
  PROOF: "x-od-mesh-proof", //   base64url HMAC-SHA256 of dialText(...)
} as const;

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NONCE_RE = /^[0-9a-f]{32}$/;
const PROOF_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes, base64url without padding

/** The text the dialer proves it holds the key over. */
export function dialText(from: string, to: string, time: number, nonce: string): string {
  return `od-mesh.1 dial\n${from}\n${to}\n${time}\n${nonce}`;
}

/** The text the acceptor proves it holds the key over (the dialer's nonce binds it). */
export function answerText(from: string, to: string, nonce: string): string {
  return `od-mesh.1 answer\n${from}\n${to}\n${nonce}`;
}

/** A dial's handshake headers, checked for shape (the proof itself is checked by the relay). */
export interface MeshDial {
  relay: string;
  peer: string;
  time: number;
  nonce: string;
  proof: string;
}

/** Reads a dial's headers; a sentence saying what is wrong, or the dial. */
export function parseDial(headers: Headers): MeshDial | string {
  const relay = headers.get(MeshHeader.RELAY) ?? "";
  const peer = headers.get(MeshHeader.PEER) ?? "";
  const timeText = headers.get(MeshHeader.TIME) ?? "";
  const nonce = headers.get(MeshHeader.NONCE) ?? "";
  const proof = headers.get(MeshHeader.PROOF) ?? "";
  if (!ID_RE.test(relay) || !ID_RE.test(peer)) return "the mesh handshake names no relay";
  if (!/^\d{1,16}$/.test(timeText)) return "the mesh handshake has no time";
  if (!NONCE_RE.test(nonce) || !PROOF_RE.test(proof)) return "the mesh handshake has no proof";
  return { relay, peer, time: Number(timeText), nonce, proof };
}

/** The acceptor's first frame: who it is and its proof. */
export interface MeshHello {
  t: "mesh-hello";
  relay: string;
  proof: string;
}

/** Encodes the acceptor's hello. */
export function encodeMeshHello(relay: string, proof: string): Uint8Array {
  return encodeControl({ t: "mesh-hello", relay, proof });
}

/** Checks a CONTROL message as the acceptor's hello; null if it is not one. */
export function parseMeshHello(message: Record<string, unknown>): MeshHello | null {
  if (message.t !== "mesh-hello") return null;
  const { relay, proof } = message;
  if (typeof relay !== "string" || !ID_RE.test(relay)) return null;
  if (typeof proof !== "string" || !PROOF_RE.test(proof)) return null;
  return { t: "mesh-hello", relay, proof };
}

/** What a relay asks the relay holding a device to open, on behalf of a client. */
export interface MeshOpen {
  /** The device's row id in the shared store. */
  device: number;
  /** The device as the client named it (`dev` or `owner.dev`), for messages. */
  ref: string;
  service: string;
  /** The client's address, for the device's logs. */
  from: string;
  /** Who opened the tunnel: account and key ids (the holder closes it if the key is revoked). */
  account: number;
  key: string;
  /** The device's owner account id. */
  owner: number;
  /** How far the client's windows may grow; absent: the fixed STREAM_WINDOW. */
  maxWindow?: number;
}

const MAX_TEXT = 300; // refs, services, addresses and key ids are far shorter

function text(m: Record<string, unknown>, name: string): string {
  const v = m[name];
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_TEXT) {
    throw new ProtocolError(`Malformed mesh OPEN: ${name} must be a string of 1..${MAX_TEXT}`);
  }
  return v;
}

function id(m: Record<string, unknown>, name: string): number {
  const v = m[name];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new ProtocolError(`Malformed mesh OPEN: ${name} must be a positive integer`);
  }
  return v;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes OPEN for stream `stream` with what the holding relay needs. */
export function encodeMeshOpen(stream: number, open: MeshOpen): Uint8Array {
  const body = encoder.encode(JSON.stringify(open));
  if (body.length > MAX_DATA) throw new RangeError("mesh OPEN is too big");
  const frame = new Uint8Array(HEADER_SIZE + body.length);
  frame[0] = FrameType.OPEN;
  new DataView(frame.buffer).setUint32(1, stream);
  frame.set(body, HEADER_SIZE);
  return frame;
}

/** Decodes the payload of a mesh OPEN (after decodeFrame checked the frame). */
export function decodeMeshOpen(frame: Uint8Array): MeshOpen {
  let m: unknown;
  try {
    m = JSON.parse(decoder.decode(frame.subarray(HEADER_SIZE)));
  } catch {
    throw new ProtocolError("Malformed mesh OPEN: payload is not JSON");
  }
  if (typeof m !== "object" || m === null || Array.isArray(m)) {
    throw new ProtocolError("Malformed mesh OPEN: payload is not a JSON object");
  }
  const o = m as Record<string, unknown>;
  const open: MeshOpen = {
    device: id(o, "device"),
    ref: text(o, "ref"),
    service: text(o, "service"),
    from: text(o, "from"),
    account: id(o, "account"),
    key: text(o, "key"),
    owner: id(o, "owner"),
  };
  const maxWindow = windowOf(o);
  return maxWindow === undefined ? open : { ...open, maxWindow };
}

/**
 * The growing window a mesh OPEN or OPENED payload names, if it names one in range; absent or
 * out of range is the fixed window, as for a device's OPEN (frame.ts).
 */
export function windowOf(m: Record<string, unknown> | null): number | undefined {
  const w = m?.maxWindow;
  return typeof w === "number" && Number.isSafeInteger(w) && w > STREAM_WINDOW && w <= MAX_WINDOW
    ? w
    : undefined;
}

/** True if `stream` is an id the dialer (odd) or the acceptor (even) opens. */
export function openedBy(stream: number): "dialer" | "acceptor" {
  return stream % 2 === 1 ? "dialer" : "acceptor";
}
