/**
 * The records the relay's store reads and writes, and the errors its operations raise: one
 * shape for both backends (src/store/types.ts is the interface, src/store/queries the rules).
 */
import type { KeyRole } from "../protocol/keys.ts";

/** An account as listed. */
export interface Account {
  id: number;
  name: string;
  createdAt: number;
  devices: number;
  keys: number;
}

/** A stored key, without its secret. */
export interface KeyInfo {
  id: string;
  account: string;
  accountId: number;
  role: KeyRole;
  label: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/** A new account with the two keys it starts with. */
export interface NewAccount {
  account: string;
  clientKey: string;
  deviceKey: string;
}

/** A request that conflicts with what is stored (duplicate name, unknown id). */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/** A device as stored. */
export interface DeviceRecord {
  rowid: number;
  accountId: number;
  account: string;
  name: string;
  parent: string | null;
  createdAt: number;
  lastSeen: number | null;
  lastIp: string | null;
  version: string | null;
  services: string[];
  hostKeys: string[];
  /** The machine identity the device enrolled from (see src/daemon/fingerprint.ts). */
  fingerprint: string | null;
}

/** What enrolling needs to know. */
export interface EnrollRequest {
  accountId: number;
  /** The id asked for with `--id`, or null for a random one. */
  name: string | null;
  credentialHash: Uint8Array;
  enrolledBy: string;
  parent?: string | null;
  fingerprint?: string | null;
}

/** A credential presented from another machine than the one it was enrolled on. */
export class CloneDetected extends Error {
  override name = "CloneDetected";
  constructor(readonly original: DeviceRecord) {
    super(`device "${original.name}" was copied to another machine`);
  }
}

const ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"; // no l, o, 0, 1: ids are read aloud
const RANDOM_ID_LENGTH = 10; // 32^10 ≈ 10^15: collisions within an account are negligible

/** A random device id such as `k7m2xq9d4a`. */
export function randomDeviceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(RANDOM_ID_LENGTH));
  return Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join("");
}

/** One logged event. */
export interface EventRecord {
  id: number;
  accountId: number;
  device: string;
  type: string;
  data: Record<string, unknown>;
  at: number;
}

/** Which events to read. */
export interface EventQuery {
  accountId: number;
  /** Only events with a larger id. */
  afterId?: number;
  /** Only events at or after this time (ms). */
  since?: number;
  device?: string;
  types?: string[];
  limit?: number;
}

/** One share. `device` or `filters` select the devices; `services` empty means all. */
export interface Share {
  id: number;
  ownerId: number;
  owner: string;
  granteeId: number;
  grantee: string;
  device: string | null;
  filters: string[];
  services: string[];
  createdBy: string;
  createdAt: number;
}

/** One audit row as written. */
export interface AuditEntry {
  at: number;
  accountId: number | null;
  ownerId: number | null;
  keyId: string | null;
  ip: string;
  action: string;
  device: string | null;
  service: string | null;
  result: string;
  reason: string;
  durationMs: number | null;
  bytesUp: number | null;
  bytesDown: number | null;
  /** Identical refusals merged into this row (throttled floods). */
  count: number;
}

/** An audit row as read, with account names. */
export interface AuditRow extends AuditEntry {
  id: number;
  account: string | null;
  owner: string | null;
}

/** Which audit rows to read; `afterId` pages through them. */
export interface AuditQuery {
  /** Rows where this account acted or owns the device; undefined for all (admin). */
  accountId?: number;
  device?: string;
  since?: number;
  limit?: number;
  /** Only rows with a larger id (paging oldest first). */
  afterId?: number;
  /** Only rows with a smaller id (paging newest first). */
  beforeId?: number;
  /** Newest first (the dashboard's order) instead of oldest first. */
  newest?: boolean;
}
