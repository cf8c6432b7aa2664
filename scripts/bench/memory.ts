/**
 * Memory per idle device: the relay's resident memory with no device connected and with COUNT
 * devices connected from one load process, next to a plain Deno WebSocket server holding as
 * many idle WebSockets from the same kind of load process.
 */
import type { TestCa } from "../../tests/_fleet.ts";
import { callApi } from "../../src/transport/dial.ts";
import { startBareRelay, type Transport } from "./fleet.ts";
import { helper, progress, Reports, rssKiB, tell } from "./util.ts";

const ENROL_TIMEOUT_MS = 120_000; // 1,000 durable SQLite commits take ~10 s on a slow disk
const CONNECT_TIMEOUT_MS = 60_000; // 1,000 handshakes take a few seconds on loopback
const SETTLE_MS = 1_000; // lets both servers finish the work connections left behind

/** Resident memory before and after the load, and the difference per connection in KiB. */
export interface Held {
  /** Before the load process started (before any enrolment). */
  freshKiB: number;
  /** With no link connected, after enrolment. */
  baseKiB: number;
  loadedKiB: number;
  perConnKiB: number;
}

const CHECK_TRIES = 25; // 25 × 200 ms: info messages are processed in well under a second
const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS));

/** Runs a load process against a server process and measures the server's RSS around it. */
async function hold(
  serverPid: number,
  loadArgs: string[],
  count: number,
  check: (online: number) => Promise<void>,
): Promise<Held> {
  const freshKiB = rssKiB(serverPid);
  await using load = helper("device_load", "device_load.ts", loadArgs, { stdin: true });
  const reports = new Reports(load);
  await reports.next(ENROL_TIMEOUT_MS);
  await check(0); // also before, so both samples follow the same request
  await settle();
  const baseKiB = rssKiB(serverPid);
  await tell(load, "go");
  const ready = await reports.next<{ ready: number; ms: number }>(CONNECT_TIMEOUT_MS);
  if (ready.ready !== count) throw new Error(`only ${ready.ready}/${count} links came up`);
  progress(`${count} links up in ${Math.round(ready.ms)} ms`);
  // The last devices' info messages may still be on their way: check again for a few seconds.
  for (let attempt = 1;; attempt++) {
    try {
      await check(count);
      break;
    } catch (err) {
      if (attempt >= CHECK_TRIES) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await settle();
  const loadedKiB = rssKiB(serverPid);
  return { freshKiB, baseKiB, loadedKiB, perConnKiB: (loadedKiB - baseKiB) / count };
}

/** The relay's memory per connected idle device. */
export async function relayPerDevice(t: Transport, ca: TestCa, count: number): Promise<Held> {
  await using bare = await startBareRelay(t, ca);
  const { relay, keys } = bare;
  const target = {
    url: relay.url,
    secret: keys.clientKey,
    ca: relay.ca ? await Deno.readTextFile(relay.ca) : undefined,
  };
  const args = ["od", relay.url, String(count), keys.deviceKey, ...(relay.ca ? [relay.ca] : [])];
  return await hold(relay.proc.pid, args, count, async (expected) => {
    const devices = await callApi(target, "GET", "/v1/devices") as {
      state: string;
      services: string[];
    }[];
    const online = devices.filter((d) => d.state === "online" && d.services.includes("ssh"));
    if (online.length !== expected) {
      throw new Error(`${online.length} devices online, not ${expected}`);
    }
  });
}

/** A plain Deno.serve WebSocket server's memory per idle WebSocket. */
export async function plainPerSocket(t: Transport, ca: TestCa, count: number): Promise<Held> {
  const tls = t === "wss" ? [ca.certFile, ca.keyFile] : [];
  await using server = helper("ws hold", "ws_peer.ts", ["hold", ...tls]);
  const { port } = await new Reports(server).next<{ port: number }>();
  const url = `${t === "wss" ? "https" : "http"}://localhost:${port}`;
  const args = ["plain", url, String(count), "-", ...(t === "wss" ? [ca.caFile] : [])];
  return await hold(server.pid, args, count, () => Promise.resolve());
}
