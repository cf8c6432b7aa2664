import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { parseSearch, tokenize } from "./search.ts";
import { ago, parseSpan, span } from "./time.ts";

Deno.test("tokenize() splits the search box as a shell would split od list's arguments", () => {
  const cases: [string, string[]][] = [
    ["", []],
    ["  site=zurich   group ", ["site=zurich", "group"]],
    [`site="new york" on:version!=0.2.0`, ["site=new york", "on:version!=0.2.0"]],
    [`note=""`, ["note="]],
    [`"a b"c d`, ["a bc", "d"]],
  ];
  for (const [text, args] of cases) assertEquals(tokenize(text), args, text);
  throws(() => tokenize(`site="zurich`), /a quote that is not closed/);
});

Deno.test("parseSearch() gives the CLI's sentence for a malformed filter and caps their number", () => {
  assertEquals(parseSearch("site=zurich group").filters, [
    { key: "site", op: "=", value: "zurich" },
    { key: "group", op: "has" },
  ]);
  throws(() => parseSearch("=x"), { message: `filter "=x" must be KEY=VALUE, KEY!=VALUE or KEY` });
  throws(() => parseSearch(Array(33).fill("a").join(" ")), /at most 32 filters/);
});

Deno.test("times read as spans in their largest unit", () => {
  assertEquals([span(0), span(999), span(42_000), span(3 * 60_000 + 5), span(26 * 3_600_000)], [
    "0 s",
    "0 s",
    "42 s",
    "3 min",
    "1 d",
  ]);
  const now = Date.parse("2026-12-03T12:00:00Z");
  assertEquals(ago("2026-12-03T11:57:00Z", now), "3 min ago");
  assertEquals(ago("2026-12-03T12:00:00Z", now), "just now");
  assertEquals(ago(null, now), "—");
  assertEquals([parseSpan("30m"), parseSpan("2h"), parseSpan("7d"), parseSpan("x")], [
    1_800_000,
    7_200_000,
    604_800_000,
    null,
  ]);
});
