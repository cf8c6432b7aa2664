/**
 * `od daemon`: enrols once, then keeps one outbound link to the relay for as long as it runs,
 * reconnecting with jittered exponential backoff and noticing a dead relay by keepalives.
 */
import { encodeControl, encodePing, FrameType } from "../protocol/frame.ts";
import { generateCredential } from "../protocol/keys.ts";
import { callApi, dialLink, RelayError, type RelayTarget } from "../transport/dial.ts";
import { CloseCode } from "../transport/link.ts";
import { OdError } from "../cli/errors.ts";
import { log } from "../cli/log.ts";
import { VERSION } from "../version.ts";
import { type DaemonState, loadState, saveState } from "./state.ts";
import { DeviceLink } from "./device_link.ts";
import { DEFAULT_SERVICES, parseTarget, type ServiceTarget } from "./services.ts";
import { readHostKeys } from "./host_keys.ts";

/** Options for runDaemon; anything unset comes from the state directory. */
export interface DaemonOptions {
  stateDir: string;
  relay?: string;
  key?: string;
  id?: string;
  ca?: string;
  services?: Record<string, string>;
  hostKeyFiles?: string[];
  signal?: AbortSignal;
  /** Seconds between keepalive pings; the relay is declared dead after three silent ones. */
  keepalive?: number;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const STABLE_MS = 30_000; // a link that lived this long resets the backoff
const HOST_KEY_RECHECK_MS = 60_000; // rotating sshd keys is rare; a minute's delay is harmless

/** Runs until the signal aborts. Throws OdError only for problems retrying cannot fix. */
export async function runDaemon(options: DaemonOptions): Promise<void> {
  const state = await prepareState(options);
  const services = new Map<string, ServiceTarget>(
    Object.entries(state.services!).map(([name, spec]) => [name, parseTarget(spec, name)]),
  );
  let attempt = 0;
  while (!options.signal?.aborted) {
    let wait: number;
    const started = Date.now();
    try {
      await connectOnce(state, services, options);
      attempt = Date.now() - started > STABLE_MS ? 0 : attempt + 1;
      wait = backoff(attempt);
    } catch (err) {
      if (err instanceof OdError) throw err;
      attempt++;
      wait = backoff(attempt);
      if (err instanceof RelayError && err.retryAfter) wait = Math.max(wait, err.retryAfter * 1000);
      log.warn("cannot connect to relay", {
        error: err instanceof Error ? err.message : String(err),
        retryIn: `${(wait / 1000).toFixed(1)}s`,
      });
    }
    await sleep(wait, options.signal);
  }
}

/** Equal jitter: half the exponential delay, plus a random part of the other half. */
function backoff(attempt: number): number {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return cap / 2 + Math.random() * (cap / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Loads or creates the state and makes sure the device is enrolled. */
async function prepareState(options: DaemonOptions): Promise<DaemonState> {
  let state = loadState(options.stateDir);
  if (state?.device && options.id && options.id.toLowerCase() !== state.device) {
    throw new OdError(
      `${options.stateDir} belongs to device "${state.device}"; --id ${options.id} conflicts ` +
        `(use another --state to enrol a second device)`,
      { exitCode: 2 },
    );
  }
  if (!state) {
    if (!options.relay || !options.key) {
      throw new OdError(
        `${options.stateDir} holds no enrolment yet: give --relay URL and --key DEVICE_KEY`,
        { exitCode: 2 },
      );
    }
    state = {
      relay: options.relay,
      credential: generateCredential(),
      enrollKey: options.key,
      requestedId: options.id?.toLowerCase(),
    };
  }
  if (options.relay) state.relay = options.relay;
  if (options.ca !== undefined) state.ca = options.ca;
  if (options.services && Object.keys(options.services).length > 0) {
    state.services = options.services;
  }
  state.services ??= { ...DEFAULT_SERVICES };
  if (options.hostKeyFiles && options.hostKeyFiles.length > 0) {
    state.hostKeyFiles = options.hostKeyFiles;
  }
  // Saved before enrolling: the credential must be on disk before the relay learns it.
  saveState(options.stateDir, state);
  if (!state.device) await enroll(options, state);
  return state;
}

async function enroll(options: DaemonOptions, state: DaemonState): Promise<void> {
  const target: RelayTarget = { url: state.relay, secret: state.enrollKey ?? "", ca: state.ca };
  let attempt = 0;
  while (!options.signal?.aborted) {
    try {
      const answer = await callApi(target, "POST", "/v1/enroll", {
        credential: state.credential,
        id: state.requestedId ?? null,
      }) as { device: string; account: string };
      state.device = answer.device;
      state.account = answer.account;
      delete state.enrollKey;
      delete state.requestedId;
      saveState(options.stateDir, state);
      log.info("enrolled", { device: answer.device, account: answer.account });
      return;
    } catch (err) {
      if (!(err instanceof RelayError)) throw err;
      if ([400, 401, 403, 409].includes(err.status)) {
        throw new OdError(`cannot enrol with relay ${state.relay}: ${err.message}`);
      }
      attempt++;
      const wait = Math.max(backoff(attempt), (err.retryAfter ?? 0) * 1000);
      log.warn("cannot enrol yet", { error: err.message, retryIn: `${(wait / 1000).toFixed(1)}s` });
      await sleep(wait, options.signal);
    }
  }
}

/** One connection: resolves when the link closes, throws if it cannot be opened. */
async function connectOnce(
  state: DaemonState,
  services: Map<string, ServiceTarget>,
  options: DaemonOptions,
): Promise<void> {
  const target: RelayTarget = { url: state.relay, secret: state.credential, ca: state.ca };
  const link = await dialLink(target, "/v1/device");
  const device = new DeviceLink(link, services);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    link.onClose = (code, reason) => resolve({ code, reason });
  });
  const abort = () => link.close(CloseCode.GOING_AWAY, "the daemon is stopping");
  options.signal?.addEventListener("abort", abort, { once: true });
  const keepaliveMs = (options.keepalive ?? 15) * 1000;
  const pinger = setInterval(() => {
    if (Date.now() - device.lastFrameAt > 3 * keepaliveMs) {
      log.warn("relay stopped answering; reconnecting", {
        silentFor: `${Date.now() - device.lastFrameAt}ms`,
      });
      link.close(CloseCode.TIMEOUT, "keepalive timeout");
      return;
    }
    link.send(encodePing(FrameType.PING, crypto.getRandomValues(new Uint8Array(8))));
  }, keepaliveMs);
  let hostKeys = readHostKeys(state.hostKeyFiles);
  const sendInfo = () =>
    link.send(encodeControl({
      t: "info",
      version: VERSION,
      services: [...services.keys()],
      hostKeys,
      hostname: Deno.hostname(),
    }));
  // sshd host keys can be rotated while the daemon runs; report changes so pins follow.
  const keyWatch = setInterval(() => {
    const now = readHostKeys(state.hostKeyFiles);
    if (now.join("\n") !== hostKeys.join("\n")) {
      hostKeys = now;
      sendInfo();
    }
  }, HOST_KEY_RECHECK_MS);
  try {
    sendInfo();
    const hello = await Promise.race([device.hello, closed.then(() => null)]);
    if (hello) {
      log.info("connected to relay", {
        device: hello.device,
        account: hello.account,
        relay: state.relay,
      });
    }
    const { code, reason } = await closed;
    if (!options.signal?.aborted) {
      log.warn("link to relay closed", { code, reason: reason || undefined });
    }
  } finally {
    clearInterval(pinger);
    clearInterval(keyWatch);
    options.signal?.removeEventListener("abort", abort);
    device.closeStreams();
  }
}
