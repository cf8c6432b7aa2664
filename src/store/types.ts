/**
 * The relay's store as one async interface, with SQLite (src/store/sqlite, the embedded default)
 * and PostgreSQL (src/store/pg, for several relays) behind it; `openStore` in src/store/open.ts
 * picks one. Every method returns a Promise and behaves the same on both (src/store/queries holds
 * the rules once; tests/store_test.ts runs one table of cases against each backend).
 *
 * The records are in src/store/records.ts. Multi-step operations run in `tx()`; inside it use the
 * scope it passes, never the store itself (on SQLite the store waits for the open transaction,
 * so that would deadlock).
 *
 * Built for a relay with 10,000 devices: presence is written in batches (`markSeenMany`), device
 * listings come in pages (`after`/`limit` by device id) with filters evaluated in SQL, and every
 * statement is prepared once per connection.
 */
import type {
  Account,
  AuditEntry,
  AuditQuery,
  AuditRow,
  DeviceRecord,
  EnrollRequest,
  EventQuery,
  EventRecord,
  KeyInfo,
  NewAccount,
  Share,
} from "./records.ts";
import type { SessionRecord } from "./sessions.ts";
import type { KeyRole } from "../protocol/keys.ts";
import type { PropChange, PropValue } from "../protocol/props.ts";
import type { Filter } from "../protocol/filter.ts";
import { StoreError } from "./db.ts";

export type {
  Account,
  AuditEntry,
  AuditQuery,
  AuditRow,
  DeviceRecord,
  EnrollRequest,
  EventQuery,
  EventRecord,
  KeyInfo,
  NewAccount,
  SessionRecord,
  Share,
};
export { CloneDetected, ConflictError } from "./records.ts";
export { StoreError };

/** The database cannot be reached right now (a relay answers 503); retrying later may work. */
export class StoreUnavailable extends StoreError {
  override name = "StoreUnavailable";
}

/** A value the store cannot hold (a NUL character in text, on PostgreSQL); a relay answers 400. */
export class InvalidValue extends StoreError {
  override name = "InvalidValue";
}

/** How often a relay heartbeats its row by default. */
export const HEARTBEAT_MS = 10_000; // open-balena-vpn's interval; 3 missed = 30 s to failover
/** Missed heartbeats after which a relay is dead and its device links are reclaimed. */
export const DEAD_AFTER_BEATS = 3;
/** Devices in one page when the query does not say. */
export const DEFAULT_PAGE = 1_000;
/** Most devices in one page: a 10,000-device fleet in one page still bounds memory per query. */
export const MAX_PAGE = 10_000;

/** A key as just created, with its secret (shown once). */
export interface AddedKey {
  id: string;
  key: string;
  role: KeyRole;
}

/** Accounts and their keys; secrets are stored as SHA-256 hashes. */
export interface AccountStore {
  /** Creates an account with one client key and one device key; ConflictError if it exists. */
  create(name: string, now?: number): Promise<NewAccount>;
  /** The account's row id, or null. */
  find(name: string): Promise<number | null>;
  /** All accounts with their device and unrevoked key counts, by name. */
  list(): Promise<Account[]>;
  /** Deletes an account with its keys, devices, props and shares; false if there was none. */
  remove(name: string): Promise<boolean>;
  /** Adds a key to an existing account (ConflictError if there is none). */
  addKey(account: string, role: KeyRole, label?: string, now?: number): Promise<AddedKey>;
  /** Keys, optionally of one account, oldest first. */
  listKeys(account?: string): Promise<KeyInfo[]>;
  /** Marks a key revoked; false if no such unrevoked key exists. */
  revokeKey(id: string, now?: number): Promise<boolean>;
  /** The key a secret belongs to (revoked or not), or null. */
  findKey(secret: string): Promise<KeyInfo | null>;
  /** A key by id (revoked or not), or null if there is none (removed with its account). */
  keyById(id: string): Promise<KeyInfo | null>;
  /** Ids of keys revoked at or after `since`. */
  revokedSince(since: number): Promise<string[]>;
  /** Records that keys were used (the relay batches this). */
  touchKeys(ids: readonly string[], now?: number): Promise<void>;
}

/** One presence update for `markSeenMany`. */
export interface SeenUpdate {
  rowid: number;
  at: number;
  ip?: string;
  version?: string;
}

/** Which devices to list: one account's, by id, `limit` after the id `after`. */
export interface DeviceQuery {
  accountId: number;
  /** Only ids sorting after this one (the previous page's `next`). */
  after?: string;
  /** At most this many (DEFAULT_PAGE if absent, at most MAX_PAGE). */
  limit?: number;
  /**
   * All must match, evaluated in SQL: user properties, and the `on:` properties from the stored
   * columns and device links (`on:state` is online when a live relay holds the link).
   */
  filters?: Filter[];
  /** The time `on:state` is judged at (default now). */
  now?: number;
}

