/**
 * End-to-end flow control: a client that stops reading stalls the device's service instead of
 * filling the relay's or the daemon's memory, and the stream completes once it reads again.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { od, Proc, rss, tempDir } from "./_harness.ts";
import {
  addAccount,
  clientEnv,
  echoServer,
  readPattern,
  sourceServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

const TOTAL = 64 * 1024 * 1024; // far more than any buffer on the path
const PAUSE_MS = 10_000; // the 10 s of not reading
const MAX_GROWTH = 16 * 1024 * 1024;

Deno.test("a client that stops reading for 10 s bounds relay and daemon memory", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using source = sourceServer(TOTAL);
  await using echo = echoServer();
  await using daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { source: source.port, echo: echo.port },
  });
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);

  // Warm up both processes (JIT, buffers) so the baseline is not their start-up footprint.
  const warm = await od(["pipe", "edge-1", "echo"], { env, stdin: new Uint8Array(8 << 20) });
  assertEquals(warm.code, 0, warm.stderr);
  const base = { relay: rss(relay.proc.pid), daemon: rss(daemon.pid) };

  await using client = new Proc("slow client", ["pipe", "edge-1", "source"], {
    env,
    stdout: "piped",
  });
  let peak = { relay: 0, daemon: 0 };
  const pauseEnd = Date.now() + PAUSE_MS;
  while (Date.now() < pauseEnd) {
    peak = {
      relay: Math.max(peak.relay, rss(relay.proc.pid)),
      daemon: Math.max(peak.daemon, rss(daemon.pid)),
    };
    await new Promise((r) => setTimeout(r, 200));
  }
  const sentWhilePaused = source.written();

  // Read everything now and check it is the source's pattern, byte for byte.
  const { received, mismatch } = await readPattern(client.child.stdout, source.data);
  const { code, stderr } = await client.output();

  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  console.log(
    `relay +${mib(peak.relay - base.relay)}, daemon +${mib(peak.daemon - base.daemon)}, ` +
      `source wrote ${mib(sentWhilePaused)} while the client was not reading`,
  );
  ok(sentWhilePaused < TOTAL / 2, `the source was not held back: ${mib(sentWhilePaused)} sent`);
  ok(peak.relay - base.relay <= MAX_GROWTH, `relay grew ${mib(peak.relay - base.relay)}`);
  ok(peak.daemon - base.daemon <= MAX_GROWTH, `daemon grew ${mib(peak.daemon - base.daemon)}`);
  assertEquals(code, 0, stderr);
  assertEquals(mismatch, -1, `stream differs at byte ${mismatch}`);
  assertEquals(received, TOTAL);
});
