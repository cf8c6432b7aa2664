/**
 * Relay events: every state change, property change, clone, rename and removal is appended to
 * the store's event log and pushed to the subscribers of its account (`od events`). Events this
 * relay appends are delivered at once; events appended elsewhere (another relay on the same
 * store) arrive through the store's change feed (`remote`), are read back and delivered too,
 * so `od events` on any relay sees the whole account.
 */
import type { EventRecord, Store } from "../store/types.ts";
import type { Event, EventType } from "../protocol/api.ts";
import { log } from "../shared/log.ts";

/** A live subscription. */
export interface Subscriber {
  accountId: number;
  device?: string;
  types?: string[];
  push(event: EventRecord): void;
  /** The key that subscribed, and how to end the subscription when that key is revoked. */
  keyId?: string;
  end?(reason: string): void;
}

/** The public JSON form of an event. */
export function eventView(e: EventRecord): Event {
  const at = new Date(e.at).toISOString();
  return { id: e.id, at, device: e.device, type: e.type as EventType, ...e.data };
}

// How long a batched event waits for others to share its commit (devices coming online in a
// reconnect storm): subscribers see it this much later, never out of order.
const BATCH_MS = 250;
// How long announced events wait before they are read back, so that this relay's own appends
// are known as its own by then (the feed may announce a commit before the append returns).
const REMOTE_MS = 50;
const MAX_OWN = 100_000; // ids of own events remembered until the feed announces them
const MAX_READ = 10_000; // events read back at once; a burst beyond it is cut, not queued

/** Appends events and fans them out. */
export class EventBus {
  #store: Store;
  #subscribers = new Set<Subscriber>();
  #queued: Omit<EventRecord, "id">[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #own = new Set<number>();
  #remote = new Map<number, number[]>(); // account → event ids announced by the feed
  #remoteTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records an event and delivers it to matching subscribers. */
  async emit(accountId: number, device: string, type: string, data: Record<string, unknown> = {}) {
    await this.flush(); // batched events came first, so they keep their place in the log
    const event = await this.#store.events.append({
      accountId,
      device,
      type,
      data,
      at: Date.now(),
    });
    this.#delivered(event);
    return event;
  }

  /**
   * Like emit, but the event is written within BATCH_MS together with others in one
   * transaction: for events that come in floods (devices going online and offline).
   */
  emitSoon(accountId: number, device: string, type: string, data: Record<string, unknown> = {}) {
    this.#queued.push({ accountId, device, type, data, at: Date.now() });
    this.#timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** Writes and delivers the batched events now (a store that is down loses them, logged). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#queued.length === 0) return;
    const queued = this.#queued;
    this.#queued = [];
    let written: EventRecord[];
    try {
      written = await this.#store.tx((t) => Promise.all(queued.map((e) => t.events.append(e))));
    } catch (err) {
      log.error("cannot write events", { events: queued.length, error: err });
      return;
    }
    for (const event of written) this.#delivered(event);
  }

  /** The feed announced event `eventId` of `accountId`: delivers it unless it is our own. */
  remote(accountId: number, eventId: number): void {
    if (this.#own.delete(eventId)) return;
    if (![...this.#subscribers].some((s) => s.accountId === accountId)) return;
    const ids = this.#remote.get(accountId) ?? [];
    ids.push(eventId);
    this.#remote.set(accountId, ids);
    this.#remoteTimer ??= setTimeout(() => this.#readRemote(), REMOTE_MS);
  }

  async #readRemote(): Promise<void> {
    this.#remoteTimer = undefined;
    const wanted = this.#remote;
    this.#remote = new Map();
    for (const [accountId, ids] of wanted) {
      const fresh = ids.filter((id) => !this.#own.delete(id));
      if (fresh.length === 0) continue;
      try {
        const min = Math.min(...fresh);
        const set = new Set(fresh);
        const events = await this.#store.events.query({
          accountId,
          afterId: min - 1,
          limit: Math.min(Math.max(...fresh) - min + 1, MAX_READ),
        });
        for (const e of events) if (set.has(e.id) && !this.#own.delete(e.id)) this.#deliver(e);
      } catch (err) {
        log.warn("cannot read events of other relays", { error: err });
      }
    }
  }

  #delivered(event: EventRecord): void {
    this.#own.add(event.id);
    if (this.#own.size > MAX_OWN) this.#own.delete(this.#own.values().next().value!);
    this.#deliver(event);
  }

  #deliver(event: EventRecord): void {
    for (const s of this.#subscribers) {
      if (s.accountId !== event.accountId) continue;
      if (s.device !== undefined && s.device !== event.device) continue;
      if (s.types && s.types.length > 0 && !s.types.includes(event.type)) continue;
      s.push(event);
    }
  }

  /** Adds a subscriber; returns the function that removes it. */
  subscribe(s: Subscriber): () => void {
    this.#subscribers.add(s);
    return () => this.#subscribers.delete(s);
  }

  /** Ends the subscriptions made with any of these keys (they were revoked); returns how many. */
  endKeys(keyIds: ReadonlySet<string>, reason: string): number {
    let n = 0;
    for (const s of [...this.#subscribers]) {
      if (s.keyId === undefined || !keyIds.has(s.keyId)) continue;
      this.#subscribers.delete(s);
      s.end?.(reason);
      n++;
    }
    return n;
  }

  /** Whether a live subscriber (od events, a dashboard page) was opened with key `keyId`. */
  listensWith(keyId: string): boolean {
    for (const s of this.#subscribers) if (s.keyId === keyId) return true;
    return false;
  }

  /** Number of live subscribers. */
  get size(): number {
    return this.#subscribers.size;
  }

  /** Stops the timers (the relay is stopping); call flush() first to write what is queued. */
  close(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#remoteTimer);
  }
}
