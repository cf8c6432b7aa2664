/**
 * The change feed on PostgreSQL: migration 5's triggers NOTIFY `od_changes` in the writing
 * transaction, so a change reaches every listening relay when it commits, in commit order. The
 * feed LISTENs on a connection of its own. Notifications sent while that connection is down are
 * lost, so when the driver has reconnected and listens again, subscribers get "resync".
 */
// scripts/od and the units od installs run deno with --no-config: the pin is named here.
// deno-lint-ignore no-import-prefix
import postgres from "npm:postgres@3.4.9";
import { log } from "../../shared/log.ts";
import type { StoreChange, Unsubscribe } from "../types.ts";
import { CHANGE_CHANNEL } from "./schema.ts";
import { bounded, type DriverOptions, type Sql } from "./executor.ts";
import { timeoutError } from "./errors.ts";

/** Parses a notification's payload; anything unexpected asks subscribers to resync. */
export function parsePayload(payload: string): StoreChange {
  try {
    const p = JSON.parse(payload) as { k: string; a: number; d: number; r: string; n: number };
    switch (p.k) {
      case "keys":
        return { kind: "keys", accountId: p.a, keyId: p.r };
      case "shares":
        return { kind: "shares", accountId: p.a, shareId: p.n };
      case "devices":
        return { kind: "devices", accountId: p.a, rowid: p.d };
      case "props":
        return { kind: "props", accountId: p.a, rowid: p.d, key: p.r };
      case "events":
        return { kind: "events", accountId: p.a, eventId: p.n };
      case "links":
        return { kind: "links", rowid: p.d, relayId: p.r, generation: p.n };
    }
  } catch {
    // fall through
  }
  return { kind: "resync" };
}

/** LISTENs for one store's subscribers. */
export class PgFeed {
  readonly #options: DriverOptions;
  readonly #shown: string;
  readonly #timeoutMs: number;
  readonly #mapError: (err: unknown) => unknown;
  readonly #subscribers = new Set<(c: StoreChange) => void>();
  #client: Sql | null = null;
  #listening: Promise<unknown> | null = null;
  #live = false;

  constructor(
    options: DriverOptions,
    ctx: { shown: string; timeoutMs: number; mapError: (err: unknown) => unknown },
  ) {
    this.#options = options;
    this.#shown = ctx.shown;
    this.#timeoutMs = ctx.timeoutMs;
    this.#mapError = ctx.mapError;
  }

  /** Adds a subscriber; resolves once the LISTEN is in place. */
  async subscribe(fn: (c: StoreChange) => void): Promise<Unsubscribe> {
    this.#subscribers.add(fn);
    if (!this.#listening) {
      const client = postgres({ ...this.#options, max: 1 }) as unknown as Sql;
      this.#client = client;
      this.#listening = client.listen(
        CHANGE_CHANNEL,
        (payload) => this.#emit(parsePayload(payload)),
        () => this.#onListen(),
      );
    }
    try {
      await bounded(
        this.#listening,
        this.#timeoutMs,
        () => timeoutError(this.#shown, this.#timeoutMs),
      );
    } catch (err) {
      this.#subscribers.delete(fn);
      if (this.#subscribers.size === 0) await this.stop();
      throw this.#mapError(err);
    }
    return () => {
      this.#subscribers.delete(fn);
      if (this.#subscribers.size === 0) this.stop().catch(() => {});
    };
  }

  /** Ends the listening connection. */
  async stop(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    this.#listening?.catch(() => {});
    this.#listening = null;
    this.#live = false;
    this.#subscribers.clear();
    await client?.end({ timeout: 0 });
  }

  #onListen(): void {
    // The first LISTEN starts the feed; any later one follows a reconnect that may have lost
    // notifications.
    if (this.#live) {
      log.info("store change feed reconnected");
      this.#emit({ kind: "resync" });
    }
    this.#live = true;
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
