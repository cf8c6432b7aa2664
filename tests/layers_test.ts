/**
 * The layer rule of the README, checked on every import in src/: protocol ← transport and
 * store ← roles ← main. src/protocol is pure and imports nothing outside itself; no role
 * (relay, daemon, client, admin) imports another; and no shared layer (protocol, transport,
 * store, shared, cli) imports a role.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url).pathname;
const ROLES = ["relay", "daemon", "client", "admin"];
const LAYERS = ["protocol", "transport", "store", "shared", "cli"];

/** The import specifiers in a module's source: static, re-exports and dynamic imports. */
export function importsOf(source: string): string[] {
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;
  // A specifier is a path or a URL-like name; this skips `from":"` inside a JSON string.
  return [...source.matchAll(re)].map((m) => m[1]).filter((s) => /^(\.|\/|[a-z]+:)/.test(s));
}

/** The top folder under src/ of a path relative to src/ ("relay/api.ts" → "relay"). */
function folderOf(rel: string): string {
  return rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : "";
}

/** Every import that breaks the rule, as "file: specifier (why)". Paths are relative to src/. */
export function violations(files: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [file, source] of files) {
    const from = folderOf(file);
    for (const spec of importsOf(source)) {
      const relative = spec.startsWith(".");
      const target = relative ? new URL(spec, `file:///src/${file}`).pathname : null;
      const to = target?.startsWith("/src/") ? folderOf(target.slice(5)) : null;
      const why = from === "protocol" && (to !== "protocol") &&
          !(file.endsWith("_test.ts") && spec.startsWith("node:assert"))
        ? "src/protocol imports nothing outside itself"
        : ROLES.includes(from) && to !== null && ROLES.includes(to) && to !== from
        ? "a role never imports another role"
        : LAYERS.includes(from) && to !== null && ROLES.includes(to)
        ? "a layer never imports a role"
        : null;
      if (why) out.push(`${file}: ${spec} (${why})`);
    }
  }
  return out;
}

function readTree(dir: string, rel = "", out = new Map<string, string>()): Map<string, string> {
  for (const entry of Deno.readDirSync(`${dir}${rel}`)) {
    const path = `${rel}${entry.name}`;
    if (entry.isDirectory) readTree(dir, `${path}/`, out);
    else if (path.endsWith(".ts")) out.set(path, Deno.readTextFileSync(`${dir}${path}`));
  }
  return out;
}

Deno.test("importsOf() finds static, multi-line, re-exported and dynamic imports", () => {
  const source = `import { a } from "./a.ts";
import {
  b,
} from "../store/b.ts";
export { c } from "./c.ts";
import "./side.ts";
const d = await import("../relay/d.ts");
// not an import: "./e.ts"
const json = '{"from":"x"}';`;
  assertEquals(importsOf(source), [
    "./a.ts",
    "../store/b.ts",
    "./c.ts",
    "./side.ts",
    "../relay/d.ts",
  ]);
});

Deno.test("violations() flags each kind of forbidden import", () => {
  const files = new Map([
    ["client/props.ts", `import { x } from "../daemon/state.ts";`],
    ["client/ok.ts", `import { x } from "../store/local_props.ts"; import "./other.ts";`],
    ["protocol/frame.ts", `import { y } from "../shared/log.ts";`],
    ["protocol/io.ts", `import { z } from "node:fs";`],
    ["protocol/ok.ts", `import { z } from "./frame.ts";`],
    ["protocol/ok_test.ts", `import { ok } from "node:assert/strict";`],
    ["store/bad.ts", `import type { R } from "../relay/context.ts";`],
    ["relay/ok.ts", `import { p } from "../protocol/api.ts"; import "../cli/args.ts";`],
  ]);
  assertEquals(violations(files), [
    "client/props.ts: ../daemon/state.ts (a role never imports another role)",
    "protocol/frame.ts: ../shared/log.ts (src/protocol imports nothing outside itself)",
    "protocol/io.ts: node:fs (src/protocol imports nothing outside itself)",
    "store/bad.ts: ../relay/context.ts (a layer never imports a role)",
  ]);
});

Deno.test("src/ keeps the layer rule: protocol ← transport and store ← roles ← main", () => {
  assertEquals(violations(readTree(SRC)), []);
});
