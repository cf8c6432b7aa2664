/**
 * What can be proved here about `deno compile` (its runtime base binary is downloaded from
 * dl.deno.land, which this machine cannot reach): the module graph is local and complete (local
 * files, node: built-ins and the pinned npm:postgres, which deno compile embeds), so the
 * binary embeds everything; every dynamic import is a literal the compiler follows; and the
 * scripts/od shim runs with exactly the permissions the compiled binary gets.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { RUN_PERMISSIONS, V8_FLAGS } from "../src/cli/self.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("the module graph of main.ts is local files, node: built-ins and the pinned PostgreSQL driver", async () => {
  const out = await new Deno.Command("deno", {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  ok(out.success);
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; dependencies?: { specifier: string; isDynamic?: boolean }[] }[];
  };
  const schemes = new Set(info.modules.map((m) => m.specifier.split(":")[0]));
  assertEquals([...schemes].sort(), ["file", "node", "npm"]);
  // The one npm package (deno compile and deno bundle embed it) is the exact pinned version.
  const npm = info.modules.map((m) => m.specifier).filter((s) => s.startsWith("npm:"));
  assertEquals(npm, ["npm:/postgres@3.4.9"]);
  // Every command module is imported dynamically, by a literal path the compiler can embed.
  const loaded = new Set(info.modules.map((m) => m.specifier));
  // Resolved against the module that imports it (install.ts is loaded by its role's command).
  const dynamic = info.modules.flatMap((m) =>
    (m.dependencies ?? []).filter((d) => d.isDynamic).map((d) => new URL(d.specifier, m.specifier))
  );
  ok(dynamic.length >= 10, "commands are loaded lazily");
  for (const d of dynamic) ok(loaded.has(d.href), `${d.href} is in the graph`);
});

Deno.test("scripts/od and the units od installs run with the same permissions and V8 flags as the compiled binary", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const flags = (cmd: string) =>
    cmd.split(/\s+/).filter((w) => /^--(allow-|v8-flags)/.test(w)).sort();
  const shim = await Deno.readTextFile(`${ROOT}/scripts/od`);
  const shimFlags = flags(shim.replace(/\\\n/g, " "));
  for (const task of ["compile", "compile:arm64"]) {
    assertEquals(flags(config.tasks[task]), shimFlags, `deno task ${task}`);
  }
  // Units written by od daemon install and the bundle's ProxyCommand run deno with these.
  assertEquals([...RUN_PERMISSIONS, ...V8_FLAGS].sort(), shimFlags, "RUN_FLAGS in src/cli/self.ts");
  ok(shimFlags.includes("--v8-flags=--max-semi-space-size=2"), "the small young generation");
  ok(config.tasks["compile:arm64"].includes("aarch64-unknown-linux-gnu"));
  ok(config.tasks.compile.includes("x86_64-unknown-linux-gnu"));
  ok(!shimFlags.includes("--allow-ffi"), "no FFI: nothing native beyond the runtime");
});
