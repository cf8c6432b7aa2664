import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { matches, parseFilters } from "./filter.ts";

const props = { site: "zurich", group: "a,b", "on:state": "online", empty: "" };

const cases: [string[], boolean][] = [
  [[], true],
  [["site=zurich"], true],
  [["site=basel"], false],
  [["site!=basel"], true],
  [["site!=zurich"], false],
  [["missing!=x"], true],
  [["missing=x"], false],
  [["site"], true],
  [["missing"], false],
  [["empty"], true],
  [["empty="], true],
  [["on:state=online", "site=zurich"], true],
  [["on:state=online", "site=basel"], false],
  [["group=a,b"], true],
  [["site=zu=rich"], false],
  // Inherited names of a plain object are not properties of a device.
  [["constructor"], false],
  [["toString"], false],
  [["hasOwnProperty"], false],
  [["constructor!=x"], true],
];

for (const [filters, expected] of cases) {
  Deno.test(`matches() ${JSON.stringify(filters)} is ${expected}`, () => {
    assertEquals(matches(props, parseFilters(filters)), expected);
  });
}

Deno.test("parseFilters() keeps everything after the first = as the value", () => {
  assertEquals(parseFilters(["k=a=b"]), [{ key: "k", op: "=", value: "a=b" }]);
});

Deno.test("parseFilters() rejects malformed filters with a sentence", () => {
  throws(() => parseFilters(["=x"]), /filter "=x" must be/);
  throws(() => parseFilters(["a b=c"]), /filter "a b=c"/);
  throws(() => parseFilters([""]), /filter ""/);
});
