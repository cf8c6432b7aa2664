/**
 * The link emulator (scripts/linkem.ts) as its own process, measured from outside: delay and
 * rate are what it is for, so these tests check the achieved figures against the settings.
 * Lower bounds are strict (it must never be faster than the link); upper bounds leave room for
 * a busy machine, where the scheduler wakes late.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { startLinkem } from "../scripts/linkem/control.ts";
import { MSS, OVERHEAD } from "../scripts/linkem/link.ts";
import { echoServer } from "./_fleet.ts";
import { randomBytes } from "./_harness.ts";

const LINK = { rate: 20e6, delayMs: 25 };
const RTT = 2 * LINK.delayMs;
const PAYLOAD_BPS = (LINK.rate * MSS) / (MSS + OVERHEAD); // what TCP payload gets of the rate
const LATE_MS = 8; // how late a ping-pong may come back on a loaded 2-core machine

/** Round trips of one byte on `conn`, `count` of them, in ms. */
async function pingPong(conn: Deno.Conn, count: number): Promise<number[]> {
  const b = new Uint8Array(1);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await conn.write(b);
    if ((await conn.read(b)) === null) throw new Error("the echo closed");
    times.push(performance.now() - started);
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A server on 127.0.0.1 that discards everything and reports when the peer half-closed. */
function sink() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const result = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(64 * 1024);
    let bytes = 0;
    let first = 0;
    let last = 0;
    try {
      for (let n; (n = await conn.read(buf)) !== null;) {
        last = performance.now();
        if (bytes === 0) first = last;
        bytes += n;
      }
    } catch {
      bytes = -1; // reset: a test that cut the transfer short
    }
    conn.close();
    listener.close();
    return { bytes, ms: last - first };
  })();
  return { port: (listener.addr as Deno.NetAddr).port, result };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

Deno.test("a 1-byte ping-pong over 25 ms each way takes 50 ms, never less", async () => {
  await using echo = echoServer();
  await using emu = await startLinkem(LINK, { toDevice: { echo: echo.port } });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.echo });
  conn.setNoDelay(true);
  const times = await pingPong(conn, 30);
  const [first, rest] = [times[0], times.slice(1)];
  console.log(`first ${first.toFixed(1)} ms (handshake), then median ${median(rest).toFixed(2)}`);
  ok(first >= 2 * RTT - 1, `the first byte waited for the handshake: ${first} ms`); // timer rounding
  ok(Math.min(...rest) >= RTT, `a round trip took ${Math.min(...rest)} ms`);
  ok(median(rest) < RTT + LATE_MS, `median round trip ${median(rest)} ms`);
});

Deno.test("a bulk transfer runs at the link's rate", async () => {
  const s = sink();
  await using emu = await startLinkem(LINK, { toDevice: { sink: s.port } });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.sink });
  const total = 4 * 1024 * 1024; // 1.7 s at 20 Mbit/s
  await writeAll(conn, new Uint8Array(total));
  await conn.closeWrite();
  const { bytes, ms } = await s.result;
  const bps = (bytes * 8 * 1000) / ms;
  const stats = await emu.stats();
  console.log(
    `${(bps / 1e6).toFixed(2)} Mbit/s of payload (expected ${(PAYLOAD_BPS / 1e6).toFixed(2)}), ` +
      `queue peaked at ${stats.down.maxQueue} packets`,
  );
  assertEquals(bytes, total);
  ok(bps <= PAYLOAD_BPS * 1.02, `faster than the link: ${bps}`);
  ok(bps >= PAYLOAD_BPS * 0.9, `slower than the link: ${bps}`);
  ok(stats.down.maxQueue <= 100 + 4, `the queue held ${stats.down.maxQueue} packets`);
});

Deno.test("a keystroke on one connection does not queue behind a bulk transfer on another", async () => {
  await using echo = echoServer();
  const s = sink();
  await using emu = await startLinkem(LINK, { toDevice: { echo: echo.port, sink: s.port } });
  const bulk = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.sink });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.echo });
  conn.setNoDelay(true);
  await pingPong(conn, 1); // the handshake
  const block = new Uint8Array(64 * 1024);
  const sending = (async () => {
    while (true) await writeAll(bulk, block);
  })().catch(() => {}); // ends when the test closes the connection
  await new Promise((r) => setTimeout(r, 500)); // lets the bulk transfer fill the queue
  const times = await pingPong(conn, 40);
  const { down } = await emu.stats();
  bulk.close(); // a reset: the megabytes still buffered need not trickle through
  await sending;
  await s.result;
  const worst = Math.max(...times);
  console.log(`under bulk: median ${median(times).toFixed(1)} ms, worst ${worst.toFixed(1)} ms`);
  ok(down.maxQueue >= 90, `the bulk transfer never filled the queue: ${down.maxQueue}`);
  // A keystroke queued behind the full 100-packet queue would wait ~60 ms more than the RTT; a
  // busy machine's scheduling hiccups add a few ms to single samples, not to the median.
  ok(median(times) < RTT + LATE_MS, `keystrokes took ${median(times)} ms (median)`);
  ok(worst < RTT + 30, `a keystroke waited ${worst} ms`);
});

Deno.test("bytes cross unchanged both ways and the half-close follows them", async () => {
  await using echo = echoServer();
  await using emu = await startLinkem({ rate: 100e6, delayMs: 5, loss: 0.01 }, {
    toDevice: { echo: echo.port },
  });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.echo });
  const data = randomBytes(3 * 1024 * 1024);
  const writing = writeAll(conn, data).then(() => conn.closeWrite());
  const back = new Uint8Array(data.length);
  let got = 0;
  for (let n; (n = await conn.read(back.subarray(got))) !== null;) {
    got += n;
    if (got === back.length) {
      assertEquals(await conn.read(new Uint8Array(1)), null); // the echo's half-close
      break;
    }
  }
  await writing;
  const { up, down } = await emu.stats();
  console.log(`lost and retransmitted: ${down.lost} down, ${up.lost} up`);
  assertEquals(got, data.length);
  ok(back.every((b, i) => b === data[i]), "the bytes came back changed");
  ok(up.lost + down.lost > 0, "1% loss lost nothing");
});

Deno.test("a receiver that stops reading stops the sender", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using emu = await startLinkem({ rate: 1e9, delayMs: 1 }, {
    toDevice: { idle: (listener.addr as Deno.NetAddr).port },
  });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: emu.ports.idle });
  using idle = await listener.accept(); // never read
  listener.close();
  let written = 0;
  const block = new Uint8Array(256 * 1024);
  const writing = (async () => {
    try {
      while (true) written += await conn.write(block);
    } catch {
      // closed at the end of the test
    }
  })();
  // The writer stalls once the emulator's window and the sockets' buffers are full.
  let last = -1;
  while (written !== last) {
    last = written;
    await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`the sender stalled after ${(written / 1048576).toFixed(1)} MiB`);
  ok(written < 64 * 1024 * 1024, `the sender wrote ${written} bytes into a receiver not reading`);
  conn.close();
  await writing;
  void idle;
});
