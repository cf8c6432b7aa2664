/**
 * Client regressions of issue 9: `od login` ignored OD_CA; a plain-HTTP relay that closes the
 * connection during the handshake was reported as a TLS failure; `od pipe` hung when the link
 * closed while it was busy with the device's answer (the close was consumed by a handler that
 * no longer listened).
 */
import { deepStrictEqual as assertEquals, doesNotMatch, match, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import { addAccount, assertOneSentence, makeTestCa, startRelay } from "./_fleet.ts";
import { runPipe } from "../src/client/pipe.ts";
import { encodeOpened, SUBPROTOCOL } from "../src/protocol/frame.ts";
import type { ByteIO } from "../src/transport/stream.ts";

Deno.test("od login honours OD_CA, and stores the CA it checked with", async () => {
  await using dir = await tempDir();
  const ca = await makeTestCa(dir);
  await using relay = await startRelay(`${dir}/data`, { tls: ca });
  const keys = await addAccount(relay.dataDir, "acme");
  const login = ["login", "--relay", relay.url, "--key", keys.clientKey];
  const without = await od(login, { env: { OD_CONFIG_DIR: `${dir}/a` } });
  assertOneSentence(without, /TLS failed .*pass the relay's CA with --ca or OD_CA/);
  const withEnv = await od(login, { env: { OD_CONFIG_DIR: `${dir}/b`, OD_CA: ca.caFile } });
  assertEquals(withEnv.code, 0, withEnv.stderr);
  const list = await od(["list"], { env: { OD_CONFIG_DIR: `${dir}/b` } });
  assertEquals(list.code, 0, list.stderr);
});

Deno.test("a plain-HTTP relay closing during the handshake is not called a TLS failure", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.read(new Uint8Array(4096)).catch(() => null); // the request, then hang up
      conn.close();
    }
  })().catch(() => {});
  try {
    const url = `http://127.0.0.1:${port}`;
    const env = { OD_RELAY: url, OD_KEY: `od_client_${"A".repeat(43)}`, OD_CONFIG_DIR: "/none" };
    const out = await od(["pipe", "edge-1", "ssh"], { env });
    assertOneSentence(
      out,
      new RegExp(
        `cannot reach relay at ${url}: the relay 127.0.0.1:${port} closed the connection during`,
      ),
    );
    doesNotMatch(out.stderr, /TLS|--ca/);
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("od pipe ends when the link closes while it handles the device's answer", async () => {
  // A relay that answers OPENED, and closes the tunnel while od pipe is busy with the answer.
  await using relay = closingRelay();
  const stdin = Promise.withResolvers<null>(); // stdin that stays open, as ssh's does
  const io: ByteIO = {
    read: () => stdin.promise,
    write: (p) => Promise.resolve(p.length),
    closeWrite: () => {},
    close: () => stdin.resolve(null),
  };
  try {
    const pipe = runPipe({
      target: { url: relay.url, secret: `od_client_${"A".repeat(43)}` },
      device: "edge-1",
      service: "ssh",
      io,
      // Busy (pinning host keys, say) until the client has taken the relay's close.
      onDevice: () => relay.closeAndWait(),
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      pipe.then(() => "ended cleanly", (err: Error) => err.message),
      new Promise<string>((r) => (timer = setTimeout(() => r("hung"), 10_000))),
    ]);
    clearTimeout(timer);
    ok(outcome !== "hung", "od pipe hung after the link closed");
    match(outcome, /tunnel to "edge-1" (closed|was reset): the relay is going away/);
  } finally {
    stdin.resolve(null);
  }
});

/**
 * A stand-in relay on a raw socket, so the test knows exactly when the client has taken its
 * close: the client answers a close frame in the same step in which it handles it, so once the
 * answer arrives here (in this same process), the client's link has closed.
 */
function closingRelay() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const conn = listener.accept();
  let closeAndWait: () => Promise<void> = () => Promise.reject(new Error("no client"));
  const served = conn.then(async (c) => {
    let buf = new Uint8Array(0);
    const more = async () => {
      const chunk = new Uint8Array(16 * 1024);
      const n = await c.read(chunk);
      if (n === null) throw new Error("the client hung up");
      buf = new Uint8Array([...buf, ...chunk.subarray(0, n)]);
    };
    const text = () => new TextDecoder().decode(buf); // the request head is ASCII
    while (!text().includes("\r\n\r\n")) await more();
    const key = /sec-websocket-key: *(\S+)/i.exec(text())![1];
    buf = buf.subarray(text().indexOf("\r\n\r\n") + 4);
    const digest = await crypto.subtle.digest(
      "SHA-1",
      new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
    );
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    const opened = encodeOpened(1, { id: "edge-1", account: "acme", hostKeys: [] });
    await c.write(
      new Uint8Array([
        ...new TextEncoder().encode(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
        ),
        0x82,
        opened.length,
        ...opened,
      ]),
    );
    closeAndWait = async () => {
      const reason = new TextEncoder().encode("the relay is going away");
      await c.write(new Uint8Array([0x88, 2 + reason.length, 0x03, 0xe8, ...reason]));
      // Read client frames (masked) until its close answer.
      for (let off = 0;;) {
        while (buf.length < off + 2) await more();
        const opcode = buf[off] & 0x0f;
        let len = buf[off + 1] & 0x7f;
        let head = 2;
        if (len === 126) {
          while (buf.length < off + 4) await more();
          len = (buf[off + 2] << 8) | buf[off + 3];
          head = 4;
        }
        head += 4; // mask
        while (buf.length < off + head + len) await more();
        if (opcode === 0x8) return;
        off += head + len;
      }
    };
    return c;
  });
  return {
    url,
    closeAndWait: () => served.then(() => closeAndWait()),
    async [Symbol.asyncDispose]() {
      listener.close();
      try {
        (await served).close();
      } catch {
        // closed already
      }
    },
  };
}
