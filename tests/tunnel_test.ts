/**
 * The tunnel core end to end: relay, daemon and `od pipe` as separate processes, over plain
 * WebSocket and over TLS with a test CA.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { randomBytes, tempDir } from "./_harness.ts";
import {
  addAccount,
  clientEnv,
  echoServer,
  makeTestCa,
  pipeThrough,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

for (const transport of ["ws", "wss"] as const) {
  Deno.test(`od pipe over ${transport}: 64 MiB, half-close and 50 concurrent streams arrive intact`, async (t) => {
    await using dir = await tempDir();
    const tls = transport === "wss" ? await makeTestCa(dir) : undefined;
    await using relay: Relay = await startRelay(`${dir}/data`, { tls });
    const keys = await addAccount(relay.dataDir, "acme");
    await using echo = echoServer();
    await using _daemon = await startDaemon(relay, {
      key: keys.deviceKey,
      id: "edge-1",
      stateDir: `${dir}/state`,
      services: { echo: echo.port },
    });
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);

    await t.step("random bytes on the relay's port (TLS or not) do not disturb it", async () => {
      for (let i = 0; i < 3; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
        await conn.write(randomBytes(16 * 1024)).catch(() => 0);
        const buf = new Uint8Array(4096);
        while ((await conn.read(buf).catch(() => null)) !== null) { /* until the relay closes */ }
        conn.close();
      }
    });

    await t.step("printf x | od pipe dev echo prints the reply and exits", async () => {
      const out = await pipeThrough(env, "edge-1", "echo", new TextEncoder().encode("x"));
      assertEquals(out.stderr, "");
      assertEquals(new TextDecoder().decode(out.output), "x");
      assertEquals(out.code, 0);
    });

    await t.step("64 MiB of random bytes come back byte-identical", async () => {
      const input = randomBytes(64 * 1024 * 1024);
      const out = await pipeThrough(env, "edge-1", "echo", input);
      assertEquals(out.code, 0, out.stderr);
      assertEquals(out.output.length, input.length);
      assertEquals(await sha256(out.output), await sha256(input));
    });

    await t.step("50 concurrent streams to one device all complete intact", async () => {
      const inputs = Array.from({ length: 50 }, (_, i) => randomBytes(64 * 1024 + i * 4099));
      const outs = await Promise.all(
        inputs.map((input) => pipeThrough(env, "edge-1", "echo", input)),
      );
      for (const [i, out] of outs.entries()) {
        assertEquals(out.code, 0, `stream ${i}: ${out.stderr}`);
        ok(out.output.length === inputs[i].length, `stream ${i} length ${out.output.length}`);
        assertEquals(await sha256(out.output), await sha256(inputs[i]), `stream ${i} differs`);
      }
    });
  });
}
