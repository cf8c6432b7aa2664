/**
 * `od daemon`: enrols once, then keeps one outbound link to the relay for as long as it runs,
 * reconnecting with jittered exponential backoff and noticing a dead relay by keepalives.
 */
import { ProtocolError, WINDOWS_HEADER } from "../protocol/frame.ts";
import { encodeInfo, parseRelayMessage, type RelayMessage } from "../protocol/control.ts";
import { DEFAULT_KEEPALIVE_S, Keepalive } from "../transport/keepalive.ts";
import { generateCredential } from "../protocol/keys.ts";
import { dialLink, RelayError, type RelayTarget } from "../transport/dial.ts";
import { proxyFor, redactProxy } from "../transport/proxy.ts";
import { CloseCode } from "../transport/link.ts";
import { OdError } from "../shared/errors.ts";
import { log } from "../shared/log.ts";
import { VERSION } from "../version.ts";
import { type DaemonState, loadState, saveState } from "../store/device_state.ts";
import { DeviceLink } from "./device_link.ts";
import { DEFAULT_SERVICES, parseTarget, type ServiceTarget } from "./services.ts";
import { readHostKeys } from "./host_keys.ts";
import { machineFingerprint } from "./fingerprint.ts";
import { becomeClone, enrollDevice, type EnrollEnv } from "./enroll.ts";
import { LocalProps } from "../store/local_props.ts";
import { PropsSync } from "./props_sync.ts";
import { ensureSoleDaemon, serveLocalApi } from "./local_api.ts";
import { backoff, retryDelay } from "./retry.ts";
import { StatusBoard } from "./status.ts";
import { drain } from "./stop.ts";

/** Options for runDaemon; anything unset comes from the state directory. */
export interface DaemonOptions {
  stateDir: string;
  relay?: string;
  key?: string;
  id?: string;
  ca?: string;
  services?: Record<string, string>;
  hostKeyFiles?: string[];
  /**
   * Aborting stops the daemon gracefully: no new tunnels, open ones may finish for `grace`
   * seconds, then the link closes and runDaemon resolves.
   */
  signal?: AbortSignal;
  /** Aborting ends the grace period at once (a second SIGTERM). */
  kill?: AbortSignal;
  /** Seconds open tunnels may go on after `signal` aborts (default 10). */
  grace?: number;
  /** Seconds between keepalive pings; the relay is declared dead after 2.5 silent periods. */
  keepalive?: number;
  /** A proxy URL or `none`, stored for later runs; `env` forgets a stored one. */
  proxy?: string;
}

const STABLE_MS = 30_000; // a link that lived this long resets the backoff
const HOST_KEY_RECHECK_MS = 60_000; // rotating sshd keys is rare; a minute's delay is harmless

