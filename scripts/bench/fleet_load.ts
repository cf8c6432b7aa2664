/**
 * Benchmark helper process: holds many device links open like a fleet of daemons.
 *
 *   deno run --allow-all scripts/bench/fleet_load.ts od|plain URL CREDS FROM TO [CA_FILE]
 *
 * Reads the device credentials FROM..TO-1 (one per line) of the file CREDS, prints
 * `{"loaded":N}`, and waits for a line on stdin, so the caller can measure the server first.
 * It then opens the links with od's own WebSocket client (the daemon's), at most WIDTH
 * handshakes at a time, and prints `{"ready":N,"ms":T}` once every link is up: in od mode when
 * the relay's hello has arrived (after the device's `info`), in plain mode when it is open.
 *
 * Every link then behaves like a daemon: it pings every KEEPALIVE_MS (one timer for all links,
 * a slice of them per tick), answers the relay's pings, drops a link that stays silent for three
 * intervals, and reconnects a closed link with jittered exponential backoff, waiting as long as
 * a Retry-After says (plus up to a second). A line `stats` on stdin prints
 * `{"online":N,"connects":C,"refused":R}`.
 *
 * Each device sends `X-Forwarded-For` with an address of its own from 198.18.0.0/15 (the
 * benchmarking range), so a relay trusting 127.0.0.1 as its proxy throttles and audits them as
 * the separate machines they stand for instead of as one address.
 */
import { decodeFrame, encodeControl, encodePing, FrameType } from "../../src/protocol/frame.ts";
import { dialLink, RelayError, type RelayTarget } from "../../src/transport/dial.ts";
import type { SocketLink } from "../../src/transport/socket_link.ts";
import { retryDelay } from "../../src/daemon/retry.ts";

const WIDTH = 48; // first handshakes in flight per process: a steady arrival, not a storm
const KEEPALIVE_MS = 15_000; // the daemon's default --keepalive
const TICK_MS = 1_000; // the ping timer: each tick pings the links whose turn it is
const STABLE_MS = 30_000; // the daemon's: a link that lived this long resets the backoff

interface Device {
  index: number;
  target: RelayTarget;
  link: SocketLink | null;
  lastFrameAt: number;
}

const info = encodeControl({ t: "info", version: "bench", services: ["ssh"], hostname: "load" });
const stats = { online: 0, connects: 0, refused: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A synthetic address of the benchmarking range for device `i`. */
function addressOf(i: number): string {
  return `198.${18 + ((i >> 16) & 1)}.${(i >> 8) & 255}.${i & 255}`;
}

/** Opens one link; resolves once it is up (hello in od mode), with a promise of its end. */
async function connect(d: Device, od: boolean): Promise<{ closed: Promise<void> }> {
  const link = await dialLink(d.target, od ? "/v1/device" : "/");
  let hello: () => void = () => {};
  const up = new Promise<void>((r) => (hello = r));
  const closed = new Promise<void>((resolve) => {
    link.onClose = () => {
      if (d.link === link) d.link = null;
      resolve();
    };
  });
  link.onFrame = (raw) => {
    d.lastFrameAt = Date.now();
    const frame = decodeFrame(raw);
    if (frame.type === FrameType.PING) link.send(encodePing(FrameType.PONG, frame.nonce));
    else if (frame.type === FrameType.CONTROL) hello();
  };
  d.link = link;
  d.lastFrameAt = Date.now();
  if (od) {
    link.send(info);
    await Promise.race([up, closed]);
    if (!link.open) throw new Error("the link closed before hello");
  }
  return { closed }; // wrapped: an async function returning a promise would wait for it
}

/** Keeps device `d` connected for as long as the process runs; `first` fires on first success. */
async function keep(d: Device, od: boolean, first: () => void): Promise<void> {
  let attempt = 0;
  let firstDone = false;
  while (true) {
    let wait: number;
    const started = Date.now();
    try {
      const { closed } = await connect(d, od);
      stats.online++;
      stats.connects++;
      if (!firstDone) {
        firstDone = true;
        first();
      }
      await closed;
      stats.online--;
      attempt = Date.now() - started > STABLE_MS ? 0 : attempt + 1;
      wait = retryDelay(attempt, false, null);
    } catch (err) {
      if (Deno.env.get("OD_LOAD_DEBUG")) console.error(err);
      attempt++;
      // The daemon's schedule (src/daemon/retry.ts), Retry-After included.
      const relayError = err instanceof RelayError ? err : null;
      if (relayError?.retryAfter) stats.refused++;
      wait = retryDelay(
        attempt,
        relayError?.failure?.silent ?? false,
        relayError?.retryAfter ?? null,
      );
    }
    await sleep(wait);
  }
}

/** One timer for every link: pings this tick's slice and drops links silent for too long. */
function keepalive(devices: Device[]): void {
  const slices = Math.round(KEEPALIVE_MS / TICK_MS);
  let tick = 0;
  setInterval(() => {
    const now = Date.now();
    for (let i = tick++ % slices; i < devices.length; i += slices) {
      const d = devices[i];
      if (!d.link?.open) continue;
      if (now - d.lastFrameAt > 3 * KEEPALIVE_MS) d.link.close(4408, "keepalive timeout");
      else d.link.send(encodePing(FrameType.PING, crypto.getRandomValues(new Uint8Array(8))));
    }
  }, TICK_MS);
}

async function readLines(onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of Deno.stdin.readable) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      onLine(buffered.slice(0, nl).trim());
      buffered = buffered.slice(nl + 1);
    }
  }
}

async function main(mode: string, url: string, credsFile: string, from: number, to: number) {
  const caFile = Deno.args[5];
  const ca = caFile ? Deno.readTextFileSync(caFile) : undefined;
  const od = mode === "od";
  const creds = Deno.readTextFileSync(credsFile).split("\n").slice(from, to);
  if (creds.length !== to - from) throw new Error(`${credsFile} has no lines ${from}..${to}`);
  const devices: Device[] = creds.map((secret, k) => ({
    index: from + k,
    target: { url, secret, ca, headers: { "x-forwarded-for": addressOf(from + k) } },
    link: null,
    lastFrameAt: 0,
  }));
  console.log(JSON.stringify({ loaded: devices.length }));
  let go: () => void = () => {};
  const started = new Promise<void>((r) => (go = r));
  readLines((line) => {
    if (line === "go") go();
    else if (line === "stats") console.log(JSON.stringify(stats));
  }).catch(() => {});
  await started;
  const t0 = performance.now();
  let ready = 0;
  let next = 0;
  let allUp: () => void = () => {};
  const everyone = new Promise<void>((r) => (allUp = r));
  // The first connections go WIDTH at a time; each device then keeps itself connected.
  const launch = () => {
    if (next >= devices.length) return;
    const d = devices[next++];
    keep(d, od, () => {
      if (++ready === devices.length) allUp();
      launch();
    });
  };
  for (let i = 0; i < Math.min(WIDTH, devices.length); i++) launch();
  keepalive(devices);
  await everyone;
  console.log(JSON.stringify({ ready, ms: performance.now() - t0 }));
}

if (import.meta.main) {
  const [mode, url, creds, from, to] = Deno.args;
  if (!["od", "plain"].includes(mode) || !url || !creds || !(Number(to) > Number(from))) {
    throw new Error("usage: fleet_load.ts od|plain URL CREDS FROM TO [CA_FILE]");
  }
  await main(mode, url, creds, Number(from), Number(to));
  await new Promise(() => {}); // hold the links until killed
}
