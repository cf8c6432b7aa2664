/**
 * Garbage sent to the relay's WebSocket endpoints closes only the connection that sent it: the
 * relay keeps serving a tunnel between other parties, and new tunnels still open.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { od, randomBytes, tempDir } from "./_harness.ts";
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
import { FrameType, HEADER_SIZE, ResetCode, SUBPROTOCOL } from "../src/protocol/frame.ts";

/** Opens a socket the relay must accept. */
async function openSocket(relay: Relay, secret: string, path: string): Promise<WebSocket> {
  const { ws, status } = await relaySocket(relay, secret, path);
  if (!ws) throw new Error(`${path} refused with ${status}`);
  return ws;
}

/**
 * Sends `payloads` and resolves with the close code the relay chose, or -1 if it kept the
 * connection open for 5 s. When frames are still arriving as the relay closes, the kernel may
 * reset the connection and the close frame is lost: the code is then 0 or 1006.
 */
async function sendAndAwaitClose(ws: WebSocket, payloads: (Uint8Array | string)[]) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = new Promise<number>((resolve) => {
    ws.onclose = (e) => resolve(e.code);
    timer = setTimeout(() => resolve(-1), 5000);
  });
  for (const p of payloads) ws.send(p);
  const code = await closed;
  clearTimeout(timer);
  if (code === -1) ws.close();
  return code;
}

const closedByRelay = (code: number) => [4400, 1006, 0].includes(code);

Deno.test("garbage on the relay's endpoints closes only that connection", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  await using _daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { echo: echo.port },
  });
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const background = new BackgroundTunnel(env, "edge-1");

  // A second, enrolled device whose link the test drives by hand.
  const credential = await enrollByApi(relay, keys.deviceKey, "rogue-1");

  // A message over the frame limit is refused from its header, before it is buffered: 1009.
  await t.step("a 1 MiB garbage message on a device link", async () => {
    const ws = await openSocket(relay, credential, "/v1/device");
    const garbage = randomBytes(1024 * 1024);
    assertEquals(await sendAndAwaitClose(ws, [garbage]), 1009);
  });

  await t.step("a 1 MiB garbage message on a client tunnel", async () => {
    const ws = await openSocket(relay, keys.clientKey, "/v1/tunnel?device=edge-1&service=echo");
    assertEquals(await sendAndAwaitClose(ws, [randomBytes(1024 * 1024)]), 1009);
  });

  await t.step("random small frames, a text message, and frames for unopened streams", async () => {
    const frames = Array.from({ length: 200 }, (_, i) => randomBytes(1 + (i % 40)));
    let ws = await openSocket(relay, credential, "/v1/device");
    const code = await sendAndAwaitClose(ws, frames);
    ok(closedByRelay(code), `close code ${code}`);
    ws = await openSocket(relay, credential, "/v1/device");
    assertEquals(await sendAndAwaitClose(ws, ["hello"]), 1003); // text: unsupported data
    // Well-formed DATA for a stream the relay never opened is dropped, not fatal; a DATA frame
    // on a client link before the device answered breaks the protocol.
    ws = await openSocket(relay, credential, "/v1/device");
    const stray = new Uint8Array(HEADER_SIZE + 3);
    stray[0] = FrameType.DATA;
    new DataView(stray.buffer).setUint32(1, 77);
    ws.send(stray);
    // And then garbage, which does close it: random bytes behind a type byte no version knows
    // (a random first byte is a valid frame type one time in 26, and DATA or RESET for an
    // unknown stream is dropped, not fatal).
    const garbage = randomBytes(7);
    garbage[0] = 0xee;
    ws.send(garbage);
    assertEquals(await sendAndAwaitClose(ws, []), 4400);
    // A client is answered only once the device has answered OPEN, so it cannot send DATA
    // early; a device that refuses makes the client's upgrade an HTTP refusal with its reason.
    const refusing = await openSocket(relay, credential, "/v1/device");
    refusing.onmessage = (ev) => {
      const frame = new Uint8Array(ev.data as ArrayBuffer);
      if (frame[0] !== FrameType.OPEN) return;
      const reason = new TextEncoder().encode("not today");
      const reset = new Uint8Array(HEADER_SIZE + 1 + reason.length);
      reset.set(frame.subarray(0, HEADER_SIZE));
      reset[0] = FrameType.RESET;
      reset[HEADER_SIZE] = ResetCode.NOT_EXPOSED;
      reset.set(reason, HEADER_SIZE + 1);
      refusing.send(reset);
    };
    const res = await fetch(`${relay.url}/v1/tunnel?device=rogue-1&service=echo`, {
      headers: {
        authorization: `Bearer ${keys.clientKey}`,
        "x-od-protocol": SUBPROTOCOL,
        upgrade: "websocket",
        connection: "upgrade",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    assertEquals(res.status, 404);
    assertEquals((await res.json()).error, 'cannot open echo on "rogue-1": not today');
    refusing.close();
  });

  await t.step("random bytes instead of HTTP on the relay's port", async () => {
    for (let i = 0; i < 5; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
      await conn.write(randomBytes(64 * 1024)).catch(() => 0);
      const buf = new Uint8Array(1024);
      // The relay answers 400 or just closes; either way the read ends.
      while ((await conn.read(buf).catch(() => null)) !== null) { /* drain */ }
      conn.close();
    }
  });

  await t.step("the relay still serves: old tunnel intact, new tunnel works", async () => {
    await background.finish();
    const out = await od(["pipe", "edge-1", "echo"], { env, stdin: "still here" });
    assertEquals(out.stdout, "still here");
    assertEquals(out.code, 0, out.stderr);
  });
});
