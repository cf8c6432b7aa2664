/**
 * `od admin --data DIR migrate --to postgres://…`: a relay that ran on SQLite moves to a mesh of
 * relays on PostgreSQL. The copy has the same accounts, keys, devices, properties, shares and
 * audit rows; a second copy into the now non-empty store is refused; and the devices, restarted
 * with nothing but their state directories, connect to the new relays with their old
 * credentials, reachable from every relay with the old client key.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
import { clientEnv, echoServer, type Relay, startDaemon } from "./_fleet.ts";
import { call } from "./_api.ts";
import { havePostgres, SKIP_SENTENCE } from "./_postgres.ts";
import { meshStack } from "./_mesh.ts";

const skip = !havePostgres();
if (skip) console.log(SKIP_SENTENCE);

const DEVICES = 3;

/** The same listing from the SQLite store and from the PostgreSQL one. */
async function both(
  dataDir: string,
  stack: { admin(a: string[]): Promise<{ stdout: string }> },
  args: string[],
) {
  const sqlite = await od(["admin", "--data", dataDir, ...args, "--json"]);
  const pg = await stack.admin([...args, "--json"]);
  return [JSON.parse(sqlite.stdout), JSON.parse(pg.stdout)];
}

Deno.test({
  name: "migrate: a populated SQLite store moves to PostgreSQL whole, and its devices reconnect",
  ignore: skip,
  async fn() {
    await using dir = await tempDir();
    const dataDir = `${dir}/data`;
    // The relay as it ran before: SQLite in its data directory.
    const old = new Proc("sqlite relay", ["serve", "--listen", "127.0.0.1:0", "--data", dataDir]);
    const url = (await old.waitFor(/relay listening url=(\S+)/))[1];
    const oldRelay: Relay = {
      proc: old,
      url,
      port: Number(new URL(url).port),
      dataDir,
      [Symbol.asyncDispose]: () => old[Symbol.asyncDispose](),
    };
    const acme = JSON.parse(
      (await od(["admin", "--data", dataDir, "account", "add", "acme", "--json"])).stdout,
    );
    await od(["admin", "--data", dataDir, "account", "add", "beta", "--json"]);
    const full = JSON.parse(
      (await od([
        "admin",
        "--data",
        dataDir,
        "key",
        "add",
        "--account",
        "acme",
        "--role",
        "full",
        "--json",
      ]))
        .stdout,
    ).key as string;
    await using echo = echoServer();
    const states = Array.from({ length: DEVICES }, (_, i) => `${dir}/edge-${i}`);
    for (const [i, state] of states.entries()) {
      const daemon = await startDaemon(oldRelay, {
        key: acme.deviceKey,
        id: `edge-${i}`,
        stateDir: state,
        services: { echo: echo.port },
      });
      const set = await call(oldRelay, acme.clientKey, "PATCH", `/v1/devices/edge-${i}/props`, {
        set: { site: `s${i}` },
      });
      assertEquals(set.status, 200, set.text);
      const env = clientEnv(oldRelay, acme.clientKey, `${dir}/cfg-old`);
      const out = await od(["pipe", `edge-${i}`, "echo"], { env, stdin: "before" });
      assertEquals(out.stdout, "before", out.stderr);
      await daemon.stop();
    }
    const share = await call(oldRelay, full, "POST", "/v1/shares", {
      account: "beta",
      device: "edge-0",
    });
    assertEquals(share.status, 201, share.text);
    await old.stop(); // the audit rows of the last second are written as it stops

    await using stack = await meshStack(dir);
    const migrate = ["admin", "--data", dataDir, "migrate", "--to", stack.storeUrl];
    const pw = ["--store-password-file", stack.passwordFile];
    const copied = await od([...migrate, ...pw, "--json"]);
    assertEquals(copied.code, 0, copied.stderr);
    const counts = JSON.parse(copied.stdout).copied as Record<string, number>;
    assertEquals(
      [counts.accounts, counts.keys, counts.devices, counts.props, counts.shares],
      [2, 5, DEVICES, DEVICES, 1],
    );
    ok(counts.audit > DEVICES, `audit rows copied: ${counts.audit}`);
    ok(counts.events > DEVICES, `events copied: ${counts.events}`);
    for (const args of [["account", "list"], ["key", "list"], ["audit"]]) {
      const [sqlite, pg] = await both(dataDir, stack, args);
      assertEquals(pg, sqlite, args.join(" "));
    }
    const again = await od([...migrate, ...pw]);
    assertEquals(again.code, 1);
    assertEquals(again.stderr.trim().split("\n").length, 1, again.stderr);
    match(again.stderr, /^od: The store .* is not empty \(it holds 2 accounts, 5 keys, 3 devices/);

    // The new relays: one where the old one listened (the URL the devices know), one more.
    const a = await stack.startRelay("relay-a", { listen: `127.0.0.1:${oldRelay.port}` });
    const b = await stack.startRelay("relay-b");
    const daemons = states.map((state, i) =>
      new Proc(`daemon edge-${i}`, ["daemon", "--state", state, "--keepalive", "2"])
    );
    try {
      for (const d of daemons) await d.waitFor(/connected to relay/);
      for (const d of daemons) ok(!/enrol/i.test(d.stderr), `enrolled again:\n${d.stderr}`);
      for (const r of [a, b]) {
        const listed = await eventually(`all online through ${r.id}`, async () => {
          const answer = await call(r, acme.clientKey, "GET", "/v1/devices");
          const devices = answer.body as {
            id: string;
            state: string;
            props: Record<string, string>;
          }[];
          return devices.every((d) => d.state === "online") && devices.length === DEVICES &&
            devices;
        });
        assertEquals(listed.map((d) => [d.id, d.props.site]), [["edge-0", "s0"], ["edge-1", "s1"], [
          "edge-2",
          "s2",
        ]]);
        const env = clientEnv(r, acme.clientKey, `${dir}/cfg-${r.id}`);
        const out = await od(["pipe", "edge-1", "echo"], { env, stdin: "after" });
        assertEquals([out.code, out.stdout], [0, "after"], out.stderr);
      }
    } finally {
      for (const d of daemons) await d.stop();
    }
  },
});
