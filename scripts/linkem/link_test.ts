/**
 * The bottleneck model in virtual time: arrival times follow from rate, headers and delay;
 * queued connections take turns per packet; a full queue admits only thin flows; a loss holds
 * its connection's later bytes back by a round trip; the FIN arrives after the data.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { Flow, Link, type LinkParams, MSS, OVERHEAD } from "./link.ts";

const params: LinkParams = { rateBps: 20e6, delayMs: 25, queuePackets: 100, loss: 0 };
const wireMs = (bytes: number) => ((bytes + OVERHEAD) * 8 * 1000) / params.rateBps;
const close = (a: number, b: number, what: string) =>
  ok(Math.abs(a - b) < 1e-6, `${what}: ${a} is not ${b}`);

/** Runs the link until nothing is left to happen; returns when each flow's bytes arrived. */
function drain(link: Link, flows: Flow[], from: number): Map<Flow, [number, number][]> {
  const seen = new Map<Flow, [number, number][]>(flows.map((f) => [f, []]));
  for (const f of flows) f.onRelease = () => seen.get(f)!.push([now, f.released]);
  let now = from;
  for (let step = 0; step < 1e6; step++) {
    const next = link.nextEvent();
    if (next === Infinity) return seen;
    now = Math.max(now, next);
    link.transmit(now);
    link.release(now);
  }
  throw new Error("the link never went quiet");
}

Deno.test("a packet arrives its wire time plus the delay after it was handed over", () => {
  const link = new Link(params);
  const flow = new Flow();
  link.enqueue(flow, 1, false, 1000);
  const [[at, bytes]] = drain(link, [flow], 1000).get(flow)!;
  close(at, 1000 + wireMs(1) + 25, "arrival");
  assertEquals(bytes, 1);
});

Deno.test("a bulk transfer arrives at the link's rate, headers included", () => {
  const link = new Link({ ...params, queuePackets: 10_000 });
  const flow = new Flow();
  const packets = 1000;
  link.enqueue(flow, packets * MSS, false, 0);
  const arrivals = drain(link, [flow], 0).get(flow)!;
  const [lastAt, total] = arrivals.at(-1)!;
  assertEquals(total, packets * MSS);
  close(lastAt, packets * wireMs(MSS) + 25, "last arrival");
  assertEquals(link.stats().packets, packets);
});

Deno.test("a full queue holds a backlogged flow back but admits a thin one", () => {
  const link = new Link(params);
  const bulk = new Flow();
  const thin = new Flow();
  link.enqueue(bulk, 101 * MSS, false, 0); // one packet goes on the wire, 100 wait
  assertEquals(link.queuedPackets, 100);
  assertEquals(link.admits(bulk), false);
  assertEquals(link.admits(thin), true);
  link.transmit(wireMs(MSS)); // the next packet starts: room for one
  assertEquals(link.admits(bulk), true);
});

Deno.test("connections with queued bytes take turns, one packet each", () => {
  const link = new Link(params);
  const bulk = new Flow();
  const thin = new Flow();
  link.enqueue(bulk, 100 * MSS, false, 0);
  link.enqueue(thin, 1, false, 0.1); // while bulk's first packet is on the wire
  const seen = drain(link, [bulk, thin], 0.1);
  // The keystroke goes right after the packet on the wire, not after the 99 queued behind it.
  close(seen.get(thin)![0][0], wireMs(MSS) + wireMs(1) + 25, "keystroke arrival");
  assertEquals(seen.get(bulk)!.at(-1)![1], 100 * MSS);
});

Deno.test("a lost packet and every later byte of its connection arrive a round trip late", () => {
  const link = new Link({ ...params, loss: 0.5 });
  const draws = [0.9, 0.1, 0.9, 0.9]; // the second packet is lost
  link.random = () => draws.shift() ?? 0.9;
  const flow = new Flow();
  link.enqueue(flow, 4 * MSS, false, 0);
  const arrivals = drain(link, [flow], 0).get(flow)!;
  const w = wireMs(MSS);
  close(arrivals[0][0], w + 25, "first packet");
  assertEquals(arrivals[0][1], MSS);
  // The lost one crossed twice and waits a round trip; the two behind it wait for it.
  const lostAt = 3 * w + 25 + 50;
  close(arrivals[1][0], lostAt, "lost packet");
  assertEquals(arrivals.at(-1)![1], 4 * MSS);
  ok(arrivals.at(-1)![0] - lostAt < 1, "the packets behind it arrive right after it");
  assertEquals(link.stats().lost, 1);
});

Deno.test("the FIN arrives after the last byte", () => {
  const link = new Link(params);
  const flow = new Flow();
  link.enqueue(flow, 3000, false, 0);
  link.enqueue(flow, 0, true, 0);
  let finAt = -1;
  let bytesAtFin = -1;
  flow.onRelease = () => {
    if (flow.finReleased && finAt < 0) [finAt, bytesAtFin] = [link.nextEvent(), flow.released];
  };
  for (let now = 0; link.nextEvent() !== Infinity;) {
    now = link.nextEvent();
    link.transmit(now);
    link.release(now);
  }
  assertEquals(bytesAtFin, 3000);
  ok(flow.finReleased);
});

Deno.test("a flow taken off the link frees its queue", () => {
  const link = new Link(params);
  const flow = new Flow();
  link.enqueue(flow, 50 * MSS, false, 0);
  link.forget(flow);
  assertEquals(link.queuedPackets, 0);
  assertEquals(link.nextEvent(), Infinity);
});
