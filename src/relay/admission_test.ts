import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { Admission } from "./admission.ts";
import { HttpError } from "./http.ts";

/** Tries `n` admissions at once; returns how many passed at once, queued, and the refusals. */
async function burst(a: Admission, n: number) {
  let passed = 0;
  const waits: number[] = [];
  const queued: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const p = a.admit();
    let settled = false;
    p.then(() => (settled = true), () => (settled = true));
    await Promise.resolve(); // an immediate grant or refusal settles within a microtask
    await Promise.resolve();
    if (!settled) queued.push(p);
    else {
      try {
        await p;
        passed++;
      } catch (err) {
        ok(err instanceof HttpError && err.status === 503);
        waits.push(Number(err.headers["retry-after"]));
      }
    }
  }
  return { passed, queued, waits };
}

Deno.test("Admission admits a burst, queues up to a second's worth, then spreads the rest", async () => {
  // The clock stands still during the burst, so a slow machine sees the same tokens and the same
  // calendar as a fast one; it then moves a second on so the queue drains.
  let at = Date.now();
  const a = new Admission({
    perSecond: 100,
    burst: 50,
    maxWaitMs: 200,
    maxWindowS: 60,
    clock: () => at,
  });
  const { passed, queued, waits } = await burst(a, 1000);
  assertEquals(passed, 50);
  assertEquals(queued.length, 20); // 200 ms at 100 per second
  assertEquals(a.queueLength, 20);
  assertEquals(waits.length, 930);
  // At most 80 (80% of the rate) are told to come back in any one second, so returns spread.
  const perSecond = new Map<number, number>();
  for (const w of waits) perSecond.set(w, (perSecond.get(w) ?? 0) + 1);
  ok(Math.max(...perSecond.values()) <= 80, JSON.stringify([...perSecond]));
  ok(Math.max(...waits) >= 930 / 80, `returns spread over ${Math.max(...waits)} s`);
  ok(Math.min(...waits) >= 1);
  at += 1000;
  await Promise.all(queued); // the queue drains as tokens come in
  assertEquals(a.queueLength, 0);
  a.close();
});

Deno.test("Admission.close() releases queued links", async () => {
  const a = new Admission({ perSecond: 1, burst: 1, maxWaitMs: 5000 });
  await a.admit();
  const waiting = a.admit();
  assertEquals(a.queueLength, 1);
  a.close();
  await waiting;
});
