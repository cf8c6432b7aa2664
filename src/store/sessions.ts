/**
 * Dashboard sessions (schema migration 6): a browser signs in with an account key and gets a
 * random session secret in a cookie; only the secret's SHA-256 is stored, with the key it was
 * opened with and when it ends. A session is only as good as its key: `find` returns the key
 * with its revocation, and the relay refuses a session whose key is revoked.
 *
 * The rules and SQL are used by src/store/queries/sessions.ts, for SQLite and PostgreSQL alike.
 */
import type { KeyInfo } from "./types.ts";

/** Sessions one key may hold at once; signing in again beyond that ends its oldest session. */
export const MAX_SESSIONS_PER_KEY = 32; // a person's browsers and devices, with room to spare

/** A stored session, with the key it was opened with (revoked or not). */
export interface SessionRecord {
  createdAt: number;
  expiresAt: number;
  key: KeyInfo;
}

/** A row of the session query: the session's times and its key's columns. */
export interface SessionRow {
  created_at: number;
  expires_at: number;
  key_id: string;
  account: string;
  account_id: number;
  role: KeyInfo["role"];
  label: string;
  key_created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** The query behind `find`, in SQL both SQLite and PostgreSQL accept. */
export const SESSION_SELECT = `SELECT s.created_at, s.expires_at, k.id AS key_id,
  a.name AS account, k.account_id, k.role, k.label, k.created_at AS key_created_at,
  k.last_used_at, k.revoked_at
  FROM sessions s JOIN keys k ON k.id = s.key_id JOIN accounts a ON a.id = k.account_id
  WHERE s.hash = ?`;

/** Removes a key's sessions beyond the newest MAX_SESSIONS_PER_KEY (params: key id twice, max). */
export const SESSION_TRIM = `DELETE FROM sessions WHERE key_id = ? AND hash NOT IN
  (SELECT hash FROM sessions WHERE key_id = ? ORDER BY created_at DESC, hash LIMIT ?)`;

/** Removes ended sessions: expired, or of a revoked key (param: now). */
export const SESSION_PRUNE = `DELETE FROM sessions WHERE expires_at <= ?
  OR key_id IN (SELECT id FROM keys WHERE revoked_at IS NOT NULL)`;

/** The record form of a session row. */
export function toSession(row: SessionRow): SessionRecord {
  return {
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    key: {
      id: row.key_id,
      account: row.account,
      accountId: row.account_id,
      role: row.role,
      label: row.label,
      createdAt: row.key_created_at,
      lastUsedAt: row.last_used_at,
      revokedAt: row.revoked_at,
    },
  };
}
