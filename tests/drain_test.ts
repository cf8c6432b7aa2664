/**
 * `od serve --drain SECONDS`: a relay that stops tells each of its daemons its own moment within
 * the window to come back at, and each daemon waits for its moment instead of returning at once
 * with the rest of the fleet.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, type Proc, tempDir } from "./_harness.ts";
import { addAccount, echoServer, type Relay, startDaemon, startRelay } from "./_fleet.ts";

const DRAIN_S = 6;
const DEVICES = 5;

Deno.test("a stopping relay spreads its daemons' return over --drain; each waits its turn", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir}/data`;
  let relay: Relay = await startRelay(dataDir, { extraArgs: ["--drain", String(DRAIN_S)] });
  const port = relay.port;
  const keys = await addAccount(dataDir, "acme");
  await using echo = echoServer();
  const daemons: Proc[] = [];
  try {
    for (let i = 0; i < DEVICES; i++) {
      daemons.push(
        await startDaemon(relay, {
          key: keys.deviceKey,
          id: `edge-${i}`,
          stateDir: `${dir}/state-${i}`,
          services: { echo: echo.port },
        }),
      );
    }
    const marks = daemons.map((d) => d.stderr.length);
    relay.proc.signal("SIGTERM");
    const stoppedAt = Date.now();
    assertEquals((await relay.proc.output()).code, 0);

    // Each daemon was told a moment within the window, and says so in its log and od status.
    const told: number[] = [];
    for (const [i, d] of daemons.entries()) {
      const m = await d.waitFor(/relay is stopping reconnectIn=([\d.]+)s/, 10_000, marks[i]);
      told.push(Number(m[1]) * 1000);
    }
    const status = await od(["status", "--json", "--state", `${dir}/state-0`]);
    assertEquals(status.code, 1);
    match(
      JSON.parse(status.stdout).reason,
      /the relay is stopping and asked this device to reconnect in [\d.]+ s/,
    );
    ok(told.every((ms) => ms >= 0 && ms <= DRAIN_S * 1000), `told ${told}`);
    // Five independent moments in six seconds all within a quarter of a second: 1 chance in
    // 70,000 (within half a second, the bound before: 1 in 4,000 per run).
    ok(Math.max(...told) - Math.min(...told) >= 250, `the moments are not spread: ${told}`);

    // The relay is back at once; every daemon returns at its own moment, not before.
    relay = await startRelay(dataDir, { port });
    const back = await Promise.all(
      daemons.map((d, i) =>
        d.waitFor(/connected to relay/, (DRAIN_S + 15) * 1000, marks[i]).then(() =>
          Date.now() - stoppedAt
        )
      ),
    );
    for (const [i, ms] of back.entries()) {
      // waitFor polls, so `back` is late by a little; never early.
      ok(ms >= told[i] - 100, `edge-${i} came back after ${ms} ms, told ${told[i]} ms`);
    }
    console.log(
      `--drain ${DRAIN_S}: told ${told.map((ms) => (ms / 1000).toFixed(1)).join(", ")} s; ` +
        `back after ${back.map((ms) => (ms / 1000).toFixed(1)).join(", ")} s`,
    );
  } finally {
    for (const d of daemons) await d.stop();
    await relay.proc.stop();
  }
});

Deno.test("od serve --drain outside 0 to 3600 seconds is refused with a sentence", async () => {
  for (const bad of ["-1", "3601", "soon"]) {
    const out = await od(["serve", `--drain=${bad}`, "--listen", "127.0.0.1:0"]);
    assertEquals(out.code, 2, out.stderr);
    match(out.stderr, /^od: --drain must be 0 to 3600 seconds/);
  }
});
