/**
 * Dashboard sessions on the synchronous store (src/store/store.ts), with the SQL of
 * src/store/sessions.ts. It goes when the relay has moved to the async store, whose
 * src/store/queries/sessions.ts does the same.
 */
import type { DatabaseSync } from "node:sqlite";
import { statement, transaction } from "./db.ts";
import {
  MAX_SESSIONS_PER_KEY,
  SESSION_PRUNE,
  SESSION_SELECT,
  SESSION_TRIM,
  type SessionRecord,
  type SessionRow,
  toSession,
} from "./sessions.ts";

/** Queries on sessions. */
export class Sessions {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Stores a new session of `keyId` by the hash of its secret; ends the key's oldest beyond the cap. */
  create(hash: Uint8Array, keyId: string, createdAt: number, expiresAt: number): void {
    transaction(this.#db, () => {
      statement(
        this.#db,
        "INSERT INTO sessions (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
      ).run(hash, keyId, createdAt, expiresAt);
      statement(this.#db, SESSION_TRIM).run(keyId, keyId, MAX_SESSIONS_PER_KEY);
    });
  }

  /** The session with this secret hash and its key, or null (expired ones included). */
  find(hash: Uint8Array): SessionRecord | null {
    const row = statement(this.#db, SESSION_SELECT).get(hash) as SessionRow | undefined;
    return row ? toSession(row) : null;
  }

  /** Ends a session; false if there was none. */
  remove(hash: Uint8Array): boolean {
    return statement(this.#db, "DELETE FROM sessions WHERE hash = ?").run(hash).changes > 0;
  }

  /** Deletes sessions that have expired by `now` or whose key is revoked. */
  prune(now = Date.now()): number {
    return Number(statement(this.#db, SESSION_PRUNE).run(now).changes);
  }
}
