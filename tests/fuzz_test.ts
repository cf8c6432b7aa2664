/**
 * Fuzz: over 100,000 random and mutated frames from device links and client links — frames for
 * streams never opened, valid headers with bad lengths, unknown types, bit flips, OPEN floods,
 * early data, floods of tunnel opens — while a tunnel between two other parties runs. The relay
 * must not crash, its memory must stay bounded, and the other tunnel must complete intact.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { rss, tempDir } from "./_harness.ts";
import {
  addAccount,
  BackgroundTunnel,
  clientEnv,
  echoServer,
  enrollByApi,
  type Relay,
  relaySocket,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { benignFrame, clientData, hostileFrame, pingFrame } from "./_fuzz.ts";
import { encodeControl } from "../src/protocol/frame.ts";

const FRAMES_PER_LINK = 2_500;
const LINKS = 25; // of each kind: 2 × 25 × 2,500 = 125,000 frames
const MAX_GROWTH = 64 * 1024 * 1024;

/** Opens a WebSocket to the relay; null if the relay refused it. */
async function open(relay: Relay, secret: string, path: string): Promise<WebSocket | null> {
  return (await relaySocket(relay, secret, path)).ws;
}

/** Opens a tunnel and waits for the relay's answer (OPENED, or a reset and close). */
async function openAnswered(relay: Relay, secret: string, path: string) {
  const s = await relaySocket(relay, secret, path);
  if (s.ws) await s.answered;
  return s.ws;
}

/** Sends frames while the socket is open; resolves with the number sent, once it has closed. */
async function blast(ws: WebSocket, frames: Iterable<Uint8Array>): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return 0; // the relay already closed it
  let sent = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = new Promise<void>((resolve) => {
    ws.onclose = () => resolve();
    timer = setTimeout(resolve, 10_000); // bounded even if the close event was missed
  }).finally(() => clearTimeout(timer));
  for (const f of frames) {
    if (ws.readyState !== WebSocket.OPEN) break;
    ws.send(f);
    sent++;
    if (sent % 500 === 0) await new Promise((r) => setTimeout(r, 0)); // let close events in
  }
  if (ws.readyState === WebSocket.OPEN) ws.close();
  await closed;
  return sent;
}

/** Frames for never-opened streams (dropped by the relay), then one that breaks the link. */
function* deviceFrames(): Generator<Uint8Array> {
  const stray = () => 1 + Math.floor(Math.random() * 1_000_000);
  for (let i = 0; i < FRAMES_PER_LINK - 1; i++) yield benignFrame(stray);
  yield hostileFrame();
}

/** Data and pings on an open tunnel (under one window in all), then a frame that breaks it. */
function* clientFrames(): Generator<Uint8Array> {
  for (let i = 0; i < FRAMES_PER_LINK - 1; i++) yield i % 2 ? clientData() : pingFrame();
  yield hostileFrame();
}

/** Hostile frames only: the relay closes the link at the first. */
function* hostileFrames(n: number): Generator<Uint8Array> {
  for (let i = 0; i < n; i++) yield hostileFrame();
}

Deno.test("over 100,000 hostile frames leave the relay up, bounded, and serving others", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const other = await addAccount(relay.dataDir, "other");
  await using echo = echoServer();
  await using sink = echoServer();
  await using _bystander = await startDaemon(relay, {
    key: other.deviceKey,
    id: "calm-1",
    stateDir: `${dir}/calm`,
    services: { echo: echo.port },
  });
  await using _target = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "target-1",
    stateDir: `${dir}/target`,
    services: { sink: sink.port },
  });
  const credential = await enrollByApi(relay, acme.deviceKey, "rogue-1");
  // A device link that never reports itself is closed after the 10 s handshake deadline.
  const silentCredential = await enrollByApi(relay, acme.deviceKey, "silent-1");
  const silent = await open(relay, silentCredential, "/v1/device");
  const silentClosed = new Promise<number>((r) => (silent!.onclose = (e) => r(e.code)));
  const before = rss(relay.proc.pid);
  const background = new BackgroundTunnel(
    clientEnv(relay, other.clientKey, `${dir}/cfg`),
    "calm-1",
  );
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss(relay.proc.pid))), 100);
  let total = 0;
  try {
    for (let i = 0; i < LINKS; i++) {
      const dev = await open(relay, credential, "/v1/device");
      ok(dev, "the rogue device could connect");
      dev.send(encodeControl({ t: "info", version: "fuzz", services: [], hostKeys: [] }));
      total += await blast(dev, deviceFrames());
      const cli = await openAnswered(
        relay,
        acme.clientKey,
        "/v1/tunnel?device=target-1&service=sink",
      );
      ok(cli, "a tunnel to the target could open");
      total += await blast(cli, clientFrames());
      for (const path of ["/v1/device", "/v1/tunnel?device=target-1&service=sink"]) {
        const ws = await open(relay, path === "/v1/device" ? credential : acme.clientKey, path);
        total += ws ? await blast(ws, hostileFrames(20)) : 0;
      }
    }
    // A flood of opens to a device that never answers them (the rogue, connected but mute).
    const mute = await open(relay, credential, "/v1/device");
    mute!.send(encodeControl({ t: "info", version: "fuzz", services: [], hostKeys: [] }));
    const flood = await Promise.all(
      Array.from(
        { length: 200 },
        () => open(relay, acme.clientKey, "/v1/tunnel?device=rogue-1&service=ssh"),
      ),
    );
    const admitted = flood.filter((w) => w !== null);
    ok(admitted.length <= 64, `${admitted.length} unanswered opens were admitted`);
    for (const w of admitted) total += await blast(w!, [clientData(8)]); // early data: refused
    mute!.close();
    ok(total >= 100_000, `only ${total} frames were sent`);
    await background.finish();
  } finally {
    clearInterval(sampler);
  }
  assertEquals(await silentClosed, 4408, "a silent device link hits the handshake deadline");
  const health = await fetch(`${relay.url}/v1/health`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
  ok(relay.proc.stderr.includes("relay listening"), "the same relay process is still serving");
  console.log(
    `${total} frames; relay RSS ${(before / 2 ** 20).toFixed(1)} MiB, peak ${
      (peak / 2 ** 20).toFixed(1)
    } MiB`,
  );
  ok(peak - before <= MAX_GROWTH, `relay grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
});
