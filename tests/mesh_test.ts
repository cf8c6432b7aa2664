/**
 * Several relays on one PostgreSQL, HAProxy (deploy/haproxy-mesh.cfg) in front, devices spread
 * over the relays by HAProxy: any relay reaches any device through the mesh, the listing shows
 * the whole fleet from every relay, a key revoked on one relay closes a tunnel that crosses two
 * others, a property set through one relay reaches a device held by another, and only relays
 * holding the mesh key may join the mesh.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, od, Proc, randomBytes, rss, tempDir } from "./_harness.ts";
import { addKey, clientEnv, echoServer, type Relay, sourceServer, startDaemon } from "./_fleet.ts";
import { call, propsOnDevice } from "./_api.ts";
import { havePostgres, SKIP_SENTENCE } from "./_postgres.ts";
import { heldByRelay, type MeshRelay, meshStack, startMeshProxy } from "./_mesh.ts";
import { SUBPROTOCOL } from "../src/protocol/frame.ts";
import { MESH_PATH } from "../src/protocol/mesh.ts";

const skip = !havePostgres();
if (skip) console.log(SKIP_SENTENCE);

const DEVICES = 20;
const MIB = 1024 * 1024;

/** Runs `tasks` with at most `n` at once. */
async function pool<T>(tasks: (() => Promise<T>)[], n: number): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }));
  return out;
}

/** The devices `od list --json` through `relay` shows, as id → state. */
async function listed(relay: Relay, key: string, config: string): Promise<Record<string, string>> {
  const out = await od(["list", "--json"], { env: clientEnv(relay, key, config) });
  if (out.code !== 0) throw new Error(`od list: ${out.stderr}`);
  const devices = JSON.parse(out.stdout) as { id: string; state: string }[];
  return Object.fromEntries(devices.map((d) => [d.id, d.state]));
}

Deno.test({
  name: "three relays behind HAProxy: every relay reaches all 20 devices, 1 MiB each, and lists them online",
  ignore: skip,
  async fn(t) {
    await using dir = await tempDir();
    await using stack = await meshStack(dir);
    const relays: MeshRelay[] = [];
    for (const id of ["relay-a", "relay-b", "relay-c"]) relays.push(await stack.startRelay(id));
    await using proxy = await startMeshProxy(stack, relays);
    const added = await stack.admin(["account", "add", "acme", "--json"]);
    assertEquals(added.code, 0, added.stderr);
    const acme = JSON.parse(added.stdout) as { clientKey: string; deviceKey: string };
    await using echo = echoServer();
    const daemons: Proc[] = [];
    try {
      for (let i = 0; i < DEVICES; i++) {
        daemons.push(
          await startDaemon(proxy.relay, {
            key: acme.deviceKey,
            id: `dev-${i}`,
            stateDir: `${dir}/dev-${i}`,
            services: { echo: echo.port },
          }),
        );
      }
      await t.step("HAProxy spread the devices over the three relays", async () => {
        const held = await eventually("every link claimed", async () => {
          const h = await heldByRelay(stack);
          const sum = Object.values(h).reduce((a, b) => a + b, 0);
          return sum === DEVICES && h;
        });
        for (const r of relays) ok((held[r.id] ?? 0) >= 3, `${r.id} holds ${JSON.stringify(held)}`);
      });

      await t.step("od list through each relay shows all 20 online", async () => {
        for (const [i, r] of relays.entries()) {
          const states = await listed(r, acme.clientKey, `${dir}/cfg-${i}`);
          assertEquals(Object.keys(states).length, DEVICES);
          ok(Object.values(states).every((s) => s === "online"), JSON.stringify(states));
        }
      });

      await t.step("from a client of each relay, a tunnel to every device carries 1 MiB", async () => {
        const data = randomBytes(MIB);
        const tasks = relays.flatMap((r, i) =>
          daemons.map((_, d) => async () => {
            const env = clientEnv(r, acme.clientKey, `${dir}/cfg-${i}`);
            const out = await new Deno.Command("scripts/od", {
              args: ["pipe", `dev-${d}`, "echo"],
              env: { ...env, NO_PROXY: "127.0.0.1,localhost", HTTPS_PROXY: "", HTTP_PROXY: "" },
              stdin: "piped",
              stdout: "piped",
              stderr: "piped",
            }).spawn();
            const writer = out.stdin.getWriter();
            await writer.write(data);
            await writer.close();
            const result = await out.output();
            const stderr = new TextDecoder().decode(result.stderr);
            assertEquals(result.code, 0, `${r.id} → dev-${d}: ${stderr}`);
            ok(
              result.stdout.length === MIB && result.stdout.every((b, k) => b === data[k]),
              `${r.id} → dev-${d}: ${result.stdout.length} bytes came back, not the same MiB`,
            );
          })
        );
        await pool(tasks, 4);
        // Forwarded through one mesh link per pair of relays, whichever of the two dialed it.
        const dialed = relays.flatMap((r) =>
          [...r.proc.stderr.matchAll(/mesh link open peer=(\S+) dialed=true/g)].map((m) =>
            [r.id, m[1]].sort().join("+")
          )
        );
        assertEquals(dialed.sort(), ["relay-a+relay-b", "relay-a+relay-c", "relay-b+relay-c"]);
      });
    } finally {
      for (const d of daemons) await d.stop();
    }
  },
});
