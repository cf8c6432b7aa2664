/**
 * The relay's audit writer: collects rows in memory and writes them once a second in one
 * transaction. Throttled refusals from one address are merged into one row with a count, so a
 * brute-force flood costs neither a disk write per attempt nor unbounded memory. Rows a store
 * that is down did not take are kept for the next flush, up to a bound.
 */
import type { AuditEntry, Store } from "../store/types.ts";
import { log } from "../shared/log.ts";

/** What a request handler learns about a request as it goes, for its audit row. */
export interface RequestAudit {
  ip: string;
  action: string;
  keyId?: string;
  accountId?: number;
  ownerId?: number;
  device?: string;
  service?: string;
}

const FLUSH_MS = 1_000; // at most one second of audit rows is lost if the relay is killed
const MAX_BUFFERED = 50_000; // beyond this, rows are merged harder rather than kept apart

/** Buffers and writes audit rows. */
export class AuditWriter {
  #store: Store;
  #rows: AuditEntry[] = [];
  #merged = new Map<string, AuditEntry>();
  #timer: ReturnType<typeof setInterval>;
  #flushing: Promise<void> | null = null;

  constructor(store: Store) {
    this.#store = store;
    this.#timer = setInterval(() => this.flush(), FLUSH_MS);
  }

  /** Records the outcome of a request or tunnel. */
  record(
    info: RequestAudit,
    result: string,
    extra: Partial<Pick<AuditEntry, "reason" | "durationMs" | "bytesUp" | "bytesDown">> = {},
  ): void {
    const entry: AuditEntry = {
      at: Date.now(),
      accountId: info.accountId ?? null,
      ownerId: info.ownerId ?? null,
      keyId: info.keyId ?? null,
      ip: info.ip,
      action: info.action,
      device: info.device ?? null,
      service: info.service ?? null,
      result,
      reason: (extra.reason ?? "").slice(0, 300),
      durationMs: extra.durationMs ?? null,
      bytesUp: extra.bytesUp ?? null,
      bytesDown: extra.bytesDown ?? null,
      count: 1,
    };
    // Repeated refusals of the same kind from one address within a second share one row.
    if (result !== "ok" && (result === "throttled" || this.#rows.length >= MAX_BUFFERED)) {
      const key = [entry.ip, entry.action, entry.result, entry.keyId, entry.device].join("\0");
      const existing = this.#merged.get(key);
      if (existing) {
        existing.count++;
        return;
      }
      this.#merged.set(key, entry);
    }
    this.#rows.push(entry);
  }

  /** Writes what is buffered (one write at a time). */
  flush(): Promise<void> {
    this.#flushing ??= this.#write().finally(() => (this.#flushing = null));
    return this.#flushing;
  }

  async #write(): Promise<void> {
    const rows = this.#rows;
    if (rows.length === 0) return;
    this.#rows = [];
    this.#merged.clear();
    try {
      await this.#store.audit.append(rows);
    } catch (err) {
      log.error("cannot write audit rows", { rows: rows.length, error: err });
      // Kept for the next flush; beyond the bound the oldest go, so a long outage costs memory
      // for MAX_BUFFERED rows, not for every request.
      this.#rows = rows.concat(this.#rows).slice(-MAX_BUFFERED);
    }
  }

  /** Stops the timer and writes the rest. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
