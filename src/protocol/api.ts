/**
 * The JSON shapes of the relay's HTTP API, shared by the relay that writes them and the client
 * that reads them, and one strict validator per request body. A body that breaks its shape is
 * refused with BadRequest (HTTP 400) and a sentence; a field of the wrong type never silently
 * becomes a default (a share whose `filters` is not a list must not share every device).
 *
 *   GET    /v1/health                     → Health
 *   GET    /v1/whoami                     → Whoami
 *   POST   /v1/enroll        EnrollBody   → Enrolled
 *   POST   /v1/clone         CloneBody    → Cloned
 *   GET    /v1/devices                    → Device[]
 *   GET    /v1/devices/DEV                → Device
 *   PATCH  /v1/devices/DEV/props  PropsPatch → PropsResult
 *   POST   /v1/devices/DEV/rename RenameBody → RenameResult
 *   DELETE /v1/devices/DEV[?force=1]      → { removed }
 *   GET    /v1/events                     → Event lines
 *   GET    /v1/keys | POST KeyAddBody | DELETE /v1/keys/ID  → ApiKey[] | AddedKey | Revoked
 *   GET    /v1/shares | POST ShareAddBody | DELETE /v1/shares/ID → Share[] | Share | Revoked
 *   GET    /v1/audit                      → AuditEntry[]
 *   any refusal                           → ErrorBody with a 4xx/5xx status
 */
import { KEY_ROLES, type KeyRole } from "./keys.ts";
import { idProblem, normalizeDeviceArg, normalizeId, serviceProblem } from "./names.ts";
import { parseFilters } from "./filter.ts";
import { keyProblem, MAX_PROPS, valueProblem } from "./props.ts";

/** A request body that breaks its shape; the relay answers 400 with the message. */
export class BadRequest extends Error {
  override name = "BadRequest";
}

/** Every refusal: one sentence. */
export interface ErrorBody {
  error: string;
}

/** GET /v1/health. */
export interface Health {
  ok: true;
  version: string;
  protocol: string;
}

/** GET /v1/whoami: the key's account, id and role. */
export interface Whoami {
  account: string;
  keyId: string;
  role: KeyRole;
}

/** A device as the API shows it, to its owner and to accounts it is shared with. */
export interface Device {
  id: string;
  account: string;
  /** How the caller names it: `id` for its own devices, `account.id` for shared ones. */
  ref: string;
  state: "online" | "offline";
  since: string | null;
  lastSeen: string | null;
  ip: string | null;
  version: string | null;
  parent: string | null;
  createdAt: string;
  services: string[];
  /** Host public keys of the sshd the device exposes, as `type base64`. */
  hostKeys: string[];
  /** User properties and the relay's read-only `on:` properties. */
  props: Record<string, string>;
}

/** PATCH /v1/devices/DEV/props answer: the device's user properties after the edit. */
export interface PropsResult {
  id: string;
  props: Record<string, string>;
}

/** POST /v1/devices/DEV/rename answer. */
export interface RenameResult {
  id: string;
  from: string;
}

/** POST /v1/enroll answer. */
export interface Enrolled {
  device: string;
  account: string;
}

/** POST /v1/clone answer. */
export interface Cloned extends Enrolled {
  parent: string;
}

