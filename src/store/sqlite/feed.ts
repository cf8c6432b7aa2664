/**
 * The change feed on SQLite: migration 5's triggers append every change to `change_log` in the
 * writing transaction, whoever writes (this relay, `od admin`, an older od), and this feed reads
 * the log every POLL_MS. Reading past the last seen `seq` is one index probe when nothing is new,
 * so no data_version check is needed in front of it (data_version would also miss this
 * connection's own commits). The log keeps the last 100,000 changes; a reader that finds a gap
 * missed some and is told to resync.
 */
import type { DatabaseSync } from "node:sqlite";
import { statement } from "../db.ts";
import type { StoreChange, Unsubscribe } from "../types.ts";
import { log } from "../../shared/log.ts";
import type { Gate } from "./executor.ts";

/** How often the log is read: revocations made by `od admin` take effect within this. */
export const POLL_MS = 250;
const BATCH = 10_000; // rows read per statement; a tick reads until the log is drained

interface LogRow {
  seq: number;
  kind: string;
  account_id: number | null;
  device_id: number | null;
  ref: string | null;
  num: number | null;
}

/** A change log row as the feed's change. */
export function toChange(r: LogRow): StoreChange {
  switch (r.kind) {
    case "keys":
      return { kind: "keys", accountId: r.account_id!, keyId: r.ref! };
    case "shares":
      return { kind: "shares", accountId: r.account_id!, shareId: r.num! };
    case "devices":
      return { kind: "devices", accountId: r.account_id!, rowid: r.device_id! };
    case "props":
      return { kind: "props", accountId: r.account_id!, rowid: r.device_id!, key: r.ref! };
    case "events":
      return { kind: "events", accountId: r.account_id!, eventId: r.num! };
    case "links":
      return { kind: "links", rowid: r.device_id!, relayId: r.ref, generation: r.num! };
  }
  return { kind: "resync" }; // a kind from a newer od: re-read everything
}

/** Polls the change log for the subscribers of one store. */
export class SqliteFeed {
  readonly #db: DatabaseSync;
  readonly #gate: Gate;
  readonly #subscribers = new Set<(c: StoreChange) => void>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #last = 0;

  constructor(db: DatabaseSync, gate: Gate) {
    this.#db = db;
    this.#gate = gate;
  }

  /** Adds a subscriber; the first one starts polling from the log's current end. */
  subscribe(fn: (c: StoreChange) => void): Unsubscribe {
    if (this.#subscribers.size === 0) {
      const row = statement(this.#db, "SELECT coalesce(max(seq), 0) AS seq FROM change_log")
        .get() as { seq: number };
      this.#last = row.seq;
      const timer = setInterval(() => this.#poll(), POLL_MS);
      Deno.unrefTimer(timer); // a relay's exit must not wait for the feed
      this.#timer = timer;
    }
    this.#subscribers.add(fn);
    return () => {
      this.#subscribers.delete(fn);
      if (this.#subscribers.size === 0) this.stop();
    };
  }

  /** Stops polling. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#subscribers.clear();
  }

  #poll(): void {
    // Inside an open transaction this connection would see its uncommitted rows.
    if (this.#gate.held || !this.#db.isOpen) return;
    try {
      while (true) {
        const rows = statement(
          this.#db,
          "SELECT seq, kind, account_id, device_id, ref, num FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?",
        ).all(this.#last, BATCH) as unknown as LogRow[];
        if (rows.length === 0) return;
        if (rows[0].seq > this.#last + 1) this.#emit({ kind: "resync" });
        for (const r of rows) this.#emit(toChange(r));
        this.#last = rows[rows.length - 1].seq;
        if (rows.length < BATCH) return;
      }
    } catch (err) {
      log.warn("store change feed: cannot read the change log", { error: err });
    }
  }

  #emit(change: StoreChange): void {
    for (const fn of this.#subscribers) {
      try {
        fn(change);
      } catch (err) {
        log.error("store change subscriber failed", { error: err });
      }
    }
  }
}
