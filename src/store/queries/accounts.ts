/** Accounts and keys over an Executor (both dialects). */
import { generateKey, generateKeyId, type KeyRole } from "../../protocol/keys.ts";
import { hashSecret } from "../hash.ts";
import {
  type Account,
  type AccountStore,
  type AddedKey,
  ConflictError,
  type KeyInfo,
} from "../types.ts";
import { type Executor, retryOnUnique, UniqueViolation } from "./executor.ts";

interface KeyRow {
  id: string;
  account: string;
  account_id: number;
  role: KeyRole;
  label: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

const KEY_SELECT = `SELECT k.id, a.name AS account, k.account_id, k.role, k.label, k.created_at,
  k.last_used_at, k.revoked_at FROM keys k JOIN accounts a ON a.id = k.account_id`;

function toKey(row: KeyRow): KeyInfo {
  return {
    id: row.id,
    account: row.account,
    accountId: row.account_id,
    role: row.role,
    label: row.label,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

/** AccountStore on an Executor. */
export class AccountQueries implements AccountStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** Creates an account with one client key and one device key. */
  async create(name: string, now = Date.now()) {
    const exists = () => new ConflictError(`account "${name}" already exists`);
    try {
      return await this.#e.tx(async (e) => {
        if (await find(e, name) !== null) throw exists();
        const row = await e.get<{ id: number }>(
          "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id",
          [name, now],
        );
        const id = row!.id;
        return {
          account: name,
          clientKey: (await insertKey(e, id, "client", "created with the account", now)).key,
          deviceKey: (await insertKey(e, id, "device", "created with the account", now)).key,
        };
      });
    } catch (err) {
      // Another relay created it between our check and our insert.
      if (err instanceof UniqueViolation) throw exists();
      throw err;
    }
  }

  /** The account's row id, or null. */
  find(name: string): Promise<number | null> {
    return find(this.#e, name);
  }

  /** All accounts with their device and key counts. */
  async list(): Promise<Account[]> {
    const rows = await this.#e.all<
      { id: number; name: string; created_at: number; devices: number; keys: number }
    >(
      `SELECT a.id, a.name, a.created_at,
        (SELECT count(*) FROM devices d WHERE d.account_id = a.id) AS devices,
        (SELECT count(*) FROM keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL) AS keys
       FROM accounts a ORDER BY a.name`,
    );
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      createdAt: r.created_at,
      devices: r.devices,
      keys: r.keys,
    }));
  }

  /** Deletes an account with everything it owns. */
  async remove(name: string): Promise<boolean> {
    return await this.#e.run("DELETE FROM accounts WHERE name = ?", [name]) > 0;
  }

  /** Adds a key to an existing account. */
  addKey(account: string, role: KeyRole, label = "", now = Date.now()): Promise<AddedKey> {
    return retryOnUnique(this.#e, () =>
      this.#e.tx(async (e) => {
        const id = await find(e, account);
        if (id === null) throw new ConflictError(`account "${account}" does not exist`);
        return await insertKey(e, id, role, label, now);
      }));
  }

  /** Keys, optionally of one account, oldest first. */
  async listKeys(account?: string): Promise<KeyInfo[]> {
    const rows = account === undefined
      ? await this.#e.all<KeyRow>(`${KEY_SELECT} ORDER BY k.created_at, k.id`)
      : await this.#e.all<KeyRow>(`${KEY_SELECT} WHERE a.name = ? ORDER BY k.created_at, k.id`, [
        account,
      ]);
    return rows.map(toKey);
  }

  /** Marks a key revoked. */
  async revokeKey(id: string, now = Date.now()): Promise<boolean> {
    return await this.#e.run(
      "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
      [now, id],
    ) > 0;
  }

  /** The key a secret belongs to, or null. */
  async findKey(secret: string): Promise<KeyInfo | null> {
    const row = await this.#e.get<KeyRow>(`${KEY_SELECT} WHERE k.hash = ?`, [hashSecret(secret)]);
    return row ? toKey(row) : null;
  }

  /** A key by id, or null. */
  async keyById(id: string): Promise<KeyInfo | null> {
    const row = await this.#e.get<KeyRow>(`${KEY_SELECT} WHERE k.id = ?`, [id]);
    return row ? toKey(row) : null;
  }

  /** Ids of keys revoked at or after `since`. */
  async revokedSince(since: number): Promise<string[]> {
    const rows = await this.#e.all<{ id: string }>(
      "SELECT id FROM keys WHERE revoked_at >= ? ORDER BY id",
      [since],
    );
    return rows.map((r) => r.id);
  }

  /** Records that keys were used. */
  async touchKeys(ids: readonly string[], now = Date.now()): Promise<void> {
    if (ids.length === 0) return;
    const sql = "UPDATE keys SET last_used_at = ? WHERE id = ?";
    await this.#e.tx((e) => Promise.all(ids.map((id) => e.run(sql, [now, id]))));
  }
}

async function find(e: Executor, name: string): Promise<number | null> {
  const row = await e.get<{ id: number }>("SELECT id FROM accounts WHERE name = ?", [name]);
  return row ? row.id : null;
}

async function insertKey(
  e: Executor,
  accountId: number,
  role: KeyRole,
  label: string,
  now: number,
): Promise<AddedKey> {
  const key = generateKey(role);
  const id = generateKeyId();
  await e.run(
    "INSERT INTO keys (id, account_id, role, hash, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    [id, accountId, role, hashSecret(key), label, now],
  );
  return { id, key, role };
}
