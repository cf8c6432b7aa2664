import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  acceptFor,
  Assembler,
  encodeClosePayload,
  encodeFrame,
  type FrameHeader,
  headerSize,
  maskInPlace,
  MAX_CLOSE_REASON,
  Opcode,
  parseClosePayload,
  parseHeader,
  truncateUtf8,
  upgradeRequestProblem,
  upgradeResponseProblem,
  WsClose,
  type WsEvent,
  WsProtocolError,
} from "./ws_codec.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const MASK = [1, 2, 3, 4];

/** Runs frames through parseHeader + Assembler as the socket link does; returns the events. */
function decode(role: "server" | "client", input: Uint8Array, max = 1 << 20): WsEvent[] {
  const asm = new Assembler(max);
  const events: WsEvent[] = [];
  let off = 0;
  while (off < input.length) {
    const h = parseHeader(input, off, role);
    if (!h) throw new Error("incomplete header");
    asm.admit(h);
    const payload = input.slice(off + h.size, off + h.size + h.length);
    if (payload.length < h.length) throw new Error("incomplete payload");
    if (h.mask) { for (let i = 0; i < payload.length; i++) payload[i] ^= h.mask[i & 3]; }
    const e = asm.complete(h, payload);
    if (e) events.push(e);
    off += h.size + h.length;
  }
  return events;
}

function rejects(code: number, fn: () => unknown, re: RegExp) {
  throws(fn, (err: unknown) => {
    ok(err instanceof WsProtocolError, `expected WsProtocolError, got ${err}`);
    assertEquals(err.code, code);
    ok(re.test(err.message), err.message);
    return true;
  });
}

Deno.test("parseHeader() reads the three length forms and returns null until complete", () => {
  const cases: [Uint8Array, Partial<FrameHeader>][] = [
    [bytes(0x82, 5), { fin: true, opcode: 2, length: 5, size: 2, mask: null }],
    [bytes(0x02, 126, 0x01, 0x00), { fin: false, opcode: 2, length: 256, size: 4 }],
    [bytes(0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0), { length: 2 ** 32, size: 10 }],
  ];
  for (const [input, want] of cases) {
    const h = parseHeader(input, 0, "client")!;
    for (const [k, v] of Object.entries(want)) assertEquals(h[k as keyof FrameHeader], v);
    for (let cut = 0; cut < input.length; cut++) {
      assertEquals(parseHeader(input.subarray(0, cut), 0, "client"), null);
    }
  }
  const masked = parseHeader(bytes(0x82, 0x85, ...MASK), 0, "server")!;
  assertEquals([...masked.mask!], MASK);
  assertEquals(masked.size, 6);
  assertEquals(parseHeader(bytes(0x82, 0x85, 1, 2), 0, "server"), null); // mask incomplete
});

Deno.test("parseHeader() rejects what RFC 6455 forbids with the close code to send", () => {
  const table: [string, Uint8Array, "server" | "client", number, RegExp][] = [
    ["RSV1 set", bytes(0xc2, 0), "client", 1002, /reserved bits/],
    ["RSV3 set", bytes(0x92, 0), "client", 1002, /reserved bits/],
    ["opcode 0x3", bytes(0x83, 0), "client", 1002, /unknown frame opcode 0x3/],
    ["opcode 0xb", bytes(0x8b, 0), "client", 1002, /unknown frame opcode 0xb/],
    ["fragmented ping", bytes(0x09, 0), "client", 1002, /control frame is fragmented/],
    ["126-byte ping", bytes(0x89, 126, 0, 126), "client", 1002, /126 bytes; the limit is 125/],
    ["126-byte close", bytes(0x88, 126, 0, 200), "client", 1002, /limit is 125/],
    ["unmasked to server", bytes(0x82, 0), "server", 1002, /not masked/],
    ["masked to client", bytes(0x82, 0x80, ...MASK), "client", 1002, /was masked/],
    ["non-minimal 16-bit", bytes(0x82, 126, 0, 5), "client", 1002, /non-minimal/],
    ["non-minimal 64-bit", bytes(0x82, 127, 0, 0, 0, 0, 0, 0, 1, 0), "client", 1002, /minimal/],
    ["beyond 2^53", bytes(0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0), "client", 1009, /2\^53/],
  ];
  for (const [name, input, role, code, re] of table) {
    rejects(code, () => parseHeader(input, 0, role), re);
    void name;
  }
});

Deno.test("Assembler enforces fragmentation rules, text refusal and the size limit", () => {
  // A fragmented binary message with a ping in the middle (allowed by RFC 6455 §5.4).
  const events = decode(
    "client",
    new Uint8Array([
      ...bytes(0x02, 2, 1, 2),
      ...bytes(0x89, 1, 9),
      ...bytes(0x00, 1, 3),
      ...bytes(0x80, 1, 4),
    ]),
  );
  assertEquals(events, [
    { kind: "ping", payload: bytes(9) },
    { kind: "message", data: bytes(1, 2, 3, 4) },
  ]);
  rejects(1002, () => decode("client", bytes(0x80, 1, 1)), /no message to continue/);
  rejects(1002, () => decode("client", bytes(0x00, 1, 1)), /no message to continue/);
  rejects(
    1002,
    () => decode("client", new Uint8Array([...bytes(0x02, 1, 1), ...bytes(0x82, 1, 2)])),
    /new message started inside a fragmented one/,
  );
  rejects(1003, () => decode("client", bytes(0x81, 1, 65)), /text messages/);
  // The size limit applies to the header, before the payload is there, and across fragments.
  const asm = new Assembler(100);
  rejects(1009, () => asm.admit(parseHeader(bytes(0x82, 101), 0, "client")!), /101 bytes/);
  const first = parseHeader(bytes(0x02, 60), 0, "client")!;
  asm.admit(first);
  asm.complete(first, new Uint8Array(60));
  rejects(1009, () => asm.admit(parseHeader(bytes(0x80, 41), 0, "client")!), /at least 101/);
  asm.admit(parseHeader(bytes(0x80, 40), 0, "client")!); // exactly at the limit is fine
  // A header announcing 63 MiB is refused without any payload present.
  const huge = parseHeader(bytes(0x82, 127, 0, 0, 0, 0, 0x03, 0xf0, 0, 0), 0, "client")!;
  rejects(1009, () => new Assembler(65 * 1024).admit(huge), /exceeds the 66560-byte limit/);
});

