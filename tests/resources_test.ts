/**
 * A key holder cannot exhaust the relay: a PING flood from a client that never reads, two dozen
 * tunnels announcing 63 MiB messages, and a client that grants credit but never reads each leave
 * the relay's memory within 64 MiB of where it started, /v1/health answering within 100 ms
 * throughout, and a tunnel between other parties flowing.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { rss, tempDir } from "./_harness.ts";
import { HealthProbe } from "./_api.ts";
import {
  addAccount,
  BackgroundTunnel,
  clientEnv,
  echoServer,
  sourceServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { rawSocket, writeAll } from "./_rawws.ts";
import {
  CLIENT_STREAM,
  encodeCredit,
  encodePing,
  FrameType,
  STREAM_WINDOW,
} from "../src/protocol/frame.ts";
import { encodeFrame, Opcode } from "../src/transport/ws_codec.ts";

const MiB = 1024 * 1024;
const MAX_GROWTH = 64 * MiB;
const HEALTH_BOUND_MS = 100;

/** Many masked PING messages back to back, to write in big blocks. */
function pingBlock(count: number): Uint8Array {
  const one = encodeFrame(Opcode.BINARY, encodePing(FrameType.PING, new Uint8Array(8)), true);
  const out = new Uint8Array(one.length * count);
  for (let i = 0; i < count; i++) out.set(one, i * one.length);
  return out;
}

Deno.test("floods from a key holder leave the relay bounded and serving others", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  await using source = sourceServer(4 * 1024 * MiB);
  await using _daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { echo: echo.port, source: source.port },
  });
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const background = new BackgroundTunnel(env, "edge-1");
  await using probe = await HealthProbe.start(relay);
  const start = rss(relay.proc.pid);
  const growth = () => rss(relay.proc.pid) - start;
  const tunnelPath = (service: string) => `/v1/tunnel?device=edge-1&service=${service}`;

  await t.step("a PING flood from a client that never reads", async () => {
    const s = await rawSocket(relay.port, keys.clientKey, tunnelPath("echo"));
    const block = pingBlock(16 * 1024); // ~300 KiB per write
    let sent = 0;
    const deadline = Date.now() + 5_000;
    while (sent < 57 * MiB && Date.now() < deadline) {
      const ok = await writeAll(s.conn, block).then(() => true, () => false);
      if (!ok) break; // the relay may close a link that floods it; either outcome is fine
      sent += block.length;
    }
    ok(sent > 8 * MiB, `only ${sent} bytes of PINGs went out`);
    ok(growth() <= MAX_GROWTH, `relay grew by ${growth() >> 20} MiB`);
    s.close();
  });

  await t.step(
    "two dozen tunnels announcing 63 MiB messages are refused at the header",
    async () => {
      const sockets = await Promise.all(
        Array.from({ length: 24 }, () => rawSocket(relay.port, keys.clientKey, tunnelPath("echo"))),
      );
      const header = new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x03, 0xf0, 0, 0, 1, 2, 3, 4]);
      const filler = new Uint8Array(MiB);
      const outcomes = await Promise.all(sockets.map(async (s) => {
        await writeAll(s.conn, header);
        for (let i = 0; i < 8; i++) {
          if (!(await writeAll(s.conn, filler).then(() => true, () => false))) break;
        }
        // The relay answers with a close frame (1009) and drops the connection.
        const buf = new Uint8Array(64 * 1024);
        let got = new Uint8Array(0);
        while (true) {
          const n = await s.conn.read(buf).catch(() => null);
          if (n === null) break;
          got = new Uint8Array([...got, ...buf.subarray(0, n)]);
        }
        s.close();
        const closeAt = got.findIndex((b, i) =>
          b === 0x88 && got[i + 2] === 0x03 && got[i + 3] === 0xf1
        );
        return closeAt >= 0;
      }));
      assertEquals(outcomes.filter((x) => x).length, 24, "every link was closed with 1009");
      ok(growth() <= MAX_GROWTH, `relay grew by ${growth() >> 20} MiB`);
    },
  );

  await t.step("a client that grants credit but never reads stalls only itself", async () => {
    const s = await rawSocket(relay.port, keys.clientKey, tunnelPath("source"));
    // Claim to have read a quarter window every 20 ms for 3 s (some 37 MiB) without reading.
    const credit = encodeCredit(CLIENT_STREAM, STREAM_WINDOW / 4);
    for (let i = 0; i < 150; i++) {
      if (!(await s.send(credit).then(() => true, () => false))) break; // reset as a liar
      await new Promise((r) => setTimeout(r, 20));
    }
    ok(growth() <= MAX_GROWTH, `relay grew by ${growth() >> 20} MiB`);
    ok(source.written() < 32 * MiB, `the device's service was read ${source.written() >> 20} MiB`);
    s.close();
  });

  await t.step("/v1/health answered within 100 ms throughout; other tunnel intact", async () => {
    const stats = await probe.stop();
    assertEquals(stats.failed, 0, JSON.stringify(stats));
    ok(stats.probes > 20, JSON.stringify(stats));
    ok(
      stats.max <= HEALTH_BOUND_MS,
      `slowest /v1/health took ${Math.round(stats.max)} ms\n${stats.log}`,
    );
    await background.finish();
  });
});
