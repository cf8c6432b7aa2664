/**
 * A device's state directory, read by the daemon and by `od props` on the device: `state.json`
 * (mode 0600) holds the relay URL, the device's own credential and its id once enrolled, plus
 * the options later runs reuse, so that after the first run `od daemon --state DIR` is enough.
 *
 * Writes are atomic and durable: a temporary file is written and fsynced, renamed over the old
 * one, and the directory fsynced, so a daemon killed or losing power at any moment leaves either
 * the old state or the new one, never a torn file.
 */
import { OdError } from "../shared/errors.ts";
import { writeAtomic } from "./files.ts";

/** What the state file holds. */
export interface DaemonState {
  /** Relay base URL. */
  relay: string;
  /** PEM of a private CA for the relay, if any. */
  ca?: string;
  /** A proxy given with --proxy (URL, or `none` for direct); unset: the environment's. */
  proxy?: string;
  /** This device's secret; generated locally before enrolling. */
  credential: string;
  /** Set once the relay has confirmed enrolment. */
  device?: string;
  account?: string;
  /** Only until enrolled: the account's device key and the id asked for. */
  enrollKey?: string;
  requestedId?: string;
  /** While re-enrolling a copied state: the original's credential, proof of where it came from. */
  cloneFrom?: string;
  /** Relay clock minus local clock (ms) at the last connection; corrects property times. */
  clockOffset?: number;
  /** Services and host key files from the last run that named them. */
  services?: Record<string, string>;
  hostKeyFiles?: string[];
}

const FILE = "state.json";

/** The state directory to use when none is given. */
export function defaultStateDir(): string {
  const env = Deno.env.get("OD_STATE_DIR");
  if (env) return env;
  if (Deno.uid?.() === 0) return "/var/lib/od";
  const xdg = Deno.env.get("XDG_STATE_HOME") ?? `${Deno.env.get("HOME") ?? "."}/.local/state`;
  return `${xdg}/od`;
}

/** Reads the state, or null if the directory holds none yet. */
export function loadState(dir: string): DaemonState | null {
  const path = `${dir}/${FILE}`;
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new OdError(
        `permissions ${(info.mode & 0o777).toString(8)} of ${path} are too open; ` +
          `it holds the device credential: run chmod 600 ${path}`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    if (err instanceof OdError) throw err;
    throw new OdError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let state: DaemonState;
  try {
    state = JSON.parse(text);
  } catch {
    throw new OdError(`${path} is not valid JSON; restore it or move it away to enrol again`);
  }
  if (typeof state.relay !== "string" || typeof state.credential !== "string") {
    throw new OdError(`${path} lacks the relay or credential; restore it or move it away`);
  }
  return state;
}

/** Writes the state atomically and durably with mode 0600. */
export function saveState(dir: string, state: DaemonState): void {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeAtomic(`${dir}/${FILE}`, JSON.stringify(state, null, 2) + "\n");
  } catch (err) {
    throw new OdError(`cannot write state in ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
