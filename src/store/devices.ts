/** Enrolled devices: identity, credential hash and what they last reported. */
import type { DatabaseSync } from "node:sqlite";
import { statement, transaction } from "./db.ts";
import { ConflictError } from "./accounts.ts";

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

/** A page of an account's devices, by id, optionally only those whose properties match. */
export interface DevicePage {
  /** Only devices with a larger id (name). */
  after?: string;
  limit?: number;
  /**
   * User-property filters done in SQL: `=` (value equals), `!=` (value differs or missing),
   * `has` (present). `on:` properties are the relay's and are not stored, so not here.
   */
  props?: { key: string; op: "=" | "!=" | "has"; value?: string }[];
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

interface DeviceRow {
  id: number;
  account_id: number;
  account: string;
  name: string;
  parent: string | null;
  created_at: number;
  last_seen: number | null;
  last_ip: string | null;
  version: string | null;
  services: string;
  host_keys: string;
  fingerprint: string | null;
}

const SELECT = `SELECT d.id, d.account_id, a.name AS account, d.name, d.parent, d.created_at,
  d.last_seen, d.last_ip, d.version, d.services, d.host_keys, d.fingerprint
  FROM devices d JOIN accounts a ON a.id = d.account_id`;

const ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"; // no l, o, 0, 1: ids are read aloud
const RANDOM_ID_LENGTH = 10; // 32^10 ≈ 10^15: collisions within an account are negligible

/** A random device id such as `k7m2xq9d4a`. */
export function randomDeviceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(RANDOM_ID_LENGTH));
  return Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join("");
}

function parseList(json: string): string[] {
  try {
    const value = JSON.parse(json);
    return Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
  } catch {
    return [];
  }
}

function toDevice(row: DeviceRow): DeviceRecord {
  return {
    rowid: row.id,
    accountId: row.account_id,
    account: row.account,
    name: row.name,
    parent: row.parent,
    createdAt: row.created_at,
    lastSeen: row.last_seen,
    lastIp: row.last_ip,
    version: row.version,
    services: parseList(row.services),
    hostKeys: parseList(row.host_keys),
    fingerprint: row.fingerprint,
  };
}

/** A credential presented from another machine than the one it was enrolled on. */
export class CloneDetected extends Error {
  override name = "CloneDetected";
  constructor(readonly original: DeviceRecord) {
    super(`device "${original.name}" was copied to another machine`);
  }
}

