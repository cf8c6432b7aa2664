/**
 * CONTROL messages: JSON objects with a `t` field, on stream 0 of a device link.
 *
 *   relay → daemon  {t:"hello", device, account, now}     after the link is up; `now` lets
 *                                                          the daemon correct its clock
 *   daemon → relay  {t:"info", version, services, hostKeys, hostname}
 *   daemon → relay  {t:"props", seq, changes:[{k, v|null, at}]}   changes made on the device
 *   relay → daemon  {t:"props-ack", seq, rejected:[k]}     applied (or refused) up to seq
 *   relay → daemon  {t:"props-state", full, last, props:{k:{v, at}}}  the relay's values:
 *                   full after each connect (replacing the daemon's copy), else client edits
 *   relay → daemon  {t:"renamed", device}                  the device has a new id
 *
 * Parsers here validate and bound everything a peer controls; unknown fields are ignored and
 * unknown `t` values are skipped by receivers, so either side can add messages.
 */
import { ProtocolError } from "./frame.ts";
import { serviceProblem } from "./names.ts";
import { MAX_KEY, MAX_VALUE_BYTES, type PropChange } from "./props.ts";

/** What a daemon reports about itself. */
export interface DeviceInfo {
  version: string;
  services: string[];
  hostKeys: string[];
  hostname: string;
}

const MAX_SERVICES = 64;
const MAX_HOST_KEYS = 16;
const MAX_HOST_KEY = 16 * 1024; // an RSA-16384 public key line is under 3 KiB
const HOST_KEY_RE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+$/;

function boundedString(value: unknown, field: string, max: number): string {
  if (typeof value !== "string" || value.length > max) {
    throw new ProtocolError(`Malformed info message: ${field} must be a string of at most ${max}`);
  }
  return value;
}

function stringList(value: unknown, field: string, max: number): string[] {
  if (!Array.isArray(value) || value.length > max) {
    throw new ProtocolError(`Malformed info message: ${field} must be a list of at most ${max}`);
  }
  return value.map((v) => boundedString(v, field, MAX_HOST_KEY));
}

/** Validates a daemon's `info` message. */
export function parseInfo(message: Record<string, unknown>): DeviceInfo {
  const services = stringList(message.services, "services", MAX_SERVICES);
  for (const s of services) {
    if (serviceProblem(s)) throw new ProtocolError(`Malformed info message: ${serviceProblem(s)}`);
  }
  const hostKeys = stringList(message.hostKeys ?? [], "hostKeys", MAX_HOST_KEYS)
    .map((k) => k.trim().split(/\s+/).slice(0, 2).join(" "))
    .filter((k) => HOST_KEY_RE.test(k));
  return {
    version: boundedString(message.version, "version", 64),
    services,
    hostKeys,
    hostname: boundedString(message.hostname ?? "", "hostname", 255),
  };
}

const MAX_CHANGES = 512; // a frame holds far fewer; this bounds the loop before the frame does

/** Validates a daemon's `props` message: shapes and sizes only, not key rules. */
export function parsePropsMessage(message: Record<string, unknown>): {
  seq: number;
  changes: PropChange[];
} {
  const { seq, changes } = message;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    throw new ProtocolError("Malformed props message: seq must be a non-negative integer");
  }
  if (!Array.isArray(changes) || changes.length > MAX_CHANGES) {
    throw new ProtocolError(
      `Malformed props message: changes must be a list of at most ${MAX_CHANGES}`,
    );
  }
  return {
    seq,
    changes: changes.map((c) => {
      if (
        typeof c !== "object" || c === null || typeof c.k !== "string" || c.k.length > MAX_KEY ||
        !(c.v === null || (typeof c.v === "string" && c.v.length <= MAX_VALUE_BYTES)) ||
        typeof c.at !== "number" || !Number.isFinite(c.at)
      ) {
        throw new ProtocolError("Malformed props message: a change must be {k, v, at}");
      }
      return { k: c.k, v: c.v, at: c.at };
    }),
  };
}
