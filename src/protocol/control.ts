/**
 * CONTROL messages: JSON objects with a `t` field, on stream 0 of a device link.
 *
 *   relay → daemon  {t:"hello", device, account, now, keepalive}  after the link is up; `now` lets
 *                                                          the daemon correct its clock
 *   relay → daemon  {t:"props-state", full, last, props:{k:{v, at}}}  the relay's values:
 *                   full after each connect (replacing the daemon's copy, in parts until
 *                   `last`), else client edits
 *   relay → daemon  {t:"props-ack", seq, rejected:[k]}     applied (or refused) up to seq
 *   relay → daemon  {t:"renamed", device}                  the device has a new id
 *   daemon → relay  {t:"info", version, services, hostKeys, hostname}
 *   daemon → relay  {t:"props", seq, changes:[{k, v|null, at}]}   changes made on the device
 *
 * Each direction has one validator, `parseRelayMessage` and `parseDaemonMessage`: a message of
 * a known type that breaks its shape or bounds is a ProtocolError; an unknown `t` yields null
 * and is skipped, so either side can add messages. Unknown fields are ignored.
 *
 * Encoders measure what they send. Batches (props-state, props) are built from pieces of JSON
 * text whose UTF-8 size is counted before they are joined, and split so every frame fits
 * MAX_DATA; nothing is estimated. One entry always fits on its own, which is why splitting
 * always makes progress: a value is at most MAX_VALUE_BYTES (4,096) UTF-16 code units (its
 * UTF-8 size is never smaller). JSON.stringify writes each code unit as at most 6 bytes: the
 * controls U+0000–U+001F and lone surrogates as `\uXXXX`, `"` and `\` as 2, everything else as
 * its UTF-8 (at most 3 bytes per unit; a 4-byte character is two units). So a value is at most
 * 6 × 4,096 = 24,576 bytes of JSON plus quotes; a key at most 64 bytes of ASCII that needs no
 * escaping; a time at most 16 digits. An entry stays under 24,700 bytes, far below the
 * 65,536-byte frame (control_test.ts checks the worst case).
 */
import { FrameType, HEADER_SIZE, MAX_DATA, ProtocolError } from "./frame.ts";
import { idProblem, serviceProblem } from "./names.ts";
import {
  isKeyShape,
  MAX_KEY,
  MAX_TIME,
  MAX_VALUE_BYTES,
  type PropChange,
  type PropValue,
} from "./props.ts";

/** What a daemon reports about itself. */
export interface DeviceInfo {
  version: string;
  services: string[];
  hostKeys: string[];
  hostname: string;
}

/** A property change the daemon queued, with its sequence number. */
export interface PendingChange extends PropChange {
  seq: number;
}

/** relay → daemon: who the device is, the relay's clock and keepalive period. */
export interface HelloMessage {
  t: "hello";
  device: string;
  account: string;
  now: number;
  /** Seconds between pings the relay expects; it drops links silent for 2.5 of them. */
  keepalive?: number;
}
/** relay → daemon: property values (full state in parts, or client edits). */
export interface PropsStateMessage {
  t: "props-state";
  full: boolean;
  last: boolean;
  props: Record<string, PropValue>;
}
/** relay → daemon: the device's changes up to `seq` are applied, except `rejected` keys. */
export interface PropsAckMessage {
  t: "props-ack";
  seq: number;
  rejected: string[];
}
/** relay → daemon: the device was renamed. */
export interface RenamedMessage {
  t: "renamed";
  device: string;
}
/**
 * relay → daemon: the relay is stopping; reconnect after `retryInMs` (each daemon is given its
 * own point in the operator's --drain window, so a fleet does not return in one instant).
 */
export interface DrainMessage {
  t: "drain";
  retryInMs: number;
}
/** Every message the relay sends a daemon. */
export type RelayMessage =
  | HelloMessage
  | PropsStateMessage
  | PropsAckMessage
  | RenamedMessage
  | DrainMessage;

/** Longest reconnect delay a relay may ask for in a drain message: an hour, as --drain. */
export const MAX_DRAIN_MS = 3_600_000;

/** daemon → relay: what the device runs and exposes. */
export interface InfoMessage extends DeviceInfo {
  t: "info";
}
/** daemon → relay: property changes made on the device, up to `seq`. */
export interface PropsMessage {
  t: "props";
  seq: number;
  changes: PropChange[];
}
/** Every message a daemon sends the relay. */
export type DaemonMessage = InfoMessage | PropsMessage;

