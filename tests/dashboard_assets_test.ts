/**
 * The dashboard as the relay carries it: the committed src/relay/dashboard/assets.ts is what
 * web/ builds to; the browser code never parses HTML and imports only itself and src/protocol;
 * the relay serves the shell and the assets with the CSP, cached by content hash; and the single
 * JavaScript file of `deno task bundle` serves the same dashboard by itself.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { buildAssets, OUTPUT } from "../scripts/build_web.ts";
import { ASSETS, INDEX_HTML } from "../src/relay/dashboard/assets.ts";
import { Proc, tempDir } from "./_harness.ts";
import { startRelay } from "./_fleet.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function webSources(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(`${ROOT}/web`)) {
    if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) {
      out.set(e.name, await Deno.readTextFile(`${ROOT}/web/${e.name}`));
    }
  }
  return out;
}

Deno.test("the committed dashboard assets are what web/ builds to (deno task web)", async () => {
  const built = await buildAssets();
  const committed = await Deno.readTextFile(`${ROOT}/${OUTPUT}`);
  ok(built === committed, `${OUTPUT} is stale: run deno task web and commit it`);
});

Deno.test("the browser code never parses HTML and imports only web/ and src/protocol", async () => {
  const parsing =
    /\.(innerHTML|outerHTML|insertAdjacentHTML|createContextualFragment)\b|document\.write|DOMParser|\beval\(|new Function\(/;
  let imports = 0;
  for (const [file, source] of await webSources()) {
    const code = source.replace(/^\s*(\*|\/\/).*$/gm, ""); // comments may name them
    ok(!parsing.test(code), `web/${file} parses HTML or code: ${code.match(parsing)?.[0]}`);
    const specs = [...source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/gms)];
    imports += specs.length;
    for (const [, spec] of specs) {
      ok(
        spec.startsWith("./") || spec.startsWith("../src/protocol/"),
        `web/${file} imports ${spec}: the browser gets only web/ and the pure protocol layer`,
      );
    }
  }
  ok(imports > 20, `only ${imports} imports found: the pattern no longer matches them`);
});

Deno.test("the relay serves the shell and assets with the CSP, by content hash", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  for (const path of ["/", "/device/pi-1", "/keys", "/audit", "/shares"]) {
    const res = await fetch(`${relay.url}${path}`);
    assertEquals([res.status, await res.text()], [200, INDEX_HTML], path);
    match(res.headers.get("content-security-policy")!, /^default-src 'self'; script-src 'self';/);
    assertEquals(res.headers.get("cache-control"), "no-store");
    assertEquals(res.headers.get("x-frame-options"), "DENY");
  }
  for (const [name, asset] of Object.entries(ASSETS)) {
    ok(INDEX_HTML.includes(`/assets/${name}?v=${asset.hash}`), `the shell names ${name}'s hash`);
    const res = await fetch(`${relay.url}/assets/${name}?v=${asset.hash}`);
    assertEquals([res.status, await res.text()], [200, asset.body]);
    assertEquals(res.headers.get("content-type"), asset.type);
    assertEquals(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const again = await fetch(`${relay.url}/assets/${name}`, {
      headers: { "if-none-match": res.headers.get("etag")! },
    });
    assertEquals([again.status, again.headers.get("cache-control")], [304, "no-cache"]);
    await again.body?.cancel();
  }
  const missing = await fetch(`${relay.url}/assets/other.js`);
  assertEquals([missing.status, (await missing.json()).error], [
    404,
    "no such endpoint: GET /assets/other.js",
  ]);
});

Deno.test("the one-file bundle serves the same dashboard, with nothing read from web/", async () => {
  await using dir = await tempDir();
  const bundle = `${dir}/od.js`;
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "--output", bundle, "main.ts"],
    cwd: ROOT,
    stderr: "piped",
  }).output();
  assertEquals(built.code, 0, new TextDecoder().decode(built.stderr));
  // Run from another directory with an empty DENO_DIR: only the bundle itself is there.
  const relay = new Proc("bundled relay", [
    "run",
    "--quiet",
    "--no-prompt",
    "--no-config",
    "-A",
    bundle,
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data",
    `${dir}/data`,
  ], { cmd: Deno.execPath(), cwd: dir, env: { DENO_DIR: `${dir}/deno-dir` } });
  await using _ = relay;
  const url = (await relay.waitFor(/relay listening url=(\S+)/))[1];
  assertEquals(await (await fetch(url)).text(), INDEX_HTML);
  const js = ASSETS["app.js"];
  assertEquals(await (await fetch(`${url}/assets/app.js?v=${js.hash}`)).text(), js.body);
});
