/** Accounts and their keys. Keys are stored as SHA-256 hashes; the secret is returned once. */
import type { DatabaseSync } from "node:sqlite";
import { generateKey, generateKeyId, type KeyRole } from "../protocol/keys.ts";
import { hashSecret } from "./hash.ts";
import { statement, transaction } from "./db.ts";

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

/** Queries on accounts and keys. */
export class Accounts {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Creates an account with one client key and one device key. */
  create(name: string, now = Date.now()): NewAccount {
    return transaction(this.#db, () => {
      if (this.find(name)) throw new ConflictError(`account "${name}" already exists`);
      const { lastInsertRowid } = statement(
        this.#db,
        "INSERT INTO accounts (name, created_at) VALUES (?, ?)",
      )
        .run(name, now);
      const id = Number(lastInsertRowid);
      return {
        account: name,
        clientKey: this.#insertKey(id, "client", "created with the account", now).key,
        deviceKey: this.#insertKey(id, "device", "created with the account", now).key,
      };
    });
  }

  /** The account's row id, or null. */
  find(name: string): number | null {
    const row = statement(this.#db, "SELECT id FROM accounts WHERE name = ?").get(name) as
      | { id: number }
      | undefined;
    return row ? row.id : null;
  }

  /** All accounts with their device and key counts. */
  list(): Account[] {
    const rows = statement(
      this.#db,
      `SELECT a.id, a.name, a.created_at,
        (SELECT count(*) FROM devices d WHERE d.account_id = a.id) AS devices,
        (SELECT count(*) FROM keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL) AS keys
       FROM accounts a ORDER BY a.name`,
    ).all() as { id: number; name: string; created_at: number; devices: number; keys: number }[];
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      createdAt: r.created_at,
      devices: r.devices,
      keys: r.keys,
    }));
  }

  /** Deletes an account with its keys and devices; false if there was none. */
  remove(name: string): boolean {
    return statement(this.#db, "DELETE FROM accounts WHERE name = ?").run(name).changes > 0;
  }

  /** Adds a key to an existing account and returns it with its secret. */
  addKey(account: string, role: KeyRole, label = "", now = Date.now()) {
    return transaction(this.#db, () => {
      const id = this.find(account);
      if (id === null) throw new ConflictError(`account "${account}" does not exist`);
      return this.#insertKey(id, role, label, now);
    });
  }

  #insertKey(accountId: number, role: KeyRole, label: string, now: number) {
    const key = generateKey(role);
    const id = generateKeyId();
    statement(
      this.#db,
      "INSERT INTO keys (id, account_id, role, hash, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(id, accountId, role, hashSecret(key), label, now);
    return { id, key, role };
  }

  /** Keys, optionally of one account, oldest first. */
  listKeys(account?: string): KeyInfo[] {
    const rows =
      (account === undefined
        ? statement(this.#db, `${KEY_SELECT} ORDER BY k.created_at, k.id`).all()
        : statement(this.#db, `${KEY_SELECT} WHERE a.name = ? ORDER BY k.created_at, k.id`).all(
          account,
        )) as unknown as KeyRow[];
    return rows.map(toKey);
  }

  /** Marks a key revoked; false if no such unrevoked key exists. */
  revokeKey(id: string, now = Date.now()): boolean {
    return statement(this.#db, "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
      .run(now, id).changes > 0;
  }

  /** The key a secret belongs to (revoked or not), or null. */
  findKey(secret: string): KeyInfo | null {
    const row = statement(this.#db, `${KEY_SELECT} WHERE k.hash = ?`).get(hashSecret(secret)) as
      | KeyRow
      | undefined;
    return row ? toKey(row) : null;
  }

  /** Ids of keys revoked at or after `since`, so a running relay can close their tunnels. */
  revokedSince(since: number): string[] {
    const rows = statement(this.#db, "SELECT id FROM keys WHERE revoked_at >= ?").all(since) as {
      id: string;
    }[];
    return rows.map((r) => r.id);
  }

  /** Records that a key was used; called at most once a minute per key by the relay. */
  touchKey(id: string, now = Date.now()): void {
    statement(this.#db, "UPDATE keys SET last_used_at = ? WHERE id = ?").run(now, id);
  }
}
