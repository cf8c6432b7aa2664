/**
 * Every way a tunnel can fail gives one clear sentence on stderr and a non-zero exit, while a
 * tunnel between other parties keeps working throughout.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import {
  addAccount,
  assertOneSentence,
  BackgroundTunnel,
  clientEnv,
  echoServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { SUBPROTOCOL } from "../src/protocol/frame.ts";

Deno.test("tunnel failures: one sentence, non-zero exit, other tunnels unaffected", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  await using _daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state1`,
    services: { echo: echo.port, dead: 1 }, // port 1: nothing listens there
  });
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const background = new BackgroundTunnel(env, "edge-1");

  await t.step("offline device", async () => {
    const other = await startDaemon(relay, {
      key: keys.deviceKey,
      id: "edge-2",
      stateDir: `${dir}/state2`,
      services: { echo: echo.port },
    });
    await other.stop();
    const out = await od(["pipe", "edge-2", "echo"], { env });
    assertOneSentence(out, /device "edge-2" is offline \(last seen (just now|\d+ s ago)\)/);
  });

  await t.step("bad key", async () => {
    const bad = "od_client_" + "A".repeat(43);
    const out = await od(["pipe", "edge-1", "echo"], { env: { ...env, OD_KEY: bad } });
    assertOneSentence(out, /the key is not valid on this relay/);
    const garbage = await od(["pipe", "edge-1", "echo"], { env: { ...env, OD_KEY: "hunter2" } });
    assertOneSentence(garbage, /not an od key/);
  });

  await t.step("unknown device", async () => {
    const out = await od(["pipe", "nope-1", "echo"], { env });
    assertOneSentence(out, /no device "nope-1" in account "acme"/);
  });

  await t.step("service the device does not expose", async () => {
    const out = await od(["pipe", "edge-1", "ssh"], { env });
    assertOneSentence(out, /does not expose service "ssh" \(it exposes: echo, dead\)/);
  });

  await t.step("exposed service that is down on the device", async () => {
    const out = await od(["pipe", "edge-1", "dead"], { env });
    assertOneSentence(
      out,
      /cannot connect to service "dead" at 127\.0\.0\.1:1: Connection refused/,
    );
  });

  await t.step("relay that is down", async () => {
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close();
    const out = await od(["pipe", "edge-1", "echo"], {
      env: { ...env, OD_RELAY: `http://127.0.0.1:${port}` },
    });
    assertOneSentence(
      out,
      new RegExp(
        `cannot reach relay at http://127.0.0.1:${port}: the relay 127.0.0.1:${port} refused`,
      ),
    );
  });

  await t.step("peer with the wrong protocol version", async () => {
    // A newer client offering od.2 to this relay is refused before any frame, with a reason.
    const res = await fetch(`${relay.url}/v1/tunnel?device=edge-1&service=echo`, {
      headers: { authorization: `Bearer ${keys.clientKey}`, "x-od-protocol": "od.2" },
    });
    assertEquals(res.status, 426);
    match((await res.json()).error, /relay speaks od\.1 but this peer offered od\.2/);
    // And od talking to a relay of another version says so.
    await using future = futureRelay();
    const out = await od(["pipe", "edge-1", "echo"], { env: { ...env, OD_RELAY: future.url } });
    assertOneSentence(out, /protocol mismatch: the relay speaks od\.2 but this peer offered od\.1/);
  });

  await t.step("usage errors exit 2", async () => {
    assertOneSentence(await od(["pipe", "edge-1"], { env }), /missing SERVICE/, 2);
    assertOneSentence(await od(["pipe", "Bad_Id", "echo"], { env }), /device ID "Bad_Id"/, 2);
    assertOneSentence(await od(["pipe", "--bogus"], { env }), /unknown option --bogus/, 2);
  });

  await t.step("od admin on a mistyped --data says so and creates nothing", async () => {
    const missing = `${dir}/no-such-data`;
    for (const args of [["audit"], ["key", "list"], ["account", "list"]]) {
      const out = await od(["admin", "--data", missing, ...args]);
      assertOneSentence(out, /^od: No relay store in .*no-such-data/, 1);
    }
    ok(!(await exists(missing)), "no data directory appeared");
  });

  await t.step("the background tunnel kept working", () => background.finish());
});

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** A stand-in for a relay that speaks only od.2, refusing like a real one would. */
function futureRelay() {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    (req) => {
      const offered = req.headers.get("sec-websocket-protocol") ?? req.headers.get("x-od-protocol");
      return Response.json({
        error: `protocol mismatch: the relay speaks od.2 but this peer offered ${offered}; ` +
          `upgrade od so both sides match`,
      }, { status: 426 });
    },
  );
  ok(SUBPROTOCOL === "od.1");
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await server.finished;
    },
  };
}
