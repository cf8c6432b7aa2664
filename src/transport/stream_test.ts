import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import {
  decodeFrame,
  encodeData,
  encodeReset,
  FrameType,
  MAX_DATA,
  MAX_WINDOW,
  ResetCode,
  STREAM_WINDOW,
} from "../protocol/frame.ts";
import { type FrameLink, linkPair } from "./link.ts";
import { type ByteIO, StreamEnd } from "./stream.ts";

/** An in-memory connection: reads `input` in chunks, collects writes, optionally slowly. */
class MemoryIO implements ByteIO {
  written: Uint8Array[] = [];
  writeClosed = false;
  closed = false;
  #offset = 0;
  #input: Uint8Array;
  #writeDelayMs: number;
  #readGate: Promise<void>;

  constructor(input: Uint8Array, { writeDelayMs = 0, readGate = Promise.resolve() } = {}) {
    this.#input = input;
    this.#writeDelayMs = writeDelayMs;
    this.#readGate = readGate;
  }

  async read(p: Uint8Array): Promise<number | null> {
    await this.#readGate;
    if (this.closed) throw new Error("closed");
    if (this.#offset >= this.#input.length) return null;
    const n = Math.min(p.length, this.#input.length - this.#offset);
    p.set(this.#input.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#writeDelayMs) await new Promise((r) => setTimeout(r, this.#writeDelayMs));
    if (this.closed) throw new Error("closed");
    this.written.push(p.slice());
    return p.length;
  }

  closeWrite(): void {
    this.writeClosed = true;
  }

  close(): void {
    this.closed = true;
  }

  output(): Uint8Array {
    const out = new Uint8Array(this.written.reduce((n, c) => n + c.length, 0));
    let off = 0;
    for (const c of this.written) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

/** Joins a StreamEnd to one side of a link, routing that side's frames to it. */
function attach(
  link: FrameLink,
  io: ByteIO,
  onBytes?: (d: "in" | "out", n: number) => void,
  maxWindow?: number,
) {
  const end = new StreamEnd({ id: 1, send: (f, s) => link.send(f, s), io, onBytes, maxWindow });
  link.onFrame = (raw) => end.handle(decodeFrame(raw));
  end.start();
  return end;
}

function random(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(size, off + 65536)));
  }
  return out;
}

Deno.test("StreamEnd carries bytes both ways and ends cleanly after EOF each way", async () => {
  const [a, b] = linkPair();
  const up = random(3 * 1024 * 1024 + 17);
  const down = random(700_001);
  const ioA = new MemoryIO(up);
  const ioB = new MemoryIO(down);
  const endA = attach(a, ioA);
  const endB = attach(b, ioB);
  assertEquals(await endA.done, null);
  assertEquals(await endB.done, null);
  assertEquals(ioB.output(), up);
  assertEquals(ioA.output(), down);
  ok(ioA.writeClosed && ioB.writeClosed, "both write sides half-closed");
});

Deno.test("StreamEnd never has more than one window in flight to a slow writer", async () => {
  const [a, b] = linkPair();
  let sent = 0;
  let written = 0;
  let maxInFlight = 0;
  const track = () => (maxInFlight = Math.max(maxInFlight, sent - written));
  const ioA = new MemoryIO(random(4 * STREAM_WINDOW));
  const ioB = new MemoryIO(new Uint8Array(0), { writeDelayMs: 2 });
  const endA = attach(a, ioA, (d, n) => {
    if (d === "out") sent += n;
    track();
  });
  const endB = attach(b, ioB, (d, n) => {
    if (d === "in") written += n;
    track();
  });
  await Promise.all([endA.done, endB.done]);
  assertEquals(written, 4 * STREAM_WINDOW);
  ok(maxInFlight <= STREAM_WINDOW, `in flight peaked at ${maxInFlight}`);
  ok(maxInFlight > STREAM_WINDOW / 2, "the window was actually used");
});

Deno.test("StreamEnd writes DATA and EOF that arrive just as its writer goes idle", async () => {
  // Regression: frames handled a few microtasks after the last write finished were once left
  // queued forever. Try every delay from 0 to 15 microtasks.
  for (let depth = 0; depth < 16; depth++) {
    let release!: () => void;
    const io = new MemoryIO(new Uint8Array(0), { readGate: new Promise(() => {}) });
    const write = io.write.bind(io);
    io.write = async (p) => {
      await new Promise<void>((r) => (release = r));
      return write(p);
    };
    const end = new StreamEnd({ id: 1, send: () => {}, io });
    end.handle({ type: FrameType.DATA, stream: 1, data: new Uint8Array([1]) });
    const later = (n: number, fn: () => void): void => {
      if (n === 0) fn();
      else queueMicrotask(() => later(n - 1, fn));
    };
    release();
    later(depth, () => {
      end.handle({ type: FrameType.DATA, stream: 1, data: new Uint8Array([2]) });
      end.handle({ type: FrameType.EOF, stream: 1 });
    });
    for (let i = 0; i < 20 && !io.writeClosed; i++) {
      await new Promise((r) => setTimeout(r, 1));
      release?.();
    }
    ok(io.writeClosed, `EOF handled ${depth} microtasks after a write was not acted on`);
    assertEquals(io.output(), new Uint8Array([1, 2]));
    end.reset(ResetCode.CANCELLED, "test over");
  }
});

Deno.test("StreamEnd resets a peer that sends more than the window allows", async () => {
  const [a, b] = linkPair();
  const ioB = new MemoryIO(new Uint8Array(0), {
    writeDelayMs: 1000,
    readGate: new Promise(() => {}),
  });
  const endB = attach(b, ioB);
  const received: number[] = [];
  a.onFrame = (raw) => {
    const f = decodeFrame(raw);
    if (f.type === FrameType.RESET) received.push(f.code);
  };
  const chunk = new Uint8Array(MAX_DATA);
  for (let i = 0; i <= STREAM_WINDOW / MAX_DATA; i++) a.send(encodeData(1, chunk));
  const ending = await endB.done;
  assertEquals(ending?.code, ResetCode.PROTOCOL);
  assertEquals(ending?.local, true);
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(received, [ResetCode.PROTOCOL]);
  ok(ioB.closed, "the connection was closed");
});

Deno.test("StreamEnd ends with the peer's reason on RESET and closes its connection", async () => {
  const [a, b] = linkPair();
  const ioB = new MemoryIO(new Uint8Array(0), { readGate: new Promise(() => {}) });
  const endB = attach(b, ioB);
  a.send(encodeReset(1, ResetCode.NOT_EXPOSED, "no such service"));
  assertEquals(await endB.done, {
    code: ResetCode.NOT_EXPOSED,
    reason: "no such service",
    local: false,
  });
  ok(ioB.closed);
});

Deno.test("a window grows on a long path when the sender reports BLOCKED, and data stays intact", async () => {
  const [a, b] = linkPair(20); // 40 ms round trip: a fixed 1 MiB window caps at 25 MiB/s
  const payload = random(24 * 1024 * 1024);
  const source = new MemoryIO(payload);
  const sink = new MemoryIO(new Uint8Array(0));
  const sender = attach(a, source, undefined, MAX_WINDOW);
  const receiver = attach(b, sink, undefined, MAX_WINDOW);
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, receiver.window)), 5);
  await sender.done;
  await receiver.done;
  clearInterval(watch);
  ok(peak > STREAM_WINDOW, `the window stayed at ${peak} bytes`);
  ok(peak <= MAX_WINDOW);
  assertEquals(sink.output().length, payload.length);
  assertEquals(sink.output(), payload);
});

Deno.test("without growing windows neither end sends BLOCKED or grants beyond the window", async () => {
  const [a, b] = linkPair(5);
  const seen: number[] = [];
  const payload = random(4 * 1024 * 1024);
  const sink = new MemoryIO(new Uint8Array(0));
  const receiver = new StreamEnd({ id: 1, send: (f) => b.send(f), io: sink });
  b.onFrame = (raw) => {
    const f = decodeFrame(raw);
    seen.push(f.type);
    receiver.handle(f);
  };
  receiver.start();
  const sender = attach(a, new MemoryIO(payload));
  await sender.done;
  await receiver.done;
  ok(!seen.includes(FrameType.BLOCKED), "no BLOCKED without negotiation");
  assertEquals(sink.output(), payload);
});