/** A key as listed; never its secret. */
export interface ApiKey {
  id: string;
  role: KeyRole;
  label: string;
  createdAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** POST /v1/keys answer: the new key, shown once. */
export interface AddedKey {
  id: string;
  account: string;
  role: KeyRole;
  key: string;
}

/** A share between two accounts. */
export interface Share {
  id: number;
  owner: string;
  grantee: string;
  device: string | null;
  filters: string[];
  services: string[];
  createdAt: string | null;
}

/** DELETE /v1/keys/ID and /v1/shares/ID answers. */
export interface Revoked {
  revoked?: string;
  removed?: number;
  tunnelsClosed: number;
}

/** Event types, as `od events --type` takes them. */
export const EVENT_TYPES = ["state", "props", "clone", "enrolled", "renamed", "removed"] as const;
/** One event type. */
export type EventType = typeof EVENT_TYPES[number];

/** One line of GET /v1/events: the fields of its type follow the common ones. */
export interface Event {
  id: number;
  at: string;
  device: string;
  type: EventType;
  [field: string]: unknown;
}

/** An audit row as the API and `od admin audit --json` show it. */
export interface AuditEntry {
  id: number;
  at: string;
  account: string | null;
  owner: string | null;
  key: string | null;
  ip: string;
  action: string;
  device: string | null;
  service: string | null;
  result: string;
  reason: string;
  durationMs: number | null;
  bytesUp: number | null;
  bytesDown: number | null;
  count: number;
}

/** What auditView needs of a stored row. */
export interface AuditRecord extends Omit<AuditEntry, "at" | "key"> {
  at: number;
  keyId: string | null;
}

/** The API form of a stored audit row. */
export function auditView(r: AuditRecord): AuditEntry {
  return {
    id: r.id,
    at: new Date(r.at).toISOString(),
    account: r.account,
    owner: r.owner,
    key: r.keyId,
    ip: r.ip,
    action: r.action,
    device: r.device,
    service: r.service,
    result: r.result,
    reason: r.reason,
    durationMs: r.durationMs,
    bytesUp: r.bytesUp,
    bytesDown: r.bytesDown,
    count: r.count,
  };
}

// ---- request bodies ---------------------------------------------------------------------

/** PATCH /v1/devices/DEV/props: values to set and keys to remove, all or nothing. */
export interface PropsPatch {
  set: Record<string, string>;
  rm: string[];
}

/** Most removals in one request: a device has at most MAX_PROPS keys to remove. */
export const MAX_REMOVALS = 1024;
/** Longest key label. */
export const MAX_LABEL = 200;
/** Most filters or services in one share. */
export const MAX_SHARE_ITEMS = 64;
const FINGERPRINT_RE = /^[A-Za-z0-9+/=_-]{16,128}$/;
const CONTROL_RE = /\p{Cc}/u; // control characters: a label is one line of text

function fields(body: Record<string, unknown>, allowed: string[], shape: string): void {
  const extra = Object.keys(body).find((k) => !allowed.includes(k));
  if (extra !== undefined) {
    throw new BadRequest(`unknown field ${JSON.stringify(extra.slice(0, 40))}; use ${shape}`);
  }
}

function stringList(value: unknown, field: string, max: number): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.length > max || value.some((v) => typeof v !== "string")) {
    throw new BadRequest(`${field} must be a list of at most ${max} strings`);
  }
  return value as string[];
}

function check(problem: string | null): void {
  if (problem) throw new BadRequest(problem);
}

/** Validates a props patch: known keys, values within limits, at most MAX_PROPS to set. */
export function parsePropsPatch(body: Record<string, unknown>): PropsPatch {
  const shape = "{set: {KEY: VALUE}, rm: [KEY]}";
  fields(body, ["set", "rm"], shape);
  const set = body.set ?? {};
  if (typeof set !== "object" || set === null || Array.isArray(set)) {
    throw new BadRequest(`props body must be ${shape}`);
  }
  const entries = Object.entries(set);
  if (entries.length > MAX_PROPS) {
    throw new BadRequest(
      `this sets ${entries.length} properties and the limit is ${MAX_PROPS} per device; ` +
        `nothing was changed`,
    );
  }
  for (const [k, v] of entries) {
    check(keyProblem(k));
    if (typeof v !== "string") throw new BadRequest(`value of property "${k}" must be a string`);
    check(valueProblem(k, v));
  }
  const rm = stringList(body.rm, "rm", MAX_REMOVALS);
  for (const k of rm) check(keyProblem(k));
  return { set: Object.fromEntries(entries) as Record<string, string>, rm };
}

/** POST /v1/devices/DEV/rename. */
export interface RenameBody {
  name: string;
}

/** Validates a rename: the new name is a device ID (returned lower-cased). */
export function parseRename(body: Record<string, unknown>): RenameBody {
  fields(body, ["name"], "{name}");
  if (typeof body.name !== "string") throw new BadRequest("name must be a device ID");
  check(idProblem(body.name));
  return { name: body.name.toLowerCase() };
}

/** POST /v1/keys. */
export interface KeyAddBody {
  role: KeyRole;
  label: string;
}