/** One page of devices; `next` is the `after` of the following page, or null at the end. */
export interface DevicePage {
  devices: DeviceRecord[];
  next: string | null;
}

/** Enrolled devices. */
export interface DeviceStore {
  /**
   * Enrols a device, or returns the one already enrolled with this credential (idempotent);
   * ConflictError for a taken id or another account's credential, CloneDetected for a
   * credential presented with another machine fingerprint.
   */
  enroll(req: EnrollRequest, now?: number): Promise<{ device: DeviceRecord; created: boolean }>;
  /** Records the fingerprint of a device that enrolled without one. */
  setFingerprint(rowid: number, fingerprint: string): Promise<void>;
  /** Renames a device; ConflictError if the account already has the name. */
  rename(rowid: number, accountId: number, name: string): Promise<void>;
  /** Deletes a device with its properties and link; false if there was none. */
  remove(rowid: number): Promise<boolean>;
  /** The device holding a credential (by its hash), or null. */
  byCredential(hash: Uint8Array): Promise<DeviceRecord | null>;
  /** A device by account and id, or null. */
  get(accountId: number, name: string): Promise<DeviceRecord | null>;
  /** A device by row id, or null. */
  byRowid(rowid: number): Promise<DeviceRecord | null>;
  /** One page of an account's devices, by id. */
  list(query: DeviceQuery): Promise<DevicePage>;
  /** Number of devices in all accounts. */
  count(): Promise<number>;
  /** Records connections and their ends in one statement: when, from where, which version. */
  markSeenMany(seen: readonly SeenUpdate[]): Promise<void>;
  /** Stores what a daemon reported about itself. */
  setInfo(
    rowid: number,
    info: { services: string[]; hostKeys: string[]; version: string },
  ): Promise<void>;
}

/** Device properties, last write per key, with tombstones (src/store/props_rule.ts). */
export interface PropStore {
  /** All keys of a device, removals (v null) included. */
  load(rowid: number): Promise<Map<string, PropValue>>;
  /** The present properties of a device. */
  present(rowid: number): Promise<Record<string, string>>;
  /** Present properties of several devices (one listing page), by row id. */
  ofDevices(rowids: readonly number[]): Promise<Map<number, Record<string, string>>>;
  /** Applies what fits by last write per key, atomically; returns what took effect. */
  apply(rowid: number, changes: PropChange[], limit?: number): Promise<{
    applied: PropChange[];
    rejected: PropChange[];
  }>;
  /** Applies all changes or none (a client's request); `rejected` says why none. */
  applyAll(rowid: number, changes: PropChange[], limit?: number): Promise<{
    applied: PropChange[];
    rejected: string | null;
  }>;
  /** Forgets removals older than `before`. */
  pruneTombstones(before: number): Promise<number>;
  /**
   * Repairs rows written before the per-device bounds (once, when a relay starts): forgets
   * removals beyond MAX_TOMBSTONES per device, oldest first, and brings times later than `now`
   * back to `now`. Returns the number of rows changed.
   */
  repair(now?: number): Promise<number>;
}

/** The event log. */
export interface EventStore {
  /** Appends an event and returns it with its id. */
  append(e: Omit<EventRecord, "id">): Promise<EventRecord>;
  /** Events matching the query, oldest first (page with `afterId`). */
  query(q: EventQuery): Promise<EventRecord[]>;
  /** Deletes events older than `before`. */
  prune(before: number): Promise<number>;
}

/** Shares between accounts. */
export interface ShareStore {
  /** Adds a share and returns it. */
  add(s: Omit<Share, "id" | "owner" | "grantee" | "createdAt">, now?: number): Promise<Share>;
  /** A share by id, or null. */
  get(id: number): Promise<Share | null>;
  /** Shares an account has given or received. */
  involving(accountId: number): Promise<Share[]>;
  /** Shares received by an account, optionally only from one owner. */
  received(granteeId: number, ownerId?: number): Promise<Share[]>;
  /** Deletes a share the owner gave; false if there was none. */
  remove(id: number, ownerId: number): Promise<boolean>;
}

/** The audit log. */
export interface AuditStore {
  /** Appends rows in one transaction. */
  append(entries: readonly AuditEntry[]): Promise<void>;
  /** Rows matching the query, oldest first. */
  query(q: AuditQuery): Promise<AuditRow[]>;
  /** Deletes rows older than `before`. */
  prune(before: number): Promise<number>;
}

