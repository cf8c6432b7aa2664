/** How long a daemon waits when the relay asks it to come back later. */

/**
 * The wait a relay's Retry-After asks for, plus up to a second at random: Retry-After counts
 * whole seconds, and daemons told the same number should not all return in the same instant
 * (the relay's admission control spreads them by the second; this spreads them within it).
 */
export function retryAfterMs(seconds: number | null): number {
  return seconds ? seconds * 1000 + Math.random() * 1000 : 0;
}
