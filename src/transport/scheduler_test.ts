import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { dataFrame, decodeFrame, encodeCredit, encodePing, FrameType } from "../protocol/frame.ts";
import { type FrameLink, linkPair } from "./link.ts";
import { LinkScheduler } from "./scheduler.ts";

/** A scheduler on one end of an in-memory link, and what arrives at the other end. */
function setup(answerDelayMs: number | null) {
  const [a, b] = linkPair();
  const scheduler = new LinkScheduler(a);
  const arrived: { type: number; stream: number; size: number }[] = [];
  b.onFrame = (raw) => {
    const f = decodeFrame(raw);
    arrived.push({ type: f.type, stream: f.stream, size: raw.length });
    if (f.type === FrameType.PING && answerDelayMs !== null) {
      setTimeout(() => b.send(encodePing(FrameType.PONG, f.nonce)), answerDelayMs);
    }
  };
  a.onFrame = (raw) => {
    const f = decodeFrame(raw);
    if (f.type === FrameType.PONG) scheduler.pong(f.nonce);
  };
  return { a, b, scheduler, arrived };
}

const data = (stream: number, size: number) => dataFrame(stream, size);
const idle = () => new Promise((r) => setTimeout(r, 20));

function close(...links: FrameLink[]) {
  for (const l of links) l.close();
}

Deno.test("control frames and a light stream go ahead of a queued transfer", async () => {
  const { a, b, scheduler, arrived } = setup(5); // a 5 ms path
  for (let i = 0; i < 40; i++) scheduler.stream(1, data(1, 64 * 1024)); // 2.5 MiB of bulk
  scheduler.stream(2, data(2, 1)); // a keystroke echo
  scheduler.urgent(encodeCredit(3, 1000));
  const deadline = Date.now() + 10_000;
  const bulkArrived = () => arrived.filter((f) => f.stream === 1 && f.type === FrameType.DATA);
  while (bulkArrived().length < 40 && Date.now() < deadline) await idle();
  const order = arrived.filter((f) => f.type !== FrameType.PING).map((f) =>
    `${f.type}:${f.stream}`
  );
  // Only the transfer's first frame, handed over while the link was empty, went before the
  // credit; the keystroke went as soon as the cap let anything go, long before the rest.
  ok(order.indexOf(`${FrameType.CREDIT}:3`) <= 1, order.slice(0, 5).join(" "));
  const keystroke = order.indexOf(`${FrameType.DATA}:2`);
  ok(keystroke >= 0 && keystroke <= 4, `the keystroke went out as frame ${keystroke}`);
  assertEquals(order.filter((o) => o === `${FrameType.DATA}:1`).length, 40);
  close(a, b);
});

Deno.test("busy streams share the link fairly, in turns", async () => {
  const { a, b, scheduler, arrived } = setup(1);
  for (let i = 0; i < 30; i++) {
    scheduler.stream(1, data(1, 64 * 1024));
    scheduler.stream(2, data(2, 64 * 1024));
  }
  const deadline = Date.now() + 10_000;
  while (arrived.filter((f) => f.type === FrameType.DATA).length < 60 && Date.now() < deadline) {
    await idle();
  }
  const dataFrames = arrived.filter((f) => f.type === FrameType.DATA).map((f) => f.stream);
  assertEquals(dataFrames.length, 60);
  // In any window of ten frames neither stream has more than six.
  for (let i = 0; i + 10 <= dataFrames.length; i++) {
    const ones = dataFrames.slice(i, i + 10).filter((s) => s === 1).length;
    ok(ones >= 4 && ones <= 6, `unfair window at ${i}: ${dataFrames.slice(i, i + 10)}`);
  }
  close(a, b);
});

Deno.test("bytes in flight stay within the cap; probes measure the round trip", async () => {
  const { a, b, scheduler } = setup(15); // the peer answers 15 ms late: a 15 ms path
  let worst = 0;
  let maxCap = 0;
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < 1500) {
    while (scheduler.queued(1) < 512 * 1024) {
      scheduler.stream(1, data(1, 32 * 1024));
      sent++;
    }
    // The cap moves with what is measured; in flight never exceeds the largest cap yet plus
    // the one frame that may overshoot it.
    maxCap = Math.max(maxCap, scheduler.cap);
    worst = Math.max(worst, scheduler.inflight - maxCap);
    await new Promise((r) => setTimeout(r, 2));
  }
  ok(worst <= 32 * 1024 + 64, `in flight exceeded the cap by ${worst} bytes`);
  const rtt = scheduler.rttMs!;
  ok(rtt >= 14 && rtt < 60, `measured RTT ${rtt} ms for a 15 ms path`);
  ok(scheduler.rate > 0, "a delivery rate was measured");
  ok(sent > 10, "data kept flowing");
  close(a, b);
});

Deno.test("a stream's queued frames are forgotten when it is dropped", async () => {
  const { a, b, scheduler, arrived } = setup(1);
  for (let i = 0; i < 10; i++) scheduler.stream(5, data(5, 64 * 1024));
  scheduler.drop(5);
  assertEquals(scheduler.queued(5), 0);
  scheduler.stream(6, data(6, 10));
  const deadline = Date.now() + 2000;
  while (!arrived.some((f) => f.stream === 6) && Date.now() < deadline) await idle();
  ok(arrived.some((f) => f.stream === 6), "later streams still flow");
  ok(arrived.filter((f) => f.stream === 5).length <= 2, "dropped frames were not sent");
  close(a, b);
});