/** Dashboard sessions, by the SHA-256 of their cookie secret (src/store/sessions.ts). */
export interface SessionStore {
  /** Stores a new session of a key; ends the key's oldest beyond MAX_SESSIONS_PER_KEY. */
  create(hash: Uint8Array, keyId: string, createdAt: number, expiresAt: number): Promise<void>;
  /** The session and its key (revoked or not), or null; expired ones are returned too. */
  find(hash: Uint8Array): Promise<SessionRecord | null>;
  /** Ends a session; false if there was none. */
  remove(hash: Uint8Array): Promise<boolean>;
  /** Deletes sessions expired by `now` and those of revoked keys. */
  prune(now?: number): Promise<number>;
}

/** A relay as it heartbeats. */
export interface RelayRecord {
  id: string;
  /** Where other relays reach it (`--mesh-url`). */
  meshUrl: string;
  startedAt: number;
  heartbeatAt: number;
}

/** Which relay holds a device's link; `generation` grows with every new link of the device. */
export interface DeviceLink {
  rowid: number;
  /** null when no relay holds it (the device is offline). */
  relayId: string | null;
  generation: number;
  since: number;
}

/** What a relay reclaimed from relays whose heartbeat stopped. */
export interface Reclaimed {
  relays: string[];
  /** Row ids of the devices whose links those relays held. */
  devices: number[];
}

/** Relays, their heartbeats and the device links they hold (several relays on one store). */
export interface RelayStore {
  /** Creates or refreshes a relay's row. */
  heartbeat(relay: { id: string; meshUrl: string }, now?: number): Promise<void>;
  /** Every relay row, live or not, by id. */
  list(): Promise<RelayRecord[]>;
  /**
   * Records that `relayId` now holds the device's link and returns the link's generation, one
   * more than any before it: of two links of one device, the one with the higher generation is
   * the newest, and a relay holding an older one closes it when told (change feed "links").
   * 0 if the device does not exist (removed meanwhile). The relay's row must exist (heartbeat).
   */
  claimLink(rowid: number, relayId: string, now?: number): Promise<number>;
  /** Clears the link if it is still this relay's of this generation; false if a newer won. */
  releaseLink(rowid: number, relayId: string, generation: number): Promise<boolean>;
  /** The links of some devices (those ever linked), by row id. */
  links(rowids: readonly number[]): Promise<Map<number, DeviceLink>>;
  /**
   * Reclaims relays whose heartbeat is older than DEAD_AFTER_BEATS intervals: clears their
   * links, records each device as last seen at that relay's last heartbeat, deletes their rows.
   */
  reclaim(now?: number): Promise<Reclaimed>;
  /** A relay leaving cleanly: releases all its links and deletes its row. */
  leave(relayId: string, now?: number): Promise<number>;
  /** How many device links each relay holds, by relay id. */
  heldCounts(): Promise<Map<string, number>>;
}

/** What one transaction (and the store itself) offers. */
export interface StoreScope {
  readonly accounts: AccountStore;
  readonly devices: DeviceStore;
  readonly props: PropStore;
  readonly events: EventStore;
  readonly shares: ShareStore;
  readonly audit: AuditStore;
  readonly relays: RelayStore;
  readonly sessions: SessionStore;
}

/**
 * A committed change, from this or any other process or relay on the same store. Delivery is
 * at least once and in commit order; after "resync" (the feed reconnected, or a subscriber fell
 * so far behind that changes were dropped) subscribers must re-read what they cache.
 */
export type StoreChange =
  | { kind: "keys"; accountId: number; keyId: string }
  | { kind: "shares"; accountId: number; shareId: number }
  | { kind: "devices"; accountId: number; rowid: number }
  | { kind: "props"; accountId: number; rowid: number; key: string }
  | { kind: "events"; accountId: number; eventId: number }
  | { kind: "links"; rowid: number; relayId: string | null; generation: number }
  | { kind: "resync" };

/** Ends a subscription. */
export type Unsubscribe = () => void;

/** An open store; close it when done. */
export interface Store extends StoreScope, AsyncDisposable {
  readonly kind: "sqlite" | "postgres";
  /** The data directory, or the URL without its password. */
  readonly location: string;
  /** Runs `fn` in one transaction: all of it commits, or none (it rejects). */
  tx<T>(fn: (t: StoreScope) => Promise<T>): Promise<T>;
  /** Calls `fn` with every committed change from now on; resolves once the feed is live. */
  subscribe(fn: (change: StoreChange) => void): Promise<Unsubscribe>;
  /** "ok" when the store is sound and reachable, else what is wrong. */
  integrity(): Promise<string>;
  /** Closes connections and stops the change feed. */
  close(): Promise<void>;
}
