/** Shares: an owner account lets a grantee account list and reach some of its devices. */
import type { DatabaseSync } from "node:sqlite";
import { statement } from "./db.ts";

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

/** Queries on shares. */
export class Shares {
  #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Adds a share and returns it. */
  add(s: Omit<Share, "id" | "owner" | "grantee" | "createdAt">, now = Date.now()): Share {
    const { lastInsertRowid } = statement(
      this.#db,
      `INSERT INTO shares (owner_id, grantee_id, device, filters, services, created_by, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      s.ownerId,
      s.granteeId,
      s.device,
      JSON.stringify(s.filters),
      JSON.stringify(s.services),
      s.createdBy,
      now,
    );
    return this.get(Number(lastInsertRowid))!;
  }

  /** A share by id, or null. */
  get(id: number): Share | null {
    const row = statement(this.#db, `${SELECT} WHERE s.id = ?`).get(id) as ShareRow | undefined;
    return row ? toShare(row) : null;
  }

  /** Shares an account has given or received. */
  involving(accountId: number): Share[] {
    const rows = statement(
      this.#db,
      `${SELECT} WHERE s.owner_id = ? OR s.grantee_id = ? ORDER BY s.id`,
    ).all(accountId, accountId) as unknown as ShareRow[];
    return rows.map(toShare);
  }

  /** Shares received by an account, optionally only from one owner. */
  received(granteeId: number, ownerId?: number): Share[] {
    const rows =
      (ownerId === undefined
        ? statement(this.#db, `${SELECT} WHERE s.grantee_id = ?`).all(granteeId)
        : statement(this.#db, `${SELECT} WHERE s.grantee_id = ? AND s.owner_id = ?`).all(
          granteeId,
          ownerId,
        )) as unknown as ShareRow[];
    return rows.map(toShare);
  }

  /** Deletes a share the owner gave; false if there was none. */
  remove(id: number, ownerId: number): boolean {
    return statement(this.#db, "DELETE FROM shares WHERE id = ? AND owner_id = ?").run(id, ownerId)
      .changes > 0;
  }
}
