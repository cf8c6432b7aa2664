/**
 * Getting the daemon an identity: first enrolment with the account's device key, and
 * re-enrolment as a clone when the relay says this state was copied from another machine.
 *
 * Both follow the same rule: the new credential is written to the state directory (atomically,
 * fsynced) before the relay learns it, and the relay's answer is idempotent on that credential.
 * So a daemon killed or losing power at any step comes back, asks again, and gets the same
 * device: it is never enrolled twice, and a restart is never mistaken for a clone.
 */
import { generateCredential } from "../protocol/keys.ts";
import { callApi, RelayError, type RelayTarget } from "../transport/dial.ts";
import { OdError } from "../shared/errors.ts";
import { log } from "../shared/log.ts";
import { type DaemonState, saveState } from "../store/device_state.ts";
import { FAST_MAX_MS, retryAfterMs } from "./retry.ts";

/** Retries `fn` on transient relay errors with backoff; other errors end the daemon. */
async function withRetries<T>(
  what: string,
  fn: () => Promise<T>,
  env: EnrollEnv,
): Promise<T | null> {
  for (let attempt = 1; !env.signal?.aborted; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (
        !(err instanceof RelayError) || [400, 401, 403].includes(err.status) ||
        (err.status === 409 && !err.cloneOf)
      ) {
        throw err instanceof RelayError ? new OdError(`cannot ${what}: ${err.message}`) : err;
      }
      if (err.cloneOf) throw err; // the caller switches to the clone flow
      // A silent network is retried soon, as for the link (retry.ts).
      const delay = err.failure?.silent
        ? Math.min(env.backoff(attempt), FAST_MAX_MS)
        : env.backoff(attempt);
      const wait = Math.max(delay, retryAfterMs(err.retryAfter));
      env.onFailure?.(`cannot ${what}: ${err.message}`, wait);
      log.warn(`cannot ${what} yet`, {
        error: err.message,
        retryIn: `${(wait / 1000).toFixed(1)}s`,
      });
      await env.sleep(wait);
    }
  }
  return null;
}

/** Helpers the enrolment needs from the daemon loop. */
export interface EnrollEnv {
  stateDir: string;
  fingerprint: string;
  backoff: (attempt: number) => number;
  sleep: (ms: number) => Promise<void>;
  signal?: AbortSignal;
  /** Told of each failure that will be retried, and how long until the retry. */
  onFailure?: (message: string, waitMs: number) => void;
}

/** Enrols a state that has a credential but no device yet. */
export async function enrollDevice(state: DaemonState, env: EnrollEnv): Promise<void> {
  const target: RelayTarget = {
    url: state.relay,
    secret: state.enrollKey ?? "",
    ca: state.ca,
    proxy: state.proxy,
  };
  try {
    const answer = await withRetries(
      `enrol with relay ${state.relay}`,
      () =>
        callApi(target, "POST", "/v1/enroll", {
          credential: state.credential,
          id: state.requestedId ?? null,
          fingerprint: env.fingerprint,
        }) as Promise<{ device: string; account: string }>,
      env,
    );
    if (!answer) return;
    adopt(state, answer, env);
    log.info("enrolled", { device: answer.device, account: answer.account });
  } catch (err) {
    // Copied while its original was still enrolling: the original owns the credential.
    if (err instanceof RelayError && err.cloneOf) return await becomeClone(state, env);
    throw err;
  }
}

/**
 * Turns a copied state into a new device: a fresh credential is saved first (with the old one
 * kept as proof of origin), then the relay enrols it as a child of the original.
 */
export async function becomeClone(state: DaemonState, env: EnrollEnv): Promise<void> {
  if (!state.cloneFrom) {
    log.warn("this state was copied from another machine; enrolling as a new device", {
      original: state.device,
    });
    state.cloneFrom = state.credential;
    state.credential = generateCredential();
    delete state.device;
    saveState(env.stateDir, state);
  }
  const target: RelayTarget = {
    url: state.relay,
    secret: state.cloneFrom,
    ca: state.ca,
    proxy: state.proxy,
  };
  const answer = await withRetries(
    "enrol this copy as a new device",
    () =>
      callApi(target, "POST", "/v1/clone", {
        credential: state.credential,
        fingerprint: env.fingerprint,
      }) as Promise<{ device: string; account: string; parent: string }>,
    env,
  );
  if (!answer) return;
  adopt(state, answer, env);
  log.info("enrolled as a clone", { device: answer.device, parent: answer.parent });
}

/** Records the identity the relay confirmed and drops what was only needed to obtain it. */
function adopt(state: DaemonState, answer: { device: string; account: string }, env: EnrollEnv) {
  state.device = answer.device;
  state.account = answer.account;
  delete state.cloneFrom;
  delete state.enrollKey;
  delete state.requestedId;
  saveState(env.stateDir, state);
}