/** Validates a new key: a role and an optional one-line label. */
export function parseKeyAdd(body: Record<string, unknown>): KeyAddBody {
  fields(body, ["role", "label"], "{role, label}");
  if (!(KEY_ROLES as readonly unknown[]).includes(body.role)) {
    throw new BadRequest(`role must be ${KEY_ROLES.join(", ")}`);
  }
  const label = body.label ?? "";
  if (typeof label !== "string" || label.length > MAX_LABEL || CONTROL_RE.test(label)) {
    throw new BadRequest(`label must be one line of at most ${MAX_LABEL} characters`);
  }
  return { role: body.role as KeyRole, label };
}

/** POST /v1/shares. `device` or `filters` select devices; no services means all. */
export interface ShareAddBody {
  account: string;
  device: string | null;
  filters: string[];
  services: string[];
}

/** Validates a share: lists must be lists, filters parse, services are service names. */
export function parseShareAdd(body: Record<string, unknown>): ShareAddBody {
  fields(
    body,
    ["account", "device", "filters", "services"],
    "{account, device, filters, services}",
  );
  try {
    if (typeof body.account !== "string") throw new RangeError("account must be an account name");
    const grantee = normalizeId(body.account, "account name");
    if (body.device !== undefined && body.device !== null && typeof body.device !== "string") {
      throw new RangeError("device must be a device ID");
    }
    const device = typeof body.device === "string" ? normalizeDeviceArg(body.device) : null;
    const filters = stringList(body.filters, "filters", MAX_SHARE_ITEMS);
    parseFilters(filters);
    const services = stringList(body.services, "services", MAX_SHARE_ITEMS);
    for (const s of services) check(serviceProblem(s));
    if (device !== null && filters.length > 0) {
      throw new RangeError("give a device or filters, not both");
    }
    if (device !== null && device.includes(".")) {
      throw new RangeError("share only your own devices");
    }
    return { account: grantee, device, filters, services };
  } catch (err) {
    if (err instanceof RangeError) throw new BadRequest(err.message);
    throw err;
  }
}

/** Why a machine fingerprint is malformed, or null. */
export function fingerprintProblem(fp: string): string | null {
  return FINGERPRINT_RE.test(fp) ? null : "fingerprint must be 16 to 128 base64 characters";
}

/** POST /v1/enroll, with a device key. */
export interface EnrollBody {
  credential: string;
  /** The id asked for (lower-cased), or null for a random one. */
  id: string | null;
  fingerprint: string | null;
}

/** POST /v1/clone, with the original's credential. */
export interface CloneBody {
  credential: string;
  fingerprint: string;
}

function credentialField(body: Record<string, unknown>): string {
  const c = body.credential;
  if (typeof c !== "string" || !/^od_cred_[A-Za-z0-9_-]{43}$/.test(c)) {
    throw new BadRequest("enrolment needs a device credential generated by od daemon");
  }
  return c;
}

function fingerprintField(body: Record<string, unknown>): string | null {
  const fp = body.fingerprint;
  if (fp === undefined || fp === null) return null;
  if (typeof fp !== "string") throw new BadRequest("fingerprint must be a string");
  check(fingerprintProblem(fp));
  return fp;
}

/** Validates an enrolment. */
export function parseEnroll(body: Record<string, unknown>): EnrollBody {
  fields(body, ["credential", "id", "fingerprint"], "{credential, id, fingerprint}");
  const credential = credentialField(body);
  let id: string | null = null;
  if (body.id !== undefined && body.id !== null) {
    if (typeof body.id !== "string") throw new BadRequest("device ID must be a string");
    check(idProblem(body.id));
    id = body.id.toLowerCase();
  }
  return { credential, id, fingerprint: fingerprintField(body) };
}

/** Validates a clone request: a clone must say which machine it is. */
export function parseClone(body: Record<string, unknown>): CloneBody {
  fields(body, ["credential", "fingerprint"], "{credential, fingerprint}");
  const credential = credentialField(body);
  const fingerprint = fingerprintField(body);
  if (fingerprint === null) throw new BadRequest("a clone must send its fingerprint");
  return { credential, fingerprint };
}
