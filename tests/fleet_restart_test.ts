/**
 * A relay killed with -9 under a fleet: 200 simulated devices (scripts/bench/fleet_load.ts, od's
 * own WebSocket client with the daemon's retry schedule) and two real daemons. Restarted on the
 * same port and data, every device is online again within 60 s; the spread of reconnect times
 * is printed from the relay's own log; the store passes SQLite's integrity check.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type Proc, tempDir } from "./_harness.ts";
import { echoServer, startDaemon } from "./_fleet.ts";
import {
  metric,
  prepareStore,
  startLoad,
  startMeteredRelay,
  until,
} from "../scripts/bench/scale_setup.ts";
import { percentile } from "../scripts/bench/util.ts";

const SIMULATED = 200;
const BOUND_S = 60;

Deno.test("relay kill -9 with 200 simulated devices and 2 daemons: all back within 60 s, store intact", async () => {
  await using dir = await tempDir();
  const fleet = prepareStore(dir, SIMULATED);
  let relay = await startMeteredRelay(fleet.dataDir);
  const port = relay.port;
  await using echo = echoServer();
  const daemons: Proc[] = [];
  try {
    await using load = await startLoad("od", relay.url, fleet.credsFile, SIMULATED);
    await load.go(60_000);
    for (const id of ["real-1", "real-2"]) {
      daemons.push(
        await startDaemon(relay, {
          key: fleet.keys.deviceKey,
          id,
          stateDir: `${dir}/state-${id}`,
          services: { echo: echo.port },
        }),
      );
    }
    const total = SIMULATED + daemons.length;
    assertEquals(await metric(relay.metricsUrl, "od_devices_connected"), total);

    relay.proc.signal("SIGKILL");
    const killedAt = Date.now();
    await relay.proc.output();
    relay = await startMeteredRelay(fleet.dataDir, { port });
    const listeningAt = Date.now();
    await until(
      `${total} devices online again`,
      async () => (await metric(relay.metricsUrl, "od_devices_connected")) === total,
      BOUND_S * 1000,
    );
    const allBack = (Date.now() - killedAt) / 1000;
    // Each device's return, from the relay's log: seconds after the kill.
    const back = [...relay.proc.stderr.matchAll(/^(\S+) info device connected device=(\S+)/gm)]
      .map((m) => (Date.parse(m[1]) - killedAt) / 1000);
    ok(back.length >= total, `${back.length} connections logged for ${total} devices`);
    const s = (x: number) => `${x.toFixed(1)} s`;
    console.log(
      `relay restarted ${s((listeningAt - killedAt) / 1000)} after kill -9; ${total} devices ` +
        `back after ${s(allBack)}; reconnects after the kill: first ${s(Math.min(...back))}, ` +
        `p50 ${s(percentile(back, 50))}, p90 ${s(percentile(back, 90))}, ` +
        `last ${s(Math.max(...back))}`,
    );
    ok(allBack <= BOUND_S, `all back after ${allBack} s`);
    for (const d of daemons) await d.waitFor(/connected to relay[\s\S]*connected to relay/);
  } finally {
    for (const d of daemons) await d.stop();
    await relay.proc.stop();
  }
  const db = new DatabaseSync(`${fleet.dataDir}/od.db`, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    assertEquals(rows.map((r) => r.integrity_check), ["ok"]);
  } finally {
    db.close();
  }
});
