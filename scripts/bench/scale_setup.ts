/**
 * The pieces of the fleet benchmark (scale.ts): a relay store with N devices enrolled ahead of
 * time, a relay with metrics and 127.0.0.1 as trusted proxy, groups of load processes
 * (fleet_load.ts) holding the links, and reading the relay's metrics listener.
 */
import { openStore } from "../../src/store/open.ts";
import { hashSecret } from "../../src/store/hash.ts";
import { generateCredential } from "../../src/protocol/keys.ts";
import type { NewAccount, Store } from "../../src/store/types.ts";
import type { Relay, TestCa } from "../../tests/_fleet.ts";
import { startRelay } from "../../tests/_fleet.ts";
import type { Proc } from "../../tests/_harness.ts";
import { helper, Reports, stopTree, tell } from "./util.ts";

/** Links per load process: well under its 20,000 descriptors, and spreads the client work. */
export const PER_PROCESS = 4_000;
/** Devices per value of the `site` property, so `od list site=sN` has this many matches. */
export const SITE_MATCHES = 10;

/** A data directory with one account and `count` enrolled devices. */
export interface FleetStore {
  dataDir: string;
  keys: NewAccount;
  /** File with one device credential per line. */
  credsFile: string;
  count: number;
}

/**
 * Enrols `count` devices (`load-00000`…) in a new store in `dir`, each with `site=sK` so that
 * SITE_MATCHES devices share a site, and writes their credentials to a file. `open` opens the
 * store `dir/data` stands for (its SQLite file unless given).
 */
export async function prepareStore(
  dir: string,
  count: number,
  open: (dataDir: string) => Promise<Store> = (dataDir) => openStore({ dataDir }),
): Promise<FleetStore> {
  const dataDir = `${dir}/data`;
  await using store = await open(dataDir);
  const keys = await store.accounts.create("bench");
  const accountId = (await store.accounts.find("bench"))!;
  const creds: string[] = [];
  const at = Date.now();
  await store.tx(async (t) => {
    for (let i = 0; i < count; i++) {
      const credential = generateCredential();
      const { device } = await t.devices.enroll({
        accountId,
        name: `load-${String(i).padStart(5, "0")}`,
        credentialHash: hashSecret(credential),
        enrolledBy: "bench",
      });
      const site = `s${Math.floor(i / SITE_MATCHES)}`;
      await t.props.apply(device.rowid, [{ k: "site", v: site, at }]);
      creds.push(credential);
    }
  });
  const credsFile = `${dir}/creds.txt`;
  Deno.writeTextFileSync(credsFile, creds.join("\n") + "\n");
  return { dataDir, keys, credsFile, count };
}

/** A relay with its metrics listener. */
export interface MeteredRelay extends Relay {
  metricsUrl: string;
}

/** Starts `od serve` with --metrics and 127.0.0.1 as trusted proxy (the load's X-Forwarded-For). */
export async function startMeteredRelay(
  dataDir: string,
  options: { tls?: TestCa; port?: number; extraArgs?: string[] } = {},
): Promise<MeteredRelay> {
  const relay = await startRelay(dataDir, {
    ...options,
    extraArgs: [
      "--trusted-proxy",
      "127.0.0.1",
      "--metrics",
      "127.0.0.1:0",
      ...(options.extraArgs ?? []),
    ],
  });
  const m = await relay.proc.waitFor(/metrics listening url=(\S+)/);
  return Object.assign(relay, { metricsUrl: m[1] });
}

/** The value of an unlabelled sample on the relay's metrics listener. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  if (!line) throw new Error(`no ${name} in the metrics`);
  return Number(line.slice(name.length + 1));
}

/** Load processes holding `count` links, started and waiting for `go`. */
export interface Load extends AsyncDisposable {
  procs: Proc[];
  /** Starts every link; resolves with the slowest process's time until all were up. */
  go(timeoutMs: number): Promise<number>;
  /** Each process's counters (see fleet_load.ts); `reset` first zeroes the longest outage. */
  stats(reset?: boolean): Promise<LoadStats[]>;
}

/** A load process's counters. */
export interface LoadStats {
  online: number;
  connects: number;
  refused: number;
  /** Longest time a device was without a link since the last reset. */
  maxOfflineMs: number;
}

/** Starts load processes for `count` links of `mode` to `url`; resolves once they have loaded. */
export async function startLoad(
  mode: "od" | "plain",
  url: string,
  credsFile: string,
  count: number,
  caFile?: string,
): Promise<Load> {
  const procs: Proc[] = [];
  const reports: Reports[] = [];
  const stop = async () => {
    for (const p of procs) await stopTree(p);
  };
  try {
    for (let from = 0; from < count; from += PER_PROCESS) {
      const to = Math.min(count, from + PER_PROCESS);
      const args = [mode, url, credsFile, String(from), String(to), ...(caFile ? [caFile] : [])];
      const proc = helper(`load ${from}-${to}`, "fleet_load.ts", args, { stdin: true });
      procs.push(proc);
      reports.push(new Reports(proc));
    }
    for (const r of reports) await r.next(60_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    procs,
    async go(timeoutMs: number) {
      for (const p of procs) await tell(p, "go");
      const ready = await Promise.all(
        reports.map((r) => r.next<{ ready: number; ms: number }>(timeoutMs)),
      );
      return Math.max(...ready.map((r) => r.ms));
    },
    async stats(reset = false) {
      for (const p of procs) await tell(p, reset ? "reset\nstats" : "stats");
      return await Promise.all(reports.map((r) => r.next<LoadStats>(10_000)));
    },
    [Symbol.asyncDispose]: stop,
  };
}

/** Polls `check` every `ms` until it is true or `timeoutMs` passes (then throws `what`). */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  ms = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}
