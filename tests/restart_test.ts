/**
 * Restart recovery: kill -9 of the relay in the middle of traffic, restart on the same data
 * directory, and everything comes back by itself with the store intact.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import { storeIntegrity } from "./_test_store.ts";
import { addAccount, clientEnv, echoServer, startDaemon, startRelay } from "./_fleet.ts";

Deno.test("kill -9 of the relay: daemons reconnect by themselves, store intact", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir}/data`;
  let relay = await startRelay(dataDir);
  const port = relay.port;
  const keys = await addAccount(dataDir, "acme");
  await using echo = echoServer();
  const daemons: Proc[] = [];
  try {
    for (const id of ["edge-1", "edge-2", "edge-3"]) {
      daemons.push(
        await startDaemon(relay, {
          key: keys.deviceKey,
          id,
          stateDir: `${dir}/state-${id}`,
          services: { echo: echo.port },
        }),
      );
    }
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    // Traffic in flight when the relay dies: a pipe that is still sending.
    const inflight = new Proc("in-flight pipe", ["pipe", "edge-1", "echo"], {
      env,
      stdin: "piped",
    });
    const writer = inflight.child.stdin.getWriter();
    await writer.write(new Uint8Array(1 << 20));
    const logMarks = daemons.map((d) => d.stderr.length);

    relay.proc.signal("SIGKILL");
    await relay.proc.output();
    const orphan = await inflight.output().finally(() => writer.close().catch(() => {}));
    ok(orphan.code !== 0, "a tunnel cut by the relay's death fails rather than hanging");

    relay = await startRelay(dataDir, { port });
    for (const [i, d] of daemons.entries()) {
      await d.waitFor(/connected to relay/, 30_000, logMarks[i]);
    }

    const out = await od(["pipe", "edge-2", "echo"], { env, stdin: "after restart" });
    assertEquals(out.stdout, "after restart");
    assertEquals(out.code, 0, out.stderr);

    const list = await od(["list", "--json"], { env });
    assertEquals(list.code, 0, list.stderr);
    const devices = JSON.parse(list.stdout) as { id: string; state: string }[];
    assertEquals(devices.map((d) => [d.id, d.state]), [
      ["edge-1", "online"],
      ["edge-2", "online"],
      ["edge-3", "online"],
    ]);
    const accounts = await od(["admin", "--data", dataDir, "account", "list", "--json"]);
    assertEquals(JSON.parse(accounts.stdout).map((a: { account: string }) => a.account), ["acme"]);
  } finally {
    for (const d of daemons) await d.stop();
    await relay.proc.stop();
  }
  assertEquals(await storeIntegrity(dataDir), "ok");
});
