/**
 * od's WebSocket client holds a relay to RFC 6455: a server that breaks a rule gets a close
 * frame with 1002 and a reason a person can read, and `od pipe` ends with one sentence. The
 * server here is a hand-written impostor that answers the upgrade (properly or not), sends the
 * od OPENED frame, and then the frame under test.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import { assertOneSentence } from "./_fleet.ts";
import { encodeOpened, SUBPROTOCOL } from "../src/protocol/frame.ts";
import { acceptFor, encodeFrame, Opcode, parseClosePayload } from "../src/transport/ws_codec.ts";
import { headEnd } from "../src/transport/http1.ts";

const enc = new TextEncoder();
const OPENED = encodeFrame(Opcode.BINARY, encodeOpened(1), false);

/** Bytes a broken server sends after a correct handshake and OPENED. */
const FRAME_CASES: [string, Uint8Array, RegExp][] = [
  ["reserved bits", new Uint8Array([0xc2, 1, 0]), /reserved bits/],
  ["unknown opcode", new Uint8Array([0x83, 0]), /unknown frame opcode 0x3/],
  ["fragmented ping", new Uint8Array([0x09, 0]), /control frame is fragmented/],
  ["126-byte ping", new Uint8Array([0x89, 126, 0, 126, ...new Uint8Array(126)]), /limit is 125/],
  [
    "data frame inside a fragmented message",
    new Uint8Array([0x02, 1, 1, 0x82, 1, 2]),
    /new message started inside a fragmented one/,
  ],
  ["continuation with nothing to continue", new Uint8Array([0x80, 1, 1]), /no message to continue/],
  ["masked server frame", new Uint8Array([0x82, 0x81, 1, 2, 3, 4, 5]), /server frame was masked/],
];

/** Runs one impostor connection; resolves with the close frame the client sent, if any. */
async function impostor(
  listener: Deno.Listener,
  answer: (key: string) => Promise<Uint8Array>,
): Promise<{ code: number; reason: string } | null> {
  const conn = await listener.accept();
  try {
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(16 * 1024);
    while (headEnd(buf) < 0) {
      const n = await conn.read(chunk);
      if (n === null) return null;
      buf = new Uint8Array([...buf, ...chunk.subarray(0, n)]);
    }
    const head = new TextDecoder().decode(buf.subarray(0, headEnd(buf)));
    const key = /sec-websocket-key: (\S+)/i.exec(head)![1];
    await conn.write(await answer(key));
    // Read what the client sends back until it closes: look for its close frame.
    let got = new Uint8Array(0);
    while (true) {
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) break;
      got = new Uint8Array([...got, ...chunk.subarray(0, n)]);
    }
    for (let off = 0; off + 2 <= got.length;) {
      const opcode = got[off] & 0x0f;
      const len = got[off + 1] & 0x7f; // the client's frames here are small
      const mask = got.subarray(off + 2, off + 6);
      const payload = got.slice(off + 6, off + 6 + len).map((b, i) => b ^ mask[i & 3]);
      if (opcode === Opcode.CLOSE) return parseClosePayload(payload);
      off += 6 + len;
    }
    return null;
  } finally {
    conn.close();
  }
}

async function handshake101(key: string, extra = ""): Promise<string> {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Accept: ${await acceptFor(key)}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n` +
    extra + "\r\n";
}

Deno.test("a relay that breaks RFC 6455 gets 1002 and a reason; od pipe says why", async (t) => {
  await using dir = await tempDir();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const env = {
    OD_RELAY: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    OD_KEY: "od_client_" + "A".repeat(43),
    OD_CONFIG_DIR: `${dir}`,
  };
  for (const [name, bad, re] of FRAME_CASES) {
    await t.step(name, async () => {
      const served = impostor(listener, async (key) => {
        const head = enc.encode(await handshake101(key));
        return new Uint8Array([...head, ...OPENED, ...bad]);
      });
      const out = await od(["pipe", "dev-1", "echo"], { env, stdin: "" });
      const close = await served;
      ok(close, "the client sent a close frame");
      assertEquals(close.code, 1002);
      match(close.reason, re);
      assertOneSentence(out, re);
    });
  }

  const HANDSHAKE_CASES: [string, (key: string) => Promise<string>, RegExp][] = [
    [
      "101 without Upgrade",
      async (key) => (await handshake101(key)).replace("Upgrade: websocket\r\n", ""),
      /lacks Upgrade: websocket/,
    ],
    [
      "101 without Connection: Upgrade",
      async (key) => (await handshake101(key)).replace("Connection: Upgrade", "Connection: close"),
      /lacks Connection: Upgrade/,
    ],
    [
      "wrong Sec-WebSocket-Accept",
      async (key) => (await handshake101(key)).replace(await acceptFor(key), await acceptFor("x")),
      /Sec-WebSocket-Accept does not match/,
    ],
  ];
  for (const [name, answer, re] of HANDSHAKE_CASES) {
    await t.step(name, async () => {
      const served = impostor(listener, async (key) => enc.encode(await answer(key)));
      const out = await od(["pipe", "dev-1", "echo"], { env, stdin: "" });
      await served;
      assertOneSentence(out, re);
    });
  }
});