/** Most services a device may expose. */
export const MAX_SERVICES = 64;
/** Most host keys a device may report. */
export const MAX_HOST_KEYS = 16;
/** Longest host key line: an RSA-16384 public key is under 3 KiB. */
export const MAX_HOST_KEY = 16 * 1024;
/**
 * Most bytes of host keys kept for a device: they go out again in every tunnel's OPENED frame,
 * which must fit beside the device's id and account. Keys beyond are not pinned.
 */
export const MAX_HOST_KEYS_TOTAL = 32 * 1024;
/** Most changes in one props message or rejected keys in one ack (a frame holds fewer). */
export const MAX_CHANGES = 512;
/** Most entries in one props-state message; a frame of the smallest entries holds fewer. */
export const MAX_STATE_ENTRIES = 4096;
const MAX_VERSION = 64;
const MAX_HOSTNAME = 255; // a DNS name
const VERSION_RE = /^[\x21-\x7e]{1,64}$/; // printable ASCII: it is stored and shown as on:version
const HOST_KEY_RE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+$/;

function fail(what: string, detail: string): never {
  throw new ProtocolError(`Malformed ${what} message: ${detail}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function int(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= max;
}

function list(value: unknown, what: string, field: string, max: number): unknown[] {
  if (!Array.isArray(value) || value.length > max) {
    fail(what, `${field} must be a list of at most ${max}`);
  }
  return value;
}

function text(value: unknown, what: string, field: string, max: number): string {
  if (typeof value !== "string" || value.length > max) {
    fail(what, `${field} must be a string of at most ${max} characters`);
  }
  return value;
}

function deviceId(value: unknown, what: string, field: string): string {
  if (typeof value !== "string" || idProblem(value)) fail(what, `${field} must be a device ID`);
  return value;
}

/** A host key line reduced to `type base64`, or null if it is not one. */
function hostKey(line: string): string | null {
  const key = line.trim().split(/\s+/).slice(0, 2).join(" ");
  return HOST_KEY_RE.test(key) ? key : null;
}

function parseInfo(m: Record<string, unknown>): InfoMessage {
  const services = list(m.services, "info", "services", MAX_SERVICES).map((s) => {
    const name = text(s, "info", "a service", 64);
    const problem = serviceProblem(name);
    if (problem) fail("info", problem);
    return name;
  });
  const hostKeys: string[] = [];
  let total = 0;
  for (const k of list(m.hostKeys ?? [], "info", "hostKeys", MAX_HOST_KEYS)) {
    const key = hostKey(text(k, "info", "a host key", MAX_HOST_KEY));
    if (key === null) continue; // keys of unknown types are not pinned
    total += key.length;
    if (total <= MAX_HOST_KEYS_TOTAL) hostKeys.push(key);
  }
  const version = text(m.version, "info", "version", MAX_VERSION);
  if (!VERSION_RE.test(version)) fail("info", "version must be printable ASCII");
  return {
    t: "info",
    version,
    services,
    hostKeys,
    hostname: text(m.hostname ?? "", "info", "hostname", MAX_HOSTNAME),
  };
}

/**
 * One change from a device. The key must have the shape of a key and the value fit the size
 * limit (whether the relay accepts them is decided later, per key). A time after `now` is taken
 * as `now`: a change cannot have been made after it arrived, and a far-future time would
 * otherwise outrank every later edit of that key.
 */
function parseChange(c: unknown, now: number): PropChange {
  if (!isObject(c)) fail("props", "a change must be {k, v, at}");
  if (typeof c.k !== "string" || !isKeyShape(c.k)) {
    fail("props", `a key must be 1 to ${MAX_KEY} of A-Z a-z 0-9 _ . : -`);
  }
  if (!(c.v === null || (typeof c.v === "string" && c.v.length <= MAX_VALUE_BYTES))) {
    fail("props", `a value must be null or a string of at most ${MAX_VALUE_BYTES} bytes`);
  }
  if (typeof c.at !== "number" || !Number.isFinite(c.at) || c.at < 0) {
    fail("props", "a change's time must be a non-negative number of milliseconds");
  }
  return { k: c.k, v: c.v, at: Math.min(Math.floor(c.at), now) };
}

/**
 * Validates a message from a daemon; null for a type this relay does not know (skip it).
 * Throws ProtocolError if a known message is malformed. Times are bounded by `now`.
 */
export function parseDaemonMessage(
  m: Record<string, unknown>,
  now = Date.now(),
): DaemonMessage | null {
  switch (m.t) {
    case "info":
      return parseInfo(m);
    case "props": {
      if (!int(m.seq, Number.MAX_SAFE_INTEGER)) fail("props", "seq must be a non-negative integer");
      const changes = list(m.changes, "props", "changes", MAX_CHANGES).map((c) =>
        parseChange(c, now)
      );
      return { t: "props", seq: m.seq, changes };
    }
    default:
      return null;
  }
}

function parseStateEntry(k: string, p: unknown): PropValue {
  if (!isKeyShape(k)) fail("props-state", `key ${JSON.stringify(k.slice(0, 80))} is not a key`);
  if (!isObject(p)) fail("props-state", "a value must be {v, at}");
  if (!(p.v === null || (typeof p.v === "string" && p.v.length <= MAX_VALUE_BYTES))) {
    fail("props-state", `a value must be null or at most ${MAX_VALUE_BYTES} bytes`);
  }
  if (!int(p.at, MAX_TIME)) fail("props-state", "a time must be an integer of milliseconds");
  return { v: p.v, at: p.at };
}

/**
 * Validates a message from the relay; null for a type this daemon does not know (skip it).
 * Throws ProtocolError if a known message is malformed.
 */
export function parseRelayMessage(m: Record<string, unknown>): RelayMessage | null {
  switch (m.t) {
    case "hello": {
      if (!int(m.now, MAX_TIME)) fail("hello", "now must be a time in milliseconds");
      return {
        t: "hello",
        device: deviceId(m.device, "hello", "device"),
        account: deviceId(m.account, "hello", "account"),
        now: m.now,
        // Older relays send none; a value out of range is ignored rather than obeyed.
        ...(int(m.keepalive, 3600) && m.keepalive >= 1 ? { keepalive: m.keepalive } : {}),
      };
    }
    case "props-state": {
      if (typeof m.full !== "boolean" || typeof m.last !== "boolean" || !isObject(m.props)) {
        fail("props-state", "it must be {full, last, props}");
      }
      const entries = Object.entries(m.props);
      if (entries.length > MAX_STATE_ENTRIES) {
        fail("props-state", `more than ${MAX_STATE_ENTRIES} values`);
      }
      const props = Object.fromEntries(entries.map(([k, p]) => [k, parseStateEntry(k, p)]));
      return { t: "props-state", full: m.full, last: m.last, props };
    }
    case "props-ack": {
      if (!int(m.seq, Number.MAX_SAFE_INTEGER)) fail("props-ack", "seq must be an integer");
      const rejected = list(m.rejected ?? [], "props-ack", "rejected", MAX_CHANGES).map((k) =>
        text(k, "props-ack", "a rejected key", MAX_KEY)
      );
      return { t: "props-ack", seq: m.seq, rejected };
    }
    case "renamed":
      return { t: "renamed", device: deviceId(m.device, "renamed", "device") };
    case "drain":
      if (!int(m.retryInMs, MAX_DRAIN_MS)) {
        fail("drain", `retryInMs must be 0 to ${MAX_DRAIN_MS} milliseconds`);
      }
      return { t: "drain", retryInMs: m.retryInMs };
    default:
      return null;
  }
}

const encoder = new TextEncoder();

/** A CONTROL frame carrying `json`; RangeError if it exceeds MAX_DATA. */
function controlFrame(json: string): Uint8Array {
  const body = encoder.encode(json);
  if (body.length > MAX_DATA) {
    throw new RangeError(`CONTROL message of ${body.length} bytes exceeds ${MAX_DATA}`);
  }
  const frame = new Uint8Array(HEADER_SIZE + body.length);
  frame[0] = FrameType.CONTROL; // stream id 0: the header's other bytes stay zero
  frame.set(body, HEADER_SIZE);
  return frame;
}

/**
 * Encodes a single relay message whose size its fields bound: hello (ids and a number), ack
 * (at most MAX_CHANGES keys that passed isKeyShape: under 35 KB), renamed and drain. Property state
 * goes through encodePropsState, which splits it.
 */
export function encodeRelayMessage(
  m: HelloMessage | PropsAckMessage | RenamedMessage | DrainMessage,
): Uint8Array {
  return controlFrame(JSON.stringify(m));
}

/**
 * Encodes `info`, leaving out host keys beyond the validator's bounds or that would not fit one
 * frame (a real sshd has a few keys of at most 3 KiB; the rest is counted in `dropped`). Never
 * throws for at most MAX_SERVICES valid service names.
 */
export function encodeInfo(info: DeviceInfo): { frame: Uint8Array; dropped: number } {
  const head = JSON.stringify({ t: "info", version: info.version, services: info.services });
  const tail = `],"hostname":${JSON.stringify(info.hostname.slice(0, MAX_HOSTNAME))}}`;
  const envelope = byteLength(head) - 1 + byteLength(`,"hostKeys":[`) + byteLength(tail);
  let total = 0;
  const keys = info.hostKeys.filter((k) => k.length <= MAX_HOST_KEY).slice(0, MAX_HOST_KEYS)
    .filter((k) => (total += k.length) <= MAX_HOST_KEYS_TOTAL);
  const { taken } = pack(keys.map((k) => JSON.stringify(k)), envelope);
  const json = `${head.slice(0, -1)},"hostKeys":[${taken.join(",")}${tail}`;
  return { frame: controlFrame(json), dropped: info.hostKeys.length - taken.length };
}

function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/**
 * Takes JSON pieces from the front while `envelope` plus the pieces and their commas fit
 * MAX_DATA; `consumed` says how many pieces it went through. A piece that could never fit alone
 * is passed over, so callers always make progress; by the bound in the header comment no
 * property entry ever is.
 */
function pack(pieces: string[], envelope: number): { taken: string[]; consumed: number } {
  const taken: string[] = [];
  let size = envelope;
  let consumed = 0;
  for (const piece of pieces) {
    const own = byteLength(piece);
    const bytes = own + (taken.length > 0 ? 1 : 0);
    if (envelope + own > MAX_DATA) {
      consumed++;
      continue;
    }
    if (size + bytes > MAX_DATA) break;
    taken.push(piece);
    size += bytes;
    consumed++;
  }
  return { taken, consumed };
}

const STATE_ENVELOPE = byteLength(`{"t":"props-state","full":false,"last":false,"props":{}}`);

/**
 * Encodes property values as props-state frames, each at most MAX_DATA: `full` marks the first
 * frame of a complete state (after a connect), `last` the final one. An empty list is one frame.
 */
export function encodePropsState(values: PropChange[], full: boolean): Uint8Array[] {
  let pieces = values.map((c) => `${JSON.stringify(c.k)}:${JSON.stringify({ v: c.v, at: c.at })}`);
  const frames: Uint8Array[] = [];
  do {
    const { taken, consumed } = pack(pieces, STATE_ENVELOPE);
    pieces = pieces.slice(consumed);
    const last = pieces.length === 0;
    const first = frames.length === 0;
    frames.push(controlFrame(
      `{"t":"props-state","full":${full && first},"last":${last},"props":{${taken.join(",")}}}`,
    ));
  } while (pieces.length > 0);
  return frames;
}

// The envelope with the longest possible seq, so any batch measured against it fits.
const PROPS_ENVELOPE = byteLength(`{"t":"props","seq":${Number.MAX_SAFE_INTEGER},"changes":[]}`);

/**
 * Encodes the longest prefix of `pending` that fits one props frame. Returns the frame, how
 * many changes it carries (at least one when `pending` is not empty) and the seq the relay will
 * acknowledge; null when there is nothing to send.
 */
export function encodePropsBatch(
  pending: PendingChange[],
): { frame: Uint8Array; count: number; seq: number } | null {
  if (pending.length === 0) return null;
  const pieces: string[] = [];
  let size = PROPS_ENVELOPE;
  for (const { k, v, at } of pending) {
    const piece = JSON.stringify({ k, v, at });
    const bytes = byteLength(piece) + (pieces.length > 0 ? 1 : 0);
    if (pieces.length > 0 && (size + bytes > MAX_DATA || pieces.length >= MAX_CHANGES)) break;
    pieces.push(piece);
    size += bytes;
  }
  const seq = pending[pieces.length - 1].seq;
  const frame = controlFrame(`{"t":"props","seq":${seq},"changes":[${pieces.join(",")}]}`);
  return { frame, count: pieces.length, seq };
}
