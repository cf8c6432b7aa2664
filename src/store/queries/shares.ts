/** Shares between accounts over an Executor (both dialects). */
import type { Share, ShareStore } from "../types.ts";
import type { Executor } from "./executor.ts";

interface ShareRow {
  id: number;
  owner_id: number;
  owner: string;
  grantee_id: number;
  grantee: string;
  device: string | null;
  filters: string;
  services: string;
  created_by: string;
  created_at: number;
}

const SELECT = `SELECT s.id, s.owner_id, o.name AS owner, s.grantee_id, g.name AS grantee, s.device,
  s.filters, s.services, s.created_by, s.created_at FROM shares s
  JOIN accounts o ON o.id = s.owner_id JOIN accounts g ON g.id = s.grantee_id`;

function toShare(r: ShareRow): Share {
  return {
    id: r.id,
    ownerId: r.owner_id,
    owner: r.owner,
    granteeId: r.grantee_id,
    grantee: r.grantee,
    device: r.device,
    filters: JSON.parse(r.filters),
    services: JSON.parse(r.services),
    createdBy: r.created_by,
    createdAt: r.created_at,
  };
}

/** ShareStore on an Executor. */
export class ShareQueries implements ShareStore {
  readonly #e: Executor;
  constructor(e: Executor) {
    this.#e = e;
  }

  /** Adds a share and returns it. */
  add(s: Omit<Share, "id" | "owner" | "grantee" | "createdAt">, now = Date.now()) {
    return this.#e.tx(async (e) => {
      const row = await e.get<{ id: number }>(
        `INSERT INTO shares (owner_id, grantee_id, device, filters, services, created_by,
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        [
          s.ownerId,
          s.granteeId,
          s.device,
          JSON.stringify(s.filters),
          JSON.stringify(s.services),
          s.createdBy,
          now,
        ],
      );
      return toShare((await e.get<ShareRow>(`${SELECT} WHERE s.id = ?`, [row!.id]))!);
    });
  }

  /** A share by id, or null. */
  async get(id: number): Promise<Share | null> {
    const row = await this.#e.get<ShareRow>(`${SELECT} WHERE s.id = ?`, [id]);
    return row ? toShare(row) : null;
  }

  /** Shares an account has given or received. */
  async involving(accountId: number): Promise<Share[]> {
    const rows = await this.#e.all<ShareRow>(
      `${SELECT} WHERE s.owner_id = ? OR s.grantee_id = ? ORDER BY s.id`,
      [accountId, accountId],
    );
    return rows.map(toShare);
  }

  /** Shares received by an account, optionally only from one owner. */
  async received(granteeId: number, ownerId?: number): Promise<Share[]> {
    const rows = ownerId === undefined
      ? await this.#e.all<ShareRow>(`${SELECT} WHERE s.grantee_id = ? ORDER BY s.id`, [granteeId])
      : await this.#e.all<ShareRow>(
        `${SELECT} WHERE s.grantee_id = ? AND s.owner_id = ? ORDER BY s.id`,
        [granteeId, ownerId],
      );
    return rows.map(toShare);
  }

  /** Deletes a share the owner gave. */
  async remove(id: number, ownerId: number): Promise<boolean> {
    return await this.#e.run("DELETE FROM shares WHERE id = ? AND owner_id = ?", [id, ownerId]) > 0;
  }
}