function sleeper(signal?: AbortSignal) {
  return (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
}

/** Everything one running daemon shares across its links. */
interface Runtime {
  state: DaemonState;
  services: Map<string, ServiceTarget>;
  props: LocalProps;
  env: EnrollEnv;
  options: DaemonOptions;
  sync: PropsSync | null;
  status: StatusBoard;
  /** The link's DeviceLink while connected. */
  device: DeviceLink | null;
  /** The keepalive period in use, in seconds. */
  keepaliveS: number;
}

/** Runs until the signal aborts. Throws OdError only for problems retrying cannot fix. */
export async function runDaemon(options: DaemonOptions): Promise<void> {
  await ensureSoleDaemon(options.stateDir);
  const state = loadOrCreateState(options);
  const sleep = sleeper(options.signal);
  const rt: Runtime = {
    state,
    services: new Map(),
    props: new LocalProps(options.stateDir),
    env: {
      stateDir: options.stateDir,
      fingerprint: await machineFingerprint(options.stateDir),
      backoff,
      sleep,
      signal: options.signal,
    },
    options,
    sync: null,
    status: null as unknown as StatusBoard,
    device: null,
    keepaliveS: options.keepalive ?? DEFAULT_KEEPALIVE_S,
  };
  rt.status = statusBoard(rt);
  // The local socket outlives the stop signal: `od status` says "stopping" during the grace.
  const served = new AbortController();
  serveLocalApi({
    stateDir: options.stateDir,
    props: rt.props,
    clockOffset: () => rt.state.clockOffset ?? 0,
    onEdit: () => rt.sync?.flush(),
    status: () => rt.status.snapshot(),
    signal: served.signal,
  });
  try {
    rt.env.onFailure = (message, waitMs) =>
      rt.status.set("backing-off", { reason: message, retryInMs: waitMs });
    if (state.cloneFrom || !state.device) rt.status.set("enrolling");
    if (state.cloneFrom) await becomeClone(state, rt.env);
    else if (!state.device) await enrollDevice(state, rt.env);
    rt.services = new Map(
      Object.entries(state.services!).map(([name, spec]) => [name, parseTarget(spec, name)]),
    );
    await connectLoop(rt);
  } finally {
    served.abort();
  }
}

/** Status facts drawn from the runtime. */
function statusBoard(rt: Runtime): StatusBoard {
  return new StatusBoard({
    relay: () => rt.state.relay,
    proxy: () => {
      const proxy = proxyFor(new URL(rt.state.relay), rt.state.proxy);
      return proxy && redactProxy(proxy);
    },
    device: () => ({ device: rt.state.device, account: rt.state.account }),
    services: () => ({ ...rt.state.services }),
    tunnels: () => rt.device?.streamCount ?? 0,
    keepalive: () => rt.keepaliveS,
  });
}

/** Connects, and reconnects after every failure or close, until the stop signal. */
async function connectLoop(rt: Runtime): Promise<void> {
  const { options } = rt;
  let attempt = 0;
  while (!options.signal?.aborted) {
    let wait: number;
    const started = Date.now();
    rt.status.set("connecting");
    try {
      const closed = await connectOnce(rt);
      if (options.signal?.aborted) break;
      attempt = Date.now() - started > STABLE_MS ? 0 : attempt + 1;
      // A link found dead by keepalive is a silent network: come back as soon as it is.
      wait = retryDelay(attempt, closed.code === CloseCode.TIMEOUT, null);
      const message = `the link to the relay closed: ${closed.reason || `code ${closed.code}`}`;
      rt.status.set("backing-off", { reason: message, retryInMs: wait });
    } catch (err) {
      if (err instanceof OdError) throw err;
      if (err instanceof RelayError && err.cloneOf) {
        await becomeClone(rt.state, rt.env);
        continue;
      }
      attempt++;
      const relayError = err instanceof RelayError ? err : null;
      wait = retryDelay(
        attempt,
        relayError?.failure?.silent ?? false,
        relayError?.retryAfter ?? null,
      );
      const message = err instanceof Error ? err.message : String(err);
      // The relay refusing this device's credential is no network trouble: say so apart.
      const refused = relayError !== null && [401, 403, 404, 409].includes(relayError.status);
      rt.status.set(refused ? "refused" : "backing-off", { reason: message, retryInMs: wait });
      log.warn("cannot connect to relay", {
        error: message,
        retryIn: `${(wait / 1000).toFixed(1)}s`,
      });
    }
    await rt.env.sleep(wait);
  }
}

/** Loads the state, or creates one for a first run; applies the options given now. */
export function loadOrCreateState(options: DaemonOptions): DaemonState {
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
  if (!state.device && !state.cloneFrom && options.key) {
    // Not enrolled yet (say the last key was mistyped and refused): the key given now counts.
    state.enrollKey = options.key;
    if (options.id) state.requestedId = options.id.toLowerCase();
  }
  if (options.relay) state.relay = options.relay;
  if (options.ca !== undefined) state.ca = options.ca;
  if (options.proxy === "env") delete state.proxy;
  else if (options.proxy !== undefined) state.proxy = options.proxy;
  if (options.services && Object.keys(options.services).length > 0) {
    state.services = options.services;
  }
  state.services ??= { ...DEFAULT_SERVICES };
  if (options.hostKeyFiles && options.hostKeyFiles.length > 0) {
    state.hostKeyFiles = options.hostKeyFiles;
  }
  // Saved before enrolling: the credential must be on disk before the relay learns it.
  saveState(options.stateDir, state);
  return state;
}

/**
 * Validates a message from the relay. One this daemon cannot use is logged and skipped, never
 * thrown: a throw would close the link, and the relay would send the same message again after
 * the reconnect, forever.
 */
function relayMessage(message: Record<string, unknown>): RelayMessage | null {
  try {
    return parseRelayMessage(message);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    log.warn("ignored a message from the relay", { error: err.message });
    return null;
  }
}

/** Handles CONTROL messages after hello: property sync and renames. */
function onControl(rt: Runtime, raw: Record<string, unknown>): void {
  const message = relayMessage(raw);
  if (message?.t === "props-ack") rt.sync?.ack(message);
  else if (message?.t === "props-state") rt.sync?.state(message);
  else if (message?.t === "renamed") {
    log.info("renamed by the relay", { from: rt.state.device, to: message.device });
    rt.state.device = message.device;
    saveState(rt.options.stateDir, rt.state);
  }
}

/** After hello: learn the relay's clock and send what was queued while offline. */
function onHello(rt: Runtime, raw: Record<string, unknown>): void {
  const hello = relayMessage(raw);
  if (hello?.t !== "hello") {
    rt.sync?.flush();
    return;
  }
  const offset = Math.round(hello.now - Date.now());
  if (Math.abs(offset - (rt.state.clockOffset ?? 0)) > 1000) {
    rt.state.clockOffset = offset;
    saveState(rt.options.stateDir, rt.state);
  }
  if (hello.device !== rt.state.device) {
    rt.state.device = hello.device; // renamed while this daemon was away
    saveState(rt.options.stateDir, rt.state);
  }
  log.info("connected to relay", {
    device: hello.device,
    account: hello.account,
    relay: rt.state.relay,
  });
  rt.sync?.flush();
}

/** One connection: resolves when the link closes, throws if it cannot be opened. */
async function connectOnce(rt: Runtime): Promise<{ code: number; reason: string }> {
  const { state, options } = rt;
  const target: RelayTarget = {
    url: state.relay,
    secret: state.credential,
    ca: state.ca,
    proxy: state.proxy,
    headers: { "x-od-fingerprint": rt.env.fingerprint, [WINDOWS_HEADER]: "1" },
  };
  const link = await dialLink(target, "/v1/device");
  if (options.signal?.aborted) { // stopped while dialling: nothing is open yet, nothing to drain
    link.close(CloseCode.GOING_AWAY, "the daemon is stopping");
    return { code: CloseCode.GOING_AWAY, reason: "the daemon is stopping" };
  }
  rt.sync = new PropsSync(link, rt.props);
  const device = new DeviceLink(link, rt.services, (m) => onControl(rt, m));
  rt.device = device;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    link.onClose = (code, reason) => resolve({ code, reason });
  });
  const stop = () =>
    drain(device, { graceS: rt.options.grace, kill: rt.options.kill, status: rt.status });
  options.signal?.addEventListener("abort", stop, { once: true });
  const timers = startTimers(rt, device);
  try {
    const hello = await Promise.race([device.hello, closed.then(() => null)]);
    if (hello) {
      // The relay closes links silent for 2.5 of its periods: never ping less often than that.
      const m = relayMessage(hello);
      if (m?.t === "hello" && m.keepalive !== undefined) {
        rt.keepaliveS = Math.min(rt.options.keepalive ?? m.keepalive, m.keepalive);
        timers.keepalive.setPeriod(rt.keepaliveS * 1000);
      }
      onHello(rt, hello);
      if (!options.signal?.aborted) rt.status.set("online");
    }
    const ended = await closed;
    if (!options.signal?.aborted) {
      log.warn("link to relay closed", { code: ended.code, reason: ended.reason || undefined });
    }
    return ended;
  } finally {
    clearInterval(timers.keyWatch);
    timers.keepalive.stop();
    options.signal?.removeEventListener("abort", stop);
    device.closeStreams();
    rt.sync = null;
    rt.device = null;
  }
}

