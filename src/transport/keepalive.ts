/**
 * Keepalive for the links of daemons and clients: a PING every period, and the link declared
 * dead once nothing at all has arrived for DEAD_AFTER periods. The relay applies the same bound
 * to the links it holds (it answers every PING, and any frame counts as a sign of life), so a
 * silent network is noticed from both ends within 2.5 periods: 37.5 s with the default 15 s.
 */
import { encodePing, FrameType } from "../protocol/frame.ts";
import type { FrameLink } from "./link.ts";

/** Default seconds between keepalive pings. */
export const DEFAULT_KEEPALIVE_S = 15;
/** Periods of silence after which a link is dead: two missed answers, and half a period. */
export const DEAD_AFTER = 2.5;

/** Pings a link and reports it dead when it falls silent. */
export class Keepalive {
  #link: FrameLink;
  #periodMs: number;
  #lastHeard: () => number;
  #onDead: (silentMs: number) => void;
  #lastPing = Date.now();
  #timer: ReturnType<typeof setInterval>;

  /**
   * `lastHeard` returns when the peer last sent anything (Date.now() time); `onDead` runs once,
   * with how long it was silent, and the caller closes the link.
   */
  constructor(
    link: FrameLink,
    periodMs: number,
    lastHeard: () => number,
    onDead: (silentMs: number) => void,
  ) {
    this.#link = link;
    this.#periodMs = periodMs;
    this.#lastHeard = lastHeard;
    this.#onDead = onDead;
    this.#timer = setInterval(() => this.#tick(), this.#tickMs());
  }

  /** Changes the period, e.g. to the one the relay announced. */
  setPeriod(periodMs: number): void {
    if (periodMs === this.#periodMs) return;
    this.#periodMs = periodMs;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#tick(), this.#tickMs());
  }

  /** Stops pinging. */
  stop(): void {
    clearInterval(this.#timer);
  }

  // Checked several times a period, so a dead link is found close to the bound, not a period late.
  #tickMs(): number {
    return Math.max(100, Math.min(1000, this.#periodMs / 4));
  }

  #tick(): void {
    if (!this.#link.open) return this.stop();
    const now = Date.now();
    const silent = now - this.#lastHeard();
    if (silent > DEAD_AFTER * this.#periodMs) {
      this.stop();
      this.#onDead(silent);
      return;
    }
    if (now - this.#lastPing >= this.#periodMs) {
      this.#lastPing = now;
      this.#link.send(encodePing(FrameType.PING, crypto.getRandomValues(new Uint8Array(8))));
    }
  }
}
