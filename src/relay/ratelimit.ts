/**
 * Throttles failed authentication per source address with a token bucket: a burst of
 * `burst` failures is allowed, then one more per `refillMs`. While an address is out of tokens
 * every authenticated request from it gets HTTP 429 with Retry-After, so guessing keys costs
 * time, while other addresses are untouched.
 */

/** Options for FailureLimiter. */
export interface LimiterOptions {
  burst?: number;
  refillMs?: number;
  /** Most addresses tracked at once; the least recently failed are forgotten first. */
  maxAddresses?: number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

/** Per-address failure budget. */
export class FailureLimiter {
  #burst: number;
  #refillMs: number;
  #max: number;
  #buckets = new Map<string, Bucket>();

  constructor({ burst = 20, refillMs = 1000, maxAddresses = 100_000 }: LimiterOptions = {}) {
    this.#burst = burst;
    this.#refillMs = refillMs;
    this.#max = maxAddresses;
  }

  #bucket(addr: string, now: number): Bucket | undefined {
    const b = this.#buckets.get(addr);
    if (!b) return undefined;
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.updated) / this.#refillMs);
    b.updated = now;
    if (b.tokens >= this.#burst) {
      this.#buckets.delete(addr);
      return undefined;
    }
    return b;
  }

  /** Seconds the address must wait before trying again, or 0 if it may try now. */
  retryAfter(addr: string, now = Date.now()): number {
    const b = this.#bucket(addr, now);
    if (!b || b.tokens >= 1) return 0;
    return Math.max(1, Math.ceil(((1 - b.tokens) * this.#refillMs) / 1000));
  }

  /** Records one failed attempt from the address. */
  fail(addr: string, now = Date.now()): void {
    let b = this.#bucket(addr, now);
    if (!b) {
      if (this.#buckets.size >= this.#max) {
        this.#buckets.delete(this.#buckets.keys().next().value!); // oldest inserted
      }
      b = { tokens: this.#burst, updated: now };
    } else {
      this.#buckets.delete(addr); // re-insert to keep the map ordered by last failure
    }
    b.tokens -= 1;
    this.#buckets.set(addr, b);
  }
}

/**
 * A request budget per source address: `burst` requests at once, then `perSecond`. Generous for
 * people, scripts and whole sites of devices behind one NAT reconnecting after a relay restart;
 * it stops one address from monopolising the relay.
 */
export class RequestLimiter {
  #burst: number;
  #perSecond: number;
  #max: number;
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor({ burst = 500, perSecond = 200, maxAddresses = 100_000 } = {}) {
    this.#burst = burst;
    this.#perSecond = perSecond;
    this.#max = maxAddresses;
  }

  /** Takes one request from the address's budget; returns seconds to wait, or 0 if allowed. */
  take(addr: string, now = Date.now()): number {
    let b = this.#buckets.get(addr);
    if (!b) {
      if (this.#buckets.size >= this.#max) this.#buckets.delete(this.#buckets.keys().next().value!);
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(addr, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#perSecond);
    b.at = now;
    if (b.tokens < 1) return Math.max(1, Math.ceil((1 - b.tokens) / this.#perSecond));
    b.tokens -= 1;
    return 0;
  }
}
