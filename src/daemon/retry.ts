/**
 * How long a daemon waits before its next attempt to reach the relay. Two schedules, by what the
 * last failure says about where the trouble is:
 *
 * - Silent (no route, no DNS, no answer to the first packets, a link found dead by keepalive,
 *   the proxy refusing connections): most likely this device's own network or its way out is
 *   down, and an attempt costs nobody else anything.
 *   Retried at most FAST_MAX_MS apart, so a device is back within seconds of its network
 *   returning: an attempt gives up after 10 s (dial.ts), a SYN sent into the outage is resent by
 *   the kernel at 1, 3 and 7 s, so the worst case is the 3 s after the last resend plus one wait.
 * - Answered (refused, a proxy's 407 or 503, the relay's refusal or its closing the link): the
 *   relay or proxy is there and said no, so attempts back off to SLOW_MAX_MS, and never sooner
 *   than a Retry-After asks. Admission control on the relay spreads a fleet's return.
 */

/** First retry delay. */
export const BACKOFF_MIN_MS = 500;
/** Longest delay after an answered failure. */
export const SLOW_MAX_MS = 30_000;
/** Longest delay after a silent failure: worst case 3 s + 5 s + a handshake, under 10 s. */
export const FAST_MAX_MS = 5_000;

/**
 * Equal jitter: half the exponential delay, plus a random part of the other half; from the very
 * first retry, so a fleet that lost its relay at one instant does not come back at one instant.
 */
export function backoff(attempt: number, cap = SLOW_MAX_MS): number {
  const top = Math.min(cap, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return top / 2 + Math.random() * (top / 2);
}

/**
 * The wait a relay's Retry-After asks for, plus up to a second at random: Retry-After counts
 * whole seconds, and daemons told the same number should not all return in the same instant
 * (the relay's admission control spreads them by the second; this spreads them within it).
 */
export function retryAfterMs(seconds: number | null): number {
  return seconds ? seconds * 1000 + Math.random() * 1000 : 0;
}

/** The wait before attempt number `attempt` after a failure that was `silent` or not. */
export function retryDelay(attempt: number, silent: boolean, retryAfter: number | null): number {
  return Math.max(backoff(attempt, silent ? FAST_MAX_MS : SLOW_MAX_MS), retryAfterMs(retryAfter));
}
