/**
 * Client credentials: `od login` writes `config.json` (mode 0600) in the config directory;
 * OD_RELAY, OD_KEY, OD_CA and OD_PROXY override what it holds. Like ssh with its private keys, od refuses a
 * credential file that other users can read.
 */
import { OdError, UsageError } from "../shared/errors.ts";
import { secretKind } from "../protocol/keys.ts";
import { normalizeRelayUrl, readCa } from "../cli/relay_options.ts";

import type { RelayTarget } from "../transport/dial.ts";
import { NO_PROXY_SETTING, parseProxyUrl } from "../transport/proxy.ts";

/** What the client needs to reach the relay. */
export interface ClientConfig {
  relay: string;
  key: string;
  /** PEM of a private CA, if the relay's certificate is not publicly trusted. */
  ca?: string;
  /** A proxy URL or `none`; unset: HTTPS_PROXY/HTTP_PROXY and NO_PROXY decide. */
  proxy?: string;
}

/** `$OD_CONFIG_DIR`, else `$XDG_CONFIG_HOME/od`, else `~/.config/od`. */
export function configDir(): string {
  const explicit = Deno.env.get("OD_CONFIG_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CONFIG_HOME");
  if (xdg) return `${xdg}/od`;
  return `${Deno.env.get("HOME") ?? "."}/.config/od`;
}

/** Reads a file that holds a secret, refusing it if group or others can read it. */
export function readPrivateFile(path: string): string | null {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw new OdError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new OdError(
      `permissions ${(info.mode & 0o777).toString(8)} of ${path} are too open; ` +
        `it holds a key: run chmod 600 ${path}`,
    );
  }
  return Deno.readTextFileSync(path);
}

/** The stored config merged with OD_* overrides; throws if there is no relay or key. */
export function loadClientConfig(): ClientConfig {
  const path = `${configDir()}/config.json`;
  const text = readPrivateFile(path);
  let stored: Partial<ClientConfig> = {};
  if (text !== null) {
    try {
      stored = JSON.parse(text);
    } catch {
      throw new OdError(`${path} is not valid JSON; run od login again`);
    }
  }
  const relay = Deno.env.get("OD_RELAY") ?? stored.relay;
  const key = Deno.env.get("OD_KEY") ?? stored.key;
  const caFile = Deno.env.get("OD_CA");
  if (!relay || !key) {
    throw new OdError(
      "not logged in: run od login --relay URL --key KEY (or set OD_RELAY and OD_KEY)",
    );
  }
  if (secretKind(key) === null) {
    throw new OdError("the key is not an od key (it should start with od_client_ or od_full_)");
  }
  const proxy = checkProxy(Deno.env.get("OD_PROXY") || stored.proxy);
  return {
    relay: normalizeRelayUrl(relay),
    key,
    ca: caFile ? readCa(caFile) : stored.ca,
    ...(proxy ? { proxy } : {}),
  };
}

/** Writes the config atomically with mode 0600. */
export function saveClientConfig(config: ClientConfig): string {
  const dir = configDir();
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = `${dir}/config.json`;
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  Deno.chmodSync(tmp, 0o600);
  Deno.renameSync(tmp, path);
  return path;
}

/** The relay target for an account key. */
export function clientTarget(config: ClientConfig): RelayTarget {
  return { url: config.relay, secret: config.key, ca: config.ca, proxy: config.proxy };
}

/** Checks a client's proxy setting (a URL or `none`); a bad one is a usage error. */
export function checkProxy(value: string | undefined): string | undefined {
  if (value === undefined || value === NO_PROXY_SETTING || parseProxyUrl(value)) return value;
  throw new UsageError(
    `proxy "${
      value.replace(/\/\/[^@/]*@/, "//…@")
    }" must be http://[USER:PASSWORD@]HOST:PORT or none`,
  );
}
