/**
 * Why a connection to the relay could not be made, named by the hop that failed: the proxy
 * (when one is used) or the relay (directly, or behind the proxy). The message is the part of
 * a user's sentence after "cannot reach relay at URL: " and never holds a password.
 *
 * What this Deno reports, and how it is read (checked against real proxies in the tests):
 *   Deno.errors.ConnectionRefused  "Connection refused (os error 111)"        → refused
 *   Deno.errors.NetworkUnreachable "Network is unreachable (os error 101)"    → unreachable
 *   Error "failed to lookup address information: Name or service not known"  → dns
 *   Error "… (os error 113)" (no route to host), Deno.errors.ConnectionReset → unreachable, reset
 */

/** The hop a failure belongs to. */
export type Hop = "proxy" | "relay";

/** What went wrong, coarsely; the daemon's backoff and `od status` use it. */
export type FailureKind =
  | "dns" // the name could not be resolved
  | "refused" // the host answered with a reset: nothing listens there
  | "unreachable" // no route, network down
  | "timeout" // nothing answered in time
  | "closed" // the peer closed or reset the connection mid-handshake
  | "auth" // the proxy wants credentials or refused the ones given (407)
  | "denied" // the proxy refused the CONNECT for another reason (403, 502, 503 …)
  | "tls" // the TLS handshake failed
  | "protocol"; // the peer spoke something other than what was expected

/** A failure to connect, naming the hop and its address. */
export class DialError extends Error {
  override name = "DialError";
  constructor(
    /** Which hop failed. */
    readonly hop: Hop,
    readonly kind: FailureKind,
    /** `host:port` of that hop. */
    readonly address: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /**
   * True when nothing beyond this device answered: no route, no DNS, no answer to the first
   * packets. The daemon then retries soon, so it is back within seconds of its own network
   * returning; a relay or proxy that did answer (refused, 407, 503) gets the slower backoff.
   */
  silent = false;
  /** The proxy in the path (its URL without the password), or null for a direct attempt. */
  proxy: string | null = null;
}

/** The runtime's message without the trailing " (os error N)". */
export function errText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/ \(os error \d+\)$/, "");
}

/**
 * Reads an error thrown by Deno.connect (or a read or write on a fresh connection) into a
 * DialError for `hop` at `address`; `what` names the hop in the sentence ("the proxy
 * proxy.corp:3128", "relay.example.com:443").
 */
export function connectFailure(err: unknown, hop: Hop, address: string, what: string): DialError {
  const text = errText(err);
  const host = address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  let kind: FailureKind;
  let message: string;
  if (err instanceof Deno.errors.ConnectionRefused || /refused/i.test(text)) {
    kind = "refused";
    message = `${what} refused the connection (nothing listens there)`;
  } else if (/lookup address|name or service not known|name resolution|nodename|dns/i.test(text)) {
    kind = "dns";
    const why = text.replace(/^failed to lookup address information: /, "").toLowerCase();
    message = `DNS lookup of ${hop === "proxy" ? "the proxy's name " : ""}${host} failed (${why})`;
  } else if (
    err instanceof Deno.errors.NetworkUnreachable || /unreachable|no route/i.test(text)
  ) {
    kind = "unreachable";
    message = `${what} is unreachable from here (${text.toLowerCase()})`;
  } else if (err instanceof Deno.errors.ConnectionReset || /reset|broken pipe/i.test(text)) {
    kind = "closed";
    message = `${what} reset the connection`;
  } else if (err instanceof Deno.errors.TimedOut || /timed? ?out/i.test(text)) {
    kind = "timeout";
    message = `${what} did not answer`;
  } else {
    kind = "protocol";
    message = `connecting to ${what} failed: ${text}`;
  }
  const failure = new DialError(hop, kind, address, message, { cause: err });
  // A proxy that refuses connections is this device's way out being down, like its network:
  // retried soon, which costs only the proxy. A relay that refuses is retried slowly.
  failure.silent = kind === "dns" || kind === "unreachable" ||
    (hop === "proxy" && kind === "refused");
  return failure;
}
