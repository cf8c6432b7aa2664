/** Dashboard sessions over an Executor (both dialects); the rules are src/store/sessions.ts's. */
import {
  MAX_SESSIONS_PER_KEY,
  SESSION_PRUNE,
  SESSION_SELECT,
  SESSION_TRIM,
  type SessionRecord,
  type SessionRow,
  toSession,
} from "../sessions.ts";
import type { SessionStore } from "../types.ts";
import type { Executor } from "./executor.ts";

/** SessionStore on an Executor. */
export class SessionQueries implements SessionStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** Stores a new session; ends the key's oldest beyond MAX_SESSIONS_PER_KEY. */
  async create(hash: Uint8Array, keyId: string, createdAt: number, expiresAt: number) {
    await this.#e.tx(async (e) => {
      await e.run(
        "INSERT INTO sessions (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        [hash, keyId, createdAt, expiresAt],
      );
      await e.run(SESSION_TRIM, [keyId, keyId, MAX_SESSIONS_PER_KEY]);
    });
  }

  /** The session with this secret hash and its key, or null. */
  async find(hash: Uint8Array): Promise<SessionRecord | null> {
    const row = await this.#e.get<SessionRow>(SESSION_SELECT, [hash]);
    return row ? toSession(row) : null;
  }

  /** Ends a session. */
  async remove(hash: Uint8Array): Promise<boolean> {
    return await this.#e.run("DELETE FROM sessions WHERE hash = ?", [hash]) > 0;
  }

  /** Deletes expired sessions and those of revoked keys. */
  prune(now = Date.now()): Promise<number> {
    return this.#e.run(SESSION_PRUNE, [now]);
  }
}
