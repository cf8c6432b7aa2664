import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  dataFrame,
  decodeFrame,
  encodeControl,
  encodeCredit,
  encodeData,
  encodeEof,
  encodeOpen,
  encodeOpened,
  encodePing,
  encodeReset,
  FrameType,
  HEADER_SIZE,
  MAX_DATA,
  MAX_FRAME_SIZE,
  MAX_WINDOW,
  peekHeader,
  ProtocolError,
  ResetCode,
  setStream,
} from "./frame.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

Deno.test("decodeFrame() round-trips every frame type", () => {
  const nonce = bytes(1, 2, 3, 4, 5, 6, 7, 8);
  assertEquals(decodeFrame(encodeOpen(7, "ssh", "1.2.3.4")), {
    type: FrameType.OPEN,
    stream: 7,
    service: "ssh",
    from: "1.2.3.4",
  });
  assertEquals(decodeFrame(encodeOpened(7)), { type: FrameType.OPENED, stream: 7, info: null });
  assertEquals(decodeFrame(encodeOpened(7, { id: "pi-1" })), {
    type: FrameType.OPENED,
    stream: 7,
    info: { id: "pi-1" },
  });
  assertEquals(decodeFrame(encodeData(0xffffffff, bytes(9, 8))), {
    type: FrameType.DATA,
    stream: 0xffffffff,
    data: bytes(9, 8),
  });
  assertEquals(decodeFrame(encodeCredit(3, 65536)), {
    type: FrameType.CREDIT,
    stream: 3,
    bytes: 65536,
  });
  assertEquals(decodeFrame(encodeEof(3)), { type: FrameType.EOF, stream: 3 });
  assertEquals(decodeFrame(encodeReset(3, ResetCode.NOT_EXPOSED, "no such service")), {
    type: FrameType.RESET,
    stream: 3,
    code: ResetCode.NOT_EXPOSED,
    reason: "no such service",
  });
  assertEquals(decodeFrame(encodeControl({ t: "hello", n: 1 })), {
    type: FrameType.CONTROL,
    stream: 0,
    message: { t: "hello", n: 1 },
  });
  assertEquals(decodeFrame(encodePing(FrameType.PING, nonce)), {
    type: FrameType.PING,
    stream: 0,
    nonce,
  });
});

Deno.test("dataFrame() leaves room for the payload after the header", () => {
  const frame = dataFrame(5, 3);
  frame.set(bytes(1, 2, 3), HEADER_SIZE);
  assertEquals(decodeFrame(frame), { type: FrameType.DATA, stream: 5, data: bytes(1, 2, 3) });
});

Deno.test("setStream() rewrites the stream id in place, also inside a larger buffer", () => {
  const outer = new Uint8Array(100);
  const frame = encodeEof(9);
  outer.set(frame, 10);
  const view = outer.subarray(10, 10 + frame.length);
  setStream(view, 12345);
  assertEquals(peekHeader(view), { type: FrameType.EOF, stream: 12345 });
});

const malformed: [string, Uint8Array, RegExp][] = [
  ["empty input", bytes(), /shorter than its header/],
  ["truncated header", bytes(FrameType.DATA, 0, 0), /shorter than its header/],
  ["oversized frame", new Uint8Array(MAX_FRAME_SIZE + 1), /exceeds/],
  ["unknown type", bytes(0x7f, 0, 0, 0, 1), /Unknown frame type 0x7f/],
  ["type zero", bytes(0, 0, 0, 0, 1), /Unknown frame type 0x00/],
  ["DATA on stream 0", bytes(FrameType.DATA, 0, 0, 0, 0, 1), /stream 0 is reserved/],
  ["empty DATA", bytes(FrameType.DATA, 0, 0, 0, 1), /empty payload/],
  ["short CREDIT", bytes(FrameType.CREDIT, 0, 0, 0, 1, 0, 1), /not 4/],
  ["zero CREDIT", encodeCreditRaw(0), /outside/],
  ["CREDIT over the largest window", encodeCreditRaw(MAX_WINDOW + 1), /outside/],
  ["OPENED with a non-JSON payload", bytes(FrameType.OPENED, 0, 0, 0, 1, 9), /not JSON/],
  ["EOF with payload", bytes(FrameType.EOF, 0, 0, 0, 1, 9), /not 0/],
  ["RESET without code", bytes(FrameType.RESET, 0, 0, 0, 1), /missing code/],
  ["CONTROL on a stream", bytes(FrameType.CONTROL, 0, 0, 0, 1, 123, 125), /must use stream 0/],
  ["CONTROL not JSON", bytes(FrameType.CONTROL, 0, 0, 0, 0, 1, 2), /not JSON/],
  ["CONTROL JSON array", textFrame(FrameType.CONTROL, 0, "[1]"), /not a JSON object/],
  ["CONTROL JSON null", textFrame(FrameType.CONTROL, 0, "null"), /not a JSON object/],
  ["OPEN without service", textFrame(FrameType.OPEN, 1, '{"from":"x"}'), /must be strings/],
  ["PING of 7 bytes", bytes(FrameType.PING, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7), /not 8/],
];

function encodeCreditRaw(n: number): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE + 4);
  buf[0] = FrameType.CREDIT;
  const view = new DataView(buf.buffer);
  view.setUint32(1, 1);
  view.setUint32(HEADER_SIZE, n);
  return buf;
}

function textFrame(type: number, stream: number, text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const buf = new Uint8Array(HEADER_SIZE + body.length);
  buf[0] = type;
  new DataView(buf.buffer).setUint32(1, stream);
  buf.set(body, HEADER_SIZE);
  return buf;
}

for (const [name, input, message] of malformed) {
  Deno.test(`decodeFrame() rejects ${name}`, () => {
    throws(() => decodeFrame(input), { name: "ProtocolError", message });
  });
}

Deno.test("decodeFrame() rejects a 1 MiB frame by its size alone", () => {
  const garbage = new Uint8Array(1024 * 1024);
  garbage[0] = FrameType.DATA;
  garbage[4] = 1;
  throws(() => decodeFrame(garbage), { name: "ProtocolError", message: /exceeds/ });
});

Deno.test("decodeFrame() accepts a DATA frame of exactly MAX_DATA bytes", () => {
  const frame = dataFrame(1, MAX_DATA);
  assertEquals(frame.length, MAX_FRAME_SIZE);
  const decoded = decodeFrame(frame);
  assertEquals(decoded.type === FrameType.DATA && decoded.data.length, MAX_DATA);
});

Deno.test("decodeFrame() never throws anything but ProtocolError on random input", () => {
  for (let i = 0; i < 20_000; i++) {
    const input = crypto.getRandomValues(new Uint8Array(Math.floor(Math.random() * 64)));
    if (i % 2 === 0 && input.length > 0) input[0] = 1 + (i % 9); // valid types, random rest
    try {
      decodeFrame(input);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
    }
  }
});

Deno.test("encodeReset() cuts an overlong reason so the frame stays small", () => {
  const decoded = decodeFrame(encodeReset(1, ResetCode.CANCELLED, "x".repeat(10_000)));
  assertEquals(decoded.type === FrameType.RESET && decoded.reason.length, 512);
});

Deno.test("encodeControl() refuses a message bigger than a frame", () => {
  throws(() => encodeControl({ big: "x".repeat(MAX_DATA) }), RangeError);
});
