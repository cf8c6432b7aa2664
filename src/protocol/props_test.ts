import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import {
  keyProblem,
  MAX_PROPS,
  MAX_TOMBSTONES,
  mergeChanges,
  type PropValue,
  valueProblem,
} from "./props.ts";

const map = (entries: [string, string | null, number][]) =>
  new Map<string, PropValue>(entries.map(([k, v, at]) => [k, { v, at }]));

Deno.test("mergeChanges(): a removal of a key that is not present stores nothing", () => {
  const current = map([["gone", null, 5]]);
  const r = mergeChanges(current, [{ k: "never", v: null, at: 9 }, { k: "gone", v: null, at: 9 }]);
  assertEquals([r.applied, r.rejected, r.dropped], [[], [], []]);
  assertEquals(current, map([["gone", null, 5]]));
});

Deno.test("mergeChanges(): a removal of a present key leaves a tombstone an older set cannot pass", () => {
  const current = map([["a", "1", 5]]);
  mergeChanges(current, [{ k: "a", v: null, at: 10 }, { k: "a", v: "old", at: 7 }]);
  assertEquals(current.get("a"), { v: null, at: 10 });
});

Deno.test("mergeChanges(): tombstones beyond MAX_TOMBSTONES are dropped, oldest first", () => {
  const current = new Map<string, PropValue>();
  for (let round = 0; round < 3; round++) {
    const keys = Array.from({ length: MAX_PROPS }, (_, i) => `r${round}-${i}`);
    mergeChanges(current, keys.map((k) => ({ k, v: "x", at: round * 10 + 1 })));
    const r = mergeChanges(current, keys.map((k) => ({ k, v: null, at: round * 10 + 2 })));
    ok(current.size <= MAX_PROPS + MAX_TOMBSTONES, `${current.size} rows`);
    if (round > 0) assertEquals(r.dropped.length, MAX_PROPS);
  }
  ok([...current.keys()].every((k) => k.startsWith("r2-")), "the newest removals are kept");
});

Deno.test("mergeChanges(): a set beyond the limit is rejected; a tombstone does not count", () => {
  const current = new Map<string, PropValue>();
  mergeChanges(
    current,
    Array.from({ length: MAX_PROPS }, (_, i) => ({ k: `k${i}`, v: "1", at: 1 })),
  );
  mergeChanges(current, [{ k: "k0", v: null, at: 2 }]);
  const r = mergeChanges(current, [{ k: "n1", v: "1", at: 3 }, { k: "n2", v: "1", at: 3 }]);
  assertEquals(r.rejected.map((c) => c.k), ["n2"]);
});

Deno.test("valueProblem() refuses NUL, lone surrogates and more than 4 KiB of UTF-8", () => {
  assertEquals(valueProblem("k", 'a\x01"\\\u2028\u{1f600}'), null);
  ok(valueProblem("k", "a\x00b")?.includes("NUL"));
  ok(valueProblem("k", "a\ud800b")?.includes("lone surrogate"));
  assertEquals(valueProblem("k", "é".repeat(2048)), null);
  ok(valueProblem("k", "é".repeat(2049))?.includes("4098 bytes"));
  ok(valueProblem("k", "x".repeat(1_000_000))?.includes("limit is 4096"));
});

Deno.test("keyProblem() refuses __proto__, which an object would silently drop", () => {
  ok(keyProblem("__proto__"));
  assertEquals(keyProblem("constructor"), null);
  assertEquals(keyProblem("_proto_"), null);
});
