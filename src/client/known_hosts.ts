/**
 * The managed known_hosts file (`known_hosts` in the config directory) that od's ssh commands
 * check strictly. Each device's keys are pinned the first time a tunnel to its `ssh` service
 * reports them, under names that cover every way to address it (`acme.pi1.od`, `pi1.od`,
 * `acme.pi1`, `pi1`), the first being the stable alias used as HostKeyAlias. Pins never change
 * by themselves: a device that later reports other keys is refused by ssh until the user runs
 * `od known-hosts accept DEV`.
 *
 * Lines od writes end with the comment `od:ACCOUNT.DEVICE`; other lines are kept as they are.
 * Writers take a lock file and replace the file atomically, so parallel connections (Ansible
 * forks, scripts) never lose each other's pins.
 */
import { configDir } from "./config.ts";

/** The keys pinned for one device. */
export interface Pin {
  /** `account.device`. */
  device: string;
  names: string[];
  /** `type base64` each. */
  keys: string[];
}

/** The managed known_hosts path. */
export function knownHostsPath(): string {
  return `${configDir()}/known_hosts`;
}

/** The stable alias of a device: `account.device.od`. */
export function hostAlias(account: string, device: string): string {
  return `${account}.${device}.od`;
}

/** Every name a device may be looked up by, alias first. */
export function pinNames(account: string, device: string, typed: string): string[] {
  const names = [hostAlias(account, device), `${account}.${device}`];
  const bare = typed.replace(/\.od$/, "");
  names.push(`${bare}.od`, bare);
  return [...new Set(names)];
}

const MARK = " od:";

function readLines(path: string): string[] {
  try {
    return Deno.readTextFileSync(path).split("\n").filter((l) => l.trim() !== "");
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/** The pins in the file, by `account.device`. */
export function readPins(path = knownHostsPath()): Map<string, Pin> {
  const pins = new Map<string, Pin>();
  for (const line of readLines(path)) {
    const at = line.lastIndexOf(MARK);
    if (at < 0) continue;
    const device = line.slice(at + MARK.length).trim();
    const [names, type, data] = line.slice(0, at).trim().split(/\s+/);
    if (!names || !type || !data) continue;
    const pin = pins.get(device) ?? { device, names: [], keys: [] };
    for (const n of names.split(",")) if (!pin.names.includes(n)) pin.names.push(n);
    pin.keys.push(`${type} ${data}`);
    pins.set(device, pin);
  }
  return pins;
}

function formatPin(pin: Pin): string[] {
  return pin.keys.map((k) => `${pin.names.join(",")} ${k}${MARK}${pin.device}`);
}

/** Runs `change` on the pins under the lock and writes the result atomically. */
export async function updatePins<T>(
  change: (pins: Map<string, Pin>) => T,
  path = knownHostsPath(),
) {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true, mode: 0o700 });
  const release = await lock(`${path}.lock`);
  try {
    const others = readLines(path).filter((l) => !l.includes(MARK));
    const pins = readPins(path);
    const result = change(pins);
    const lines = [...others, ...[...pins.values()].flatMap(formatPin)];
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    Deno.writeTextFileSync(tmp, lines.join("\n") + (lines.length ? "\n" : ""), { mode: 0o600 });
    Deno.renameSync(tmp, path);
    return result;
  } finally {
    release();
  }
}

const LOCK_WAIT_MS = 5_000; // writers hold the lock for a millisecond; 5 s means it is stale
async function lock(path: string): Promise<() => void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (true) {
    try {
      Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
      return () => Deno.removeSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      if (Date.now() > deadline) {
        Deno.removeSync(path); // left behind by a killed writer
        continue;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** What pinning a device's reported keys did. */
export type PinResult = "pinned" | "unchanged" | "mismatch" | "no-keys";

/**
 * Pins `keys` for a device if it has no pin yet; otherwise only adds the names it was reached
 * by. Reports "mismatch" when none of the reported keys is among the pinned ones.
 */
export function pinDevice(
  account: string,
  device: string,
  typed: string,
  keys: string[],
  path = knownHostsPath(),
): Promise<PinResult> {
  return updatePins((pins) => {
    const id = `${account}.${device}`;
    const names = pinNames(account, device, typed);
    const pin = pins.get(id);
    if (!pin) {
      if (keys.length === 0) return "no-keys";
      pins.set(id, { device: id, names, keys: [...keys] });
      return "pinned";
    }
    for (const n of names) if (!pin.names.includes(n)) pin.names.push(n);
    if (keys.length > 0 && !keys.some((k) => pin.keys.includes(k))) return "mismatch";
    return "unchanged";
  }, path);
}
