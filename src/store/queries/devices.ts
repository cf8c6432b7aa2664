/** Enrolled devices over an Executor (both dialects). */
import { randomDeviceId } from "../records.ts";
import {
  CloneDetected,
  ConflictError,
  DEFAULT_PAGE,
  type DevicePage,
  type DeviceQuery,
  type DeviceRecord,
  type DeviceStore,
  type EnrollRequest,
  MAX_PAGE,
  type SeenUpdate,
} from "../types.ts";
import { type Executor, retryOnUnique, UniqueViolation } from "./executor.ts";
import { filterSql } from "./device_filter.ts";

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

const taken = (name: string) =>
  new ConflictError(`device "${name}" already exists in this account`);

/** DeviceStore on an Executor; `liveWindowMs` is how recent a heartbeat keeps a relay live. */
export class DeviceQueries implements DeviceStore {
  readonly #e: Executor;
  readonly #liveWindowMs: number;
  constructor(e: Executor, liveWindowMs: number) {
    this.#e = e;
    this.#liveWindowMs = liveWindowMs;
  }

  /** Enrols a device, or returns the one enrolled with this credential. */
  enroll(req: EnrollRequest, now = Date.now()) {
    // A concurrent enrolment of the same credential on another relay makes our insert hit the
    // unique credential; the retry then finds that device and answers idempotently.
    return retryOnUnique(this.#e, () => this.#e.tx((e) => enroll(e, req, now)));
  }

  /** Records the fingerprint of a device that enrolled without one. */
  async setFingerprint(rowid: number, fingerprint: string): Promise<void> {
    await this.#e.run("UPDATE devices SET fingerprint = ? WHERE id = ? AND fingerprint IS NULL", [
      fingerprint,
      rowid,
    ]);
  }

  /** Renames a device. */
  async rename(rowid: number, accountId: number, name: string): Promise<void> {
    try {
      await this.#e.tx(async (e) => {
        await e.lockRow("accounts", accountId);
        if (await get(e, accountId, name)) throw taken(name);
        await e.run("UPDATE devices SET name = ? WHERE id = ?", [name, rowid]);
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw taken(name);
      throw err;
    }
  }

  /** Deletes a device with its properties and link. */
  async remove(rowid: number): Promise<boolean> {
    return await this.#e.run("DELETE FROM devices WHERE id = ?", [rowid]) > 0;
  }

  /** The device holding a credential, or null. */
  byCredential(hash: Uint8Array): Promise<DeviceRecord | null> {
    return byCredential(this.#e, hash);
  }

  /** A device by account and id, or null. */
  get(accountId: number, name: string): Promise<DeviceRecord | null> {
    return get(this.#e, accountId, name);
  }

  /** A device by row id, or null. */
  async byRowid(rowid: number): Promise<DeviceRecord | null> {
    const row = await this.#e.get<DeviceRow>(`${SELECT} WHERE d.id = ?`, [rowid]);
    return row ? toDevice(row) : null;
  }

  /** One page of an account's devices, filtered in SQL. */
  async list(q: DeviceQuery): Promise<DevicePage> {
    const limit = Math.max(1, Math.min(q.limit ?? DEFAULT_PAGE, MAX_PAGE));
    const where = ["d.account_id = ?"];
    const params: (string | number | null)[] = [q.accountId];
    if (q.after !== undefined) {
      where.push("d.name > ?");
      params.push(q.after);
    }
    const liveSince = (q.now ?? Date.now()) - this.#liveWindowMs;
    for (const f of q.filters ?? []) {
      const c = filterSql(f, liveSince);
      where.push(c.sql);
      params.push(...c.params);
    }
    const rows = await this.#e.all<DeviceRow>(
      `${SELECT} WHERE ${where.join(" AND ")} ORDER BY d.name LIMIT ?`,
      [...params, limit + 1],
    );
    const more = rows.length > limit;
    const devices = rows.slice(0, limit).map(toDevice);
    return { devices, next: more ? devices[devices.length - 1].name : null };
  }

  /** Number of devices in all accounts. */
  async count(): Promise<number> {
    return (await this.#e.get<{ n: number }>("SELECT count(*) AS n FROM devices"))!.n;
  }

  /** Records connections and their ends, one statement for the whole batch. */
  async markSeenMany(seen: readonly SeenUpdate[]): Promise<void> {
    if (seen.length === 0) return;
    const batch = JSON.stringify([...mergeSeen(seen).values()]);
    const source = this.#e.dialect === "postgres"
      ? `json_to_recordset(CAST(? AS TEXT)::json) AS v(id bigint, at bigint, ip text, version text)`
      : `(SELECT value ->> 'id' AS id, value ->> 'at' AS at, value ->> 'ip' AS ip,
          value ->> 'version' AS version FROM json_each(?)) AS v`;
    await this.#e.run(
      `UPDATE devices SET last_seen = v.at, last_ip = coalesce(v.ip, devices.last_ip),
       version = coalesce(v.version, devices.version) FROM ${source} WHERE devices.id = v.id`,
      [batch],
    );
  }

  /** Stores what a daemon reported about itself. */
  async setInfo(rowid: number, info: { services: string[]; hostKeys: string[]; version: string }) {
    await this.#e.run("UPDATE devices SET services = ?, host_keys = ?, version = ? WHERE id = ?", [
      JSON.stringify(info.services),
      JSON.stringify(info.hostKeys),
      info.version,
      rowid,
    ]);
  }
}

/** One update per device: the latest time, and the latest address and version reported. */
function mergeSeen(seen: readonly SeenUpdate[]) {
  const out = new Map<
    number,
    { id: number; at: number; ip: string | null; version: string | null }
  >();
  for (const s of [...seen].sort((a, b) => a.at - b.at)) {
    const prev = out.get(s.rowid);
    out.set(s.rowid, {
      id: s.rowid,
      at: s.at,
      ip: s.ip ?? prev?.ip ?? null,
      version: s.version ?? prev?.version ?? null,
    });
  }
  return out;
}

async function byCredential(e: Executor, hash: Uint8Array): Promise<DeviceRecord | null> {
  const row = await e.get<DeviceRow>(`${SELECT} WHERE d.credential_hash = ?`, [hash]);
  return row ? toDevice(row) : null;
}

async function get(e: Executor, accountId: number, name: string): Promise<DeviceRecord | null> {
  const row = await e.get<DeviceRow>(`${SELECT} WHERE d.account_id = ? AND d.name = ?`, [
    accountId,
    name,
  ]);
  return row ? toDevice(row) : null;
}

async function enroll(e: Executor, req: EnrollRequest, now: number) {
  await e.lockRow("accounts", req.accountId); // one enrolment per account at a time
  const existing = await byCredential(e, req.credentialHash);
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
  if (name !== null && await get(e, req.accountId, name)) throw taken(name);
  while (name === null || await get(e, req.accountId, name)) name = randomDeviceId();
  const row = await e.get<{ id: number }>(
    `INSERT INTO devices (account_id, name, credential_hash, enrolled_by, parent, created_at,
     fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    [
      req.accountId,
      name,
      req.credentialHash,
      req.enrolledBy,
      req.parent ?? null,
      now,
      req.fingerprint ?? null,
    ],
  );
  const device = await e.get<DeviceRow>(`${SELECT} WHERE d.id = ?`, [row!.id]);
  return { device: toDevice(device!), created: true };
}