/** Queries on devices. */
export class Devices {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Enrolls a device, or returns the one already enrolled with this credential: a daemon that
   * was killed after enrolling but before saving the answer simply asks again.
   */
  enroll(req: EnrollRequest, now = Date.now()): { device: DeviceRecord; created: boolean } {
    return transaction(this.#db, () => {
      const existing = this.byCredential(req.credentialHash);
      if (existing) {
        if (existing.accountId !== req.accountId) {
          throw new ConflictError("that device credential belongs to another account");
        }
        if (req.fingerprint && existing.fingerprint && req.fingerprint !== existing.fingerprint) {
          throw new CloneDetected(existing);
        }
        return { device: existing, created: false };
      }
      let name = req.name;
      if (name !== null && this.get(req.accountId, name)) {
        throw new ConflictError(`device "${name}" already exists in this account`);
      }
      while (name === null || this.get(req.accountId, name)) name = randomDeviceId();
      statement(
        this.#db,
        `INSERT INTO devices (account_id, name, credential_hash, enrolled_by, parent, created_at,
         fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        req.accountId,
        name,
        req.credentialHash,
        req.enrolledBy,
        req.parent ?? null,
        now,
        req.fingerprint ?? null,
      );
      return { device: this.get(req.accountId, name)!, created: true };
    });
  }

  /** Records the machine identity of a device that enrolled before identities existed. */
  setFingerprint(rowid: number, fingerprint: string): void {
    statement(this.#db, "UPDATE devices SET fingerprint = ? WHERE id = ? AND fingerprint IS NULL")
      .run(fingerprint, rowid);
  }

  /** Renames a device; throws ConflictError if the account already has the new name. */
  rename(rowid: number, accountId: number, name: string): void {
    transaction(this.#db, () => {
      if (this.get(accountId, name)) {
        throw new ConflictError(`device "${name}" already exists in this account`);
      }
      statement(this.#db, "UPDATE devices SET name = ? WHERE id = ?").run(name, rowid);
    });
  }

  /** Deletes a device with its properties. */
  remove(rowid: number): void {
    statement(this.#db, "DELETE FROM devices WHERE id = ?").run(rowid);
  }

  /** The device holding a credential, or null. */
  byCredential(hash: Uint8Array): DeviceRecord | null {
    const row = statement(this.#db, `${SELECT} WHERE d.credential_hash = ?`).get(hash) as
      | DeviceRow
      | undefined;
    return row ? toDevice(row) : null;
  }

  /** A device by account and id, or null. */
  get(accountId: number, name: string): DeviceRecord | null {
    const row = statement(this.#db, `${SELECT} WHERE d.account_id = ? AND d.name = ?`).get(
      accountId,
      name,
    ) as DeviceRow | undefined;
    return row ? toDevice(row) : null;
  }

  /** Devices of an account by id: all of them, or a page of those matching `page`. */
  list(accountId: number, page: DevicePage = {}): DeviceRecord[] {
    const where = ["d.account_id = ?"];
    const params: (string | number)[] = [accountId];
    if (page.after !== undefined) {
      where.push("d.name > ?");
      params.push(page.after);
    }
    // Matching devices are found through the props_key_value index, not device by device.
    for (const f of page.props ?? []) {
      if (f.op === "has") {
        where.push("d.id IN (SELECT device_id FROM props WHERE key = ? AND value IS NOT NULL)");
        params.push(f.key);
      } else {
        const not = f.op === "!=" ? "NOT " : "";
        where.push(`d.id ${not}IN (SELECT device_id FROM props WHERE key = ? AND value = ?)`);
        params.push(f.key, f.value ?? "");
      }
    }
    params.push(page.limit ?? -1); // LIMIT -1: no limit
    const sql = `${SELECT} WHERE ${where.join(" AND ")} ORDER BY d.name LIMIT ?`;
    // Filtered shapes vary with the caller's filters, so they are not kept prepared.
    const stmt = page.props?.length ? this.#db.prepare(sql) : statement(this.#db, sql);
    const rows = stmt.all(...params) as unknown as DeviceRow[];
    return rows.map(toDevice);
  }

  /** Number of devices in all accounts. */
  count(): number {
    return (statement(this.#db, "SELECT count(*) AS n FROM devices").get() as { n: number }).n;
  }

  /** Records a connection or its end: when, from where, which od version. */
  markSeen(rowid: number, seen: { at: number; ip?: string; version?: string }): void {
    statement(
      this.#db,
      `UPDATE devices SET last_seen = ?, last_ip = coalesce(?, last_ip),
       version = coalesce(?, version) WHERE id = ?`,
    ).run(seen.at, seen.ip ?? null, seen.version ?? null, rowid);
  }

  /**
   * Writes a batch of presence marks and reports in one transaction: with thousands of devices
   * connected, one commit per device would be thousands of fsyncs.
   */
  writePresence(
    seen: Iterable<[number, { at: number; ip?: string }]>,
    infos: Iterable<[number, { services: string[]; hostKeys: string[]; version: string }]>,
  ): void {
    transaction(this.#db, () => {
      for (const [rowid, s] of seen) this.markSeen(rowid, s);
      for (const [rowid, info] of infos) this.setInfo(rowid, info);
    });
  }

  /** Stores what the daemon reported about itself. */
  setInfo(rowid: number, info: { services: string[]; hostKeys: string[]; version: string }) {
    statement(this.#db, "UPDATE devices SET services = ?, host_keys = ?, version = ? WHERE id = ?")
      .run(JSON.stringify(info.services), JSON.stringify(info.hostKeys), info.version, rowid);
  }
}