Deno.test("masked frames from a client decode to their payload", () => {
  const payload = new Uint8Array(70_000).map((_, i) => (i * 31 + 7) & 0xff);
  for (const size of [0, 5, 125, 126, 65535, 65536, 70_000]) {
    const frame = encodeFrame(Opcode.BINARY, payload.subarray(0, size), true);
    assertEquals(frame.length, headerSize(size, true) + size);
    const [event] = decode("server", frame);
    assertEquals(event, { kind: "message", data: payload.subarray(0, size) });
  }
  // A server frame is unmasked and decodes on the client side.
  assertEquals(decode("client", encodeFrame(Opcode.BINARY, bytes(7, 8), false)), [
    { kind: "message", data: bytes(7, 8) },
  ]);
});

Deno.test("close payloads: codes checked, reasons cut on a UTF-8 boundary", () => {
  assertEquals(parseClosePayload(new Uint8Array(0)), { code: WsClose.NO_STATUS, reason: "" });
  assertEquals(parseClosePayload(encodeClosePayload(4400, "bad frame")), {
    code: 4400,
    reason: "bad frame",
  });
  rejects(1002, () => parseClosePayload(bytes(3)), /1-byte payload/);
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    rejects(1002, () => parseClosePayload(bytes(code >> 8, code & 0xff)), /invalid close code/);
  }
  rejects(1007, () => parseClosePayload(bytes(0x03, 0xe8, 0xff)), /not valid UTF-8/);
  // 61 two-byte characters are 122 bytes; a 62nd would straddle the 123-byte limit.
  const reason = "é".repeat(80);
  const cut = parseClosePayload(encodeClosePayload(1000, reason)).reason;
  assertEquals(cut, "é".repeat(61));
  const emoji = "😀".repeat(40); // 4 bytes each
  assertEquals(truncateUtf8(emoji, MAX_CLOSE_REASON), "😀".repeat(30));
  assertEquals(truncateUtf8("short", 123), "short");
});

Deno.test("handshake checks: accept key, upgrade headers and subprotocol", async () => {
  // The example from RFC 6455 §1.3.
  assertEquals(await acceptFor("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const good = new Headers({
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    "sec-websocket-protocol": "od.1",
  });
  assertEquals(await upgradeResponseProblem(good, key, "od.1"), null);
  const without = (name: string, value?: string) => {
    const h = new Headers(good);
    if (value === undefined) h.delete(name);
    else h.set(name, value);
    return h;
  };
  assertEquals(
    await upgradeResponseProblem(without("upgrade"), key, "od.1"),
    "its 101 lacks Upgrade: websocket",
  );
  assertEquals(
    await upgradeResponseProblem(without("connection", "keep-alive"), key, "od.1"),
    "its 101 lacks Connection: Upgrade",
  );
  ok(
    /Accept/.test(
      (await upgradeResponseProblem(without("sec-websocket-accept", "x"), key, "od.1"))!,
    ),
  );
  ok(
    /subprotocol od.1/.test(
      (await upgradeResponseProblem(without("sec-websocket-protocol"), key, "od.1"))!,
    ),
  );
  const req = new Headers({
    upgrade: "WebSocket",
    connection: "keep-alive, Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": key,
  });
  assertEquals(upgradeRequestProblem(req), null);
  req.set("sec-websocket-version", "8");
  assertEquals(upgradeRequestProblem(req), "Sec-WebSocket-Version must be 13");
  req.set("sec-websocket-version", "13");
  req.set("sec-websocket-key", "short");
  assertEquals(upgradeRequestProblem(req), "Sec-WebSocket-Key is not 16 bytes of base64");
});

Deno.test("maskInPlace masks like RFC 6455's byte rule at every alignment and length", () => {
  const mask = Uint8Array.of(0x12, 0x9a, 0x5e, 0xf1);
  for (const length of [0, 1, 3, 15, 16, 17, 31, 64, 1001]) {
    for (let offset = 0; offset < 8; offset++) {
      const buf = new Uint8Array(offset + length + 3);
      for (let i = 0; i < buf.length; i++) buf[i] = (i * 37 + 11) & 255;
      const expected = buf.slice();
      for (let i = 0; i < length; i++) expected[offset + i] ^= mask[i % 4];
      maskInPlace(buf.subarray(offset, offset + length), mask);
      assertEquals(buf, expected, `length ${length} at offset ${offset}`);
    }
  }
});
