/**
 * Admission control for device links: after a relay restart every daemon of the fleet comes
 * back at once, and admitting them all together would starve everything else. A token bucket
 * admits `perSecond` new links (after a burst); a link that finds no token waits in a short
 * queue (at most `maxWaitMs`), and beyond that is answered 503 with a Retry-After drawn at
 * random from a window that grows with the returns already scheduled, so the daemons come
 * back spread out instead of all at once. Health checks and client requests never pass through
 * here, so they are served ahead of the queue.
 */
import { HttpError } from "./http.ts";
import { metrics } from "./relay_metrics.ts";

/** Options for Admission. */
export interface AdmissionOptions {
  /** Links admitted per second once the burst is spent (default 500: 10,000 in ~20 s). */
  perSecond?: number;
  /** Links admitted at once from idle (default: one second's worth). */
  burst?: number;
  /** Longest a link waits in the queue before it is told to come back later (default 1 s). */
  maxWaitMs?: number;
  /** Longest Retry-After, in seconds (default 120). */
  maxWindowS?: number;
  /** Clock in milliseconds for the tokens and the booked returns (default: the real ones;
   * tests drive it by hand so a slow machine sees the same calendar as a fast one). */
  clock?: () => number;
}

/** Share of each second's capacity given to scheduled returns; the rest is for new arrivals. */
const RETURN_SHARE = 0.8;

interface Waiter {
  resolve(): void;
}

/** A rate limit on new device links with a short queue and spread-out retries. */
export class Admission {
  readonly perSecond: number;
  #burst: number;
  #maxQueue: number;
  #maxWindow: number;
  #tokens: number;
  #at: number;
  #queue: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Returns scheduled per future second, as [second, count] in a ring indexed by second. */
  #slots: [number, number][];
  #tick: () => number;
  #wall: () => number;

  constructor(options: AdmissionOptions = {}) {
    this.perSecond = options.perSecond ?? 500;
    this.#burst = options.burst ?? this.perSecond;
    this.#maxQueue = Math.max(1, Math.floor(this.perSecond * (options.maxWaitMs ?? 1000) / 1000));
    this.#maxWindow = options.maxWindowS ?? 120;
    this.#tick = options.clock ?? (() => performance.now());
    this.#wall = options.clock ?? Date.now;
    this.#tokens = this.#burst;
    this.#at = this.#tick();
    this.#slots = Array.from({ length: this.#maxWindow + 1 }, () => [0, 0]);
  }

  /** Device links waiting for a token now. */
  get queueLength(): number {
    return this.#queue.length;
  }

  #refill(now = this.#tick()): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
  }

  /**
   * Resolves when the link may proceed; throws a 503 HttpError with Retry-After when the queue
   * is full.
   */
  admit(): Promise<void> {
    this.#refill();
    if (this.#queue.length === 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      return Promise.resolve();
    }
    if (this.#queue.length >= this.#maxQueue) {
      const wait = this.#scheduleReturn();
      metrics.throttled.inc("admission");
      return Promise.reject(
        new HttpError(503, `the relay is admitting devices gradually; retry in ${wait} s`, {
          "retry-after": String(wait),
        }),
      );
    }
    return new Promise<void>((resolve) => {
      this.#queue.push({ resolve });
      this.#pump();
    });
  }

  /** Releases queued links as tokens come in; one timer for the whole queue. */
  #pump(): void {
    if (this.#timer !== undefined) return;
    this.#refill();
    while (this.#queue.length > 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      this.#queue.shift()!.resolve();
    }
    if (this.#queue.length === 0) return;
    const ms = Math.max(1, ((1 - this.#tokens) / this.perSecond) * 1000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, ms);
  }

  /**
   * Picks a Retry-After in seconds and books it: a random second within a window long enough
   * for the returns already booked to fit under RETURN_SHARE of the rate, moved later while
   * that second is full, so returns fill the calendar in order and no second is overbooked.
   */
  #scheduleReturn(): number {
    const now = Math.floor(this.#wall() / 1000);
    const booked = (second: number) => {
      const slot = this.#slots[second % this.#slots.length];
      return slot[0] === second ? slot[1] : 0;
    };
    let pending = 0;
    for (let s = 1; s <= this.#maxWindow; s++) pending += booked(now + s);
    const capacity = Math.max(1, Math.floor(this.perSecond * RETURN_SHARE));
    const window = Math.min(this.#maxWindow, Math.max(1, Math.ceil((pending + 1) / capacity)));
    let wait = 1 + Math.floor(Math.random() * window);
    while (wait < this.#maxWindow && booked(now + wait) >= capacity) wait++;
    const slot = this.#slots[(now + wait) % this.#slots.length];
    if (slot[0] !== now + wait) slot.splice(0, 2, now + wait, 0);
    slot[1]++;
    return wait;
  }

  /** Lets every queued link through (the relay is stopping) and stops the timer. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#queue.splice(0)) w.resolve();
  }
}
