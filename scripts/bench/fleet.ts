/**
 * The od processes a benchmark runs against: a relay (plain or TLS with the test CA), one
 * account, and one daemon exposing the services a benchmark names (the core figures' TCP sink
 * and echo, the ssh figures' sshd).
 */
import { type Proc, tempDir } from "../../tests/_harness.ts";
import {
  type AccountKeys,
  addAccount,
  clientEnv,
  type Relay,
  startDaemon,
  startRelay,
  type TestCa,
} from "../../tests/_fleet.ts";
import type { RelayTarget } from "../../src/transport/dial.ts";

/** Which transport the relay serves. */
export type Transport = "ws" | "wss";

/** The device id the bench's daemon enrols as. */
export const DEVICE = "bench";

/** A relay with one account, in a temporary directory removed on dispose. */
export interface BareRelay extends AsyncDisposable {
  relay: Relay;
  keys: AccountKeys;
  /** The temporary directory holding the relay's data and anything else of this setup. */
  dir: string;
}

/** A relay with one daemon connected; disposing stops both and removes their files. */
export interface Fleet extends BareRelay {
  transport: Transport;
  daemon: Proc;
  /** Environment for `od pipe` as a client of this relay. */
  env: Record<string, string>;
  /** The client key's target, for in-process `openTunnel`. */
  target: RelayTarget;
}

/** Starts a relay (TLS with the test CA for wss) and adds an account "bench". */
export async function startBareRelay(transport: Transport, ca: TestCa): Promise<BareRelay> {
  const dir = await tempDir("od-bench-relay-");
  let relay: Relay | undefined;
  try {
    relay = await startRelay(`${dir}/data`, { tls: transport === "wss" ? ca : undefined });
    const keys = await addAccount(relay.dataDir, "bench");
    const started = relay;
    return {
      relay,
      keys,
      dir,
      async [Symbol.asyncDispose]() {
        await started[Symbol.asyncDispose]();
        await dir[Symbol.asyncDispose]();
      },
    };
  } catch (err) {
    await relay?.[Symbol.asyncDispose]();
    await dir[Symbol.asyncDispose]();
    throw err;
  }
}

/** Starts a relay and a daemon exposing `services` (name to port on 127.0.0.1). */
export async function startFleet(
  transport: Transport,
  ca: TestCa,
  services: Record<string, number>,
  extraArgs: string[] = [],
): Promise<Fleet> {
  const bare = await startBareRelay(transport, ca);
  const { relay, keys, dir } = bare;
  try {
    const daemon = await startDaemon(relay, {
      key: keys.deviceKey,
      id: DEVICE,
      stateDir: `${dir}/state`,
      services,
      extraArgs,
    });
    return {
      ...bare,
      transport,
      daemon,
      env: clientEnv(relay, keys.clientKey, `${dir}/config`),
      target: {
        url: relay.url,
        secret: keys.clientKey,
        ca: relay.ca ? await Deno.readTextFile(relay.ca) : undefined,
      },
      async [Symbol.asyncDispose]() {
        await daemon[Symbol.asyncDispose]();
        await bare[Symbol.asyncDispose]();
      },
    };
  } catch (err) {
    await bare[Symbol.asyncDispose]();
    throw err;
  }
}
