/**
 * The regression of issue 9: four property values of 4,096 "\x01" set through the API each
 * grow six-fold as JSON. Estimated sizes once made the relay's push throw after the WebSocket
 * upgrade and stop the whole relay (exit 0) on every reconnect of the device, and the PATCH
 * answer 500 while it was online. Here, with the device offline, online, and reconnecting
 * afterwards: the relay stays up, the PATCH answers 200, the device stays online without a
 * reconnect loop, and `od props get` on the device shows the values byte for byte.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import {
  addAccount,
  clientEnv,
  echoServer,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { assertRelayAlive, call, propsOnDevice, propsOnRelay } from "./_api.ts";

const values = (ch: string) =>
  Object.fromEntries(["a", "b", "c", "d"].map((k) => [`ctl-${k}`, ch.repeat(4096)]));

async function deviceOnline(relay: Relay, key: string, id: string): Promise<boolean> {
  const answer = await call(relay, key, "GET", `/v1/devices/${id}`);
  return (answer.body as { state: string }).state === "online";
}

Deno.test("four 4 KiB values of \\x01: relay up, PATCH 200, device online, values exact", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const state = `${dir}/state`;
  const start = () =>
    startDaemon(relay, {
      key: keys.deviceKey,
      id: "edge-1",
      stateDir: state,
      services: { echo: echo.port },
    });
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  let daemon = await start();
  try {
    await t.step("set while the device is offline, then it connects", async () => {
      await daemon.stop();
      const first = values("\x01");
      const patch = await call(relay, keys.clientKey, "PATCH", "/v1/devices/edge-1/props", {
        set: first,
      });
      assertEquals(patch.status, 200, patch.text);
      daemon = await start(); // waits for "connected to relay": the greeting carried the values
      await assertRelayAlive(relay);
      ok(await deviceOnline(relay, keys.clientKey, "edge-1"));
      assertEquals(await propsOnDevice(state), first);
      const raw = await od(["props", "--state", state, "get", "ctl-a"]);
      assertEquals(raw.stdout, `${first["ctl-a"]}\n`, "the value is printed byte for byte");
    });

    await t.step("set while the device is online", async () => {
      const second = {
        ...values("\x01"),
        "ctl-b": '"\\'.repeat(2048),
        "ctl-c": "\u2028".repeat(1365),
      };
      const patch = await call(relay, keys.clientKey, "PATCH", "/v1/devices/edge-1/props", {
        set: second,
      });
      assertEquals(patch.status, 200, patch.text);
      await waitFor(
        "the device to show the values",
        async () => equal(await propsOnDevice(state), second),
      );
      assertEquals(await propsOnRelay(relay, keys.clientKey, "edge-1"), second);
      await assertRelayAlive(relay);
      const pipe = await od(["pipe", "edge-1", "echo"], { env, stdin: "still carries data" });
      assertEquals([pipe.code, pipe.stdout], [0, "still carries data"], pipe.stderr);
    });

    await t.step("the device reconnects afterwards, once", async () => {
      await daemon.stop();
      daemon = await start();
      await assertRelayAlive(relay);
      ok(await deviceOnline(relay, keys.clientKey, "edge-1"));
      assertEquals(await propsOnDevice(state), await propsOnRelay(relay, keys.clientKey, "edge-1"));
      // One more round trip on the link after the greeting: a change made on the device.
      assertEquals((await od(["props", "--state", state, "set", "after=1"])).code, 0);
      await waitFor(
        "the relay to get the device's change",
        async () => (await propsOnRelay(relay, keys.clientKey, "edge-1")).after === "1",
      );
      assertEquals(daemon.stderr.match(/connected to relay/g)?.length, 1, daemon.stderr);
      ok(!/link to relay closed|ignored a message/.test(daemon.stderr), daemon.stderr);
      ok(!/request failed|error/.test(relay.proc.stderr), relay.proc.stderr);
    });
  } finally {
    await daemon.stop();
  }
});

function equal(a: unknown, b: unknown): boolean {
  try {
    assertEquals(a, b);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
