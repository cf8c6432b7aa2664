import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { parse } from "./args.ts";

const spec = {
  json: { type: "boolean" as const },
  verbose: { type: "boolean" as const, short: "v" },
  all: { type: "boolean" as const, short: "a" },
  data: { type: "string" as const, short: "d" },
  service: { type: "string" as const, multiple: true },
};

const ok: [string[], Record<string, unknown>, string[]][] = [
  [["--json", "x"], { json: true }, ["x"]],
  [["--data", "/d", "y"], { data: "/d" }, ["y"]],
  [["--data=/d=e"], { data: "/d=e" }, []],
  [["-d", "/d"], { data: "/d" }, []],
  [["-d/d"], { data: "/d" }, []],
  [["-va"], { verbose: true, all: true }, []],
  [["-vd/x"], { verbose: true, data: "/x" }, []],
  [["--service", "a=1", "--service=b=2"], { service: ["a=1", "b=2"] }, []],
  [["a", "--", "--json", "-v"], {}, ["a", "--json", "-v"]],
  [["-"], {}, ["-"]],
];

for (const [args, values, positionals] of ok) {
  Deno.test(`parse() reads ${JSON.stringify(args)}`, () => {
    assertEquals(parse(args, spec, "usage"), { values, positionals });
  });
}

const bad: [string[], RegExp][] = [
  [["--nope"], /unknown option --nope/],
  [["-x"], /unknown option -x/],
  [["--data"], /option --data needs a value/],
  [["--data", "--json"], /option --data needs a value/],
  [["--json=yes"], /takes no value/],
  // Names Object.prototype has are not options.
  [["--constructor"], /unknown option --constructor/],
  [["--toString=x"], /unknown option --toString/],
  [["--__proto__"], /unknown option --__proto__/],
];

for (const [args, message] of bad) {
  Deno.test(`parse() refuses ${JSON.stringify(args)}`, () => {
    throws(() => parse(args, spec, "usage"), { name: "UsageError", message });
  });
}

Deno.test("parse() turns --help and -h into HelpRequested carrying the usage", () => {
  throws(() => parse(["x", "--help"], spec, "the usage"), {
    name: "HelpRequested",
    usage: "the usage",
  });
  throws(() => parse(["-h"], spec, "u"), { name: "HelpRequested" });
});

Deno.test("parse() refuses positionals where none are allowed", () => {
  throws(() => parse(["x"], spec, "u", { positionals: false }), /unexpected argument "x"/);
});
