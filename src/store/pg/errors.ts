/**
 * PostgreSQL's and the driver's errors as the store's: one sentence naming the server by its
 * URL without password (the driver's own messages name only host and port, and the server's
 * never echo a password). Unreachable servers become StoreUnavailable (a relay answers 503 and
 * retries later); unique violations become UniqueViolation (the queries retry or say "already
 * exists"); deadlocks and serialization failures are marked retryable.
 */
import { StoreError } from "../db.ts";
import { InvalidValue, StoreUnavailable } from "../types.ts";
import { UniqueViolation } from "../queries/executor.ts";
import type { Password } from "./url.ts";

/** A transient conflict between concurrent transactions; running it again may succeed. */
export class Retryable extends StoreError {
  override name = "Retryable";
}

const NETWORK: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOENT: "no server socket there",
  ECONNRESET: "connection reset",
  EPIPE: "connection reset",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "unknown host",
  EAI_AGAIN: "host name lookup failed",
  CONNECT_TIMEOUT: "connection timed out",
  CONNECTION_CLOSED: "the connection closed",
  CONNECTION_ENDED: "the connection was ended",
  CONNECTION_DESTROYED: "the connection was closed",
};

const SERVER_DOWN: Record<string, string> = {
  "57P01": "the server is shutting down",
  "57P02": "the server crashed",
  "57P03": "the server is starting up or shutting down",
  "53300": "the server has too many connections",
};

/** What the store says when the database did not answer in time. */
export function timeoutError(shown: string, ms: number): StoreUnavailable {
  return new StoreUnavailable(`PostgreSQL at ${shown} did not answer within ${ms / 1000} s`);
}

/**
 * The store's error for a driver or server error. `password` says where the password came
 * from, for a refused login; `user` is the role that tried.
 */
export function mapPgError(
  err: unknown,
  ctx: { shown: string; user: string; password: Password },
): unknown {
  // Only the driver's and the server's errors carry a string code; ours pass unchanged.
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof StoreError || !(err instanceof Error) || typeof code !== "string") return err;
  const where = `PostgreSQL at ${ctx.shown}`;
  if (code in NETWORK || /^08/.test(code)) {
    const why = NETWORK[code] ?? err.message;
    return new StoreUnavailable(`${where} is unreachable: ${why}`, { cause: err });
  }
  if (code in SERVER_DOWN) {
    return new StoreUnavailable(`${where} is unavailable: ${SERVER_DOWN[code]}`, { cause: err });
  }
  if (code === "28P01" || code === "28000") {
    const how = ctx.password.source === null
      ? "no password was given (put it in the URL, PGPASSWORD, PGPASSFILE or --store-password-file)"
      : `the password came from ${ctx.password.source}`;
    return new StoreError(`${where} refused the login of "${ctx.user}": ${err.message}; ${how}`, {
      cause: err,
    });
  }
  if (code === "3D000") return new StoreError(`${where}: ${err.message}`, { cause: err });
  if (code === "23505") return new UniqueViolation(err.message, { cause: err });
  if (code === "22021" || code === "22P05") {
    return new InvalidValue(`a value has a character the store cannot hold (${err.message})`, {
      cause: err,
    });
  }
  if (code === "40P01" || code === "40001") return new Retryable(err.message, { cause: err });
  if (code === "57014") {
    return new StoreUnavailable(`${where} cancelled a statement: ${err.message}`, { cause: err });
  }
  return new StoreError(`${where}: ${err.message}`, { cause: err });
}
