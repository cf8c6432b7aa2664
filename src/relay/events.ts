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
}

/** The public JSON form of an event. */
export function eventView(e: EventRecord): Event {
  const at = new Date(e.at).toISOString();
  return { id: e.id, at, device: e.device, type: e.type as EventType, ...e.data };
}

/** Appends events and fans them out. */
export class EventBus {
  #store: Store;
  #subscribers = new Set<Subscriber>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records an event and delivers it to matching subscribers. */
  emit(accountId: number, device: string, type: string, data: Record<string, unknown> = {}) {
    const event = this.#store.events.append({ accountId, device, type, data, at: Date.now() });
    for (const s of this.#subscribers) {
      if (s.accountId !== accountId) continue;
      if (s.device !== undefined && s.device !== device) continue;
      if (s.types && s.types.length > 0 && !s.types.includes(type)) continue;
      s.push(event);
    }
    return event;
  }

  /** Adds a subscriber; returns the function that removes it. */
  subscribe(s: Subscriber): () => void {
    this.#subscribers.add(s);
    return () => this.#subscribers.delete(s);
  }

  /** Number of live subscribers. */
  get size(): number {
    return this.#subscribers.size;
  }
}