/** Sends info now and on host key changes, and keepalive pings; returns the timers. */
function startTimers(rt: Runtime, device: DeviceLink) {
  const { link } = device;
  let hostKeys = readHostKeys(rt.state.hostKeyFiles);
  const sendInfo = () => {
    const { frame, dropped } = encodeInfo({
      version: VERSION,
      services: [...rt.services.keys()],
      hostKeys,
      hostname: Deno.hostname(),
    });
    if (dropped > 0) log.warn("host keys too large to report", { dropped });
    link.send(frame);
  };
  sendInfo();
  // sshd host keys can be rotated while the daemon runs; report changes so pins follow.
  const keyWatch = setInterval(() => {
    const now = readHostKeys(rt.state.hostKeyFiles);
    if (now.join("\n") !== hostKeys.join("\n")) {
      hostKeys = now;
      sendInfo();
    }
  }, HOST_KEY_RECHECK_MS);
  rt.keepaliveS = rt.options.keepalive ?? DEFAULT_KEEPALIVE_S;
  const keepalive = new Keepalive(
    link,
    rt.keepaliveS * 1000,
    () => device.lastFrameAt,
    (silentMs) => {
      log.warn("relay stopped answering; the link is dead, reconnecting", {
        silentFor: `${silentMs}ms`,
      });
      link.close(CloseCode.TIMEOUT, `nothing from the relay for ${Math.round(silentMs / 1000)} s`);
    },
  );
  return { keyWatch, keepalive };
}
