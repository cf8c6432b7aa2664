/**
 * Relay events: every state change, property change, clone, rename and removal is appended to
 * the store's event log and pushed to the subscribers of its account (`od events`).
 */
import type { Store } from "../store/store.ts";
import type { EventRecord } from "../store/events.ts";
import type { Event, EventType } from "../protocol/api.ts";

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

/** Appends events and fans them out. */
export class EventBus {
  #store: Store;
  #subscribers = new Set<Subscriber>();
  #queued: Omit<EventRecord, "id">[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records an event and delivers it to matching subscribers. */
  emit(accountId: number, device: string, type: string, data: Record<string, unknown> = {}) {
    this.flush(); // batched events came first, so they keep their place in the log
    const event = this.#store.events.append({ accountId, device, type, data, at: Date.now() });
    this.#deliver(event);
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

  /** Writes and delivers the batched events now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#queued.length === 0) return;
    const queued = this.#queued;
    this.#queued = [];
    for (const event of this.#store.events.appendMany(queued)) this.#deliver(event);
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

  /** Number of live subscribers. */
  get size(): number {
    return this.#subscribers.size;
  }
}
