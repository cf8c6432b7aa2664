/**
 * The device registry end to end: properties set on the device (also while its daemon is
 * stopped) and from clients, last write wins, bad input, filters, od events --await, rename and
 * removal.
 */
import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  assertOneSentence,
  clientEnv,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

Deno.test("properties, filters, --await, rename and removal", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const daemons = new Map<string, Proc>();
  const start = async (id: string) => {
    daemons.set(
      id,
      await startDaemon(relay, { key: keys.deviceKey, id, stateDir: `${dir}/${id}`, services: {} }),
    );
  };
  const stop = async (id: string) => {
    await daemons.get(id)?.stop();
    daemons.delete(id);
  };
  const onDevice = (id: string, ...args: string[]) =>
    od(["props", "--state", `${dir}/${id}`, ...args], { env });
  const fromClient = (id: string, ...args: string[]) =>
    od(["props", "--device", id, ...args], { env });
  const ids = async (...args: string[]) => {
    const out = await od(["list", "--json", ...args], { env });
    assertEquals(out.code, 0, out.stderr);
    return (JSON.parse(out.stdout) as { id: string }[]).map((d) => d.id);
  };
  try {
    for (const id of ["dev-a", "dev-b", "dev-c"]) await start(id);

    await t.step(
      "set on the device reaches clients; set by a client reaches the device",
      async () => {
        assertEquals((await onDevice("dev-a", "set", "site=zurich", "group=web,db")).code, 0);
        assertEquals((await fromClient("dev-b", "set", "site=basel", "group=web")).code, 0);
        await waitForProp(env, "dev-a", "site", "zurich");
        const seen = await onDevice("dev-b", "get", "--json");
        assertEquals(JSON.parse(seen.stdout), { group: "web", site: "basel" });
      },
    );

    await t.step("set while the daemon is stopped appears after it starts", async () => {
      await stop("dev-c");
      assertEquals((await onDevice("dev-c", "set", "last_upgrade=2026-11-20")).code, 0);
      assertEquals((await onDevice("dev-c", "get", "last_upgrade")).stdout, "2026-11-20\n");
      assertOneSentence(
        await fromClient("dev-c", "get", "last_upgrade"),
        /property "last_upgrade" is not set/,
      );
      await start("dev-c");
      const after = await od([
        "events",
        "--await",
        "online",
        "--device",
        "dev-c",
        "--timeout",
        "10",
      ], { env });
      assertEquals(after.code, 0, after.stderr);
      await waitForProp(env, "dev-c", "last_upgrade", "2026-11-20");
    });

    await t.step("concurrent edits resolve by last write per key", async () => {
      await stop("dev-c");
      await onDevice("dev-c", "set", "color=device-early");
      await fromClient("dev-c", "set", "color=client-late");
      await fromClient("dev-c", "set", "size=client-early");
      await onDevice("dev-c", "set", "size=device-late");
      await start("dev-c");
      await waitForProp(env, "dev-c", "size", "device-late");
      assertEquals((await fromClient("dev-c", "get", "color")).stdout, "client-late\n");
      assertEquals((await onDevice("dev-c", "get", "color")).stdout, "client-late\n");
    });

    await t.step("bad input: one sentence, exit 2, nothing stored", async () => {
      assertOneSentence(
        await onDevice("dev-a", "set", "ok=1", "bad key=2"),
        /property key "bad key"/,
        2,
      );
      assertOneSentence(
        await fromClient("dev-a", "set", "ok=1", "on:state=x"),
        /maintained by the relay/,
        2,
      );
      assertOneSentence(
        await fromClient("dev-a", "set", `big=${"x".repeat(4097)}`),
        /4097 bytes; the limit is 4096/,
        2,
      );
      assertOneSentence(await onDevice("dev-a", "set", "novalue"), /"novalue" is not KEY=VALUE/, 2);
      const many = Array.from({ length: 257 }, (_, i) => `k${i}=v`);
      assertOneSentence(await fromClient("dev-a", "set", ...many), /limit is 256/, 2);
      assertOneSentence(await fromClient("dev-a", "get", "ok"), /property "ok" is not set/);
    });

    await t.step("filters by property and state", async () => {
      await stop("dev-c");
      assertEquals(await ids("group"), ["dev-a", "dev-b"]);
      assertEquals(await ids("site=zurich"), ["dev-a"]);
      assertEquals(await ids("site!=zurich"), ["dev-b", "dev-c"]);
      assertEquals(await ids("--state", "online", "group"), ["dev-a", "dev-b"]);
      assertEquals(await ids("--state", "offline"), ["dev-c"]);
      assertEquals(await ids("on:state=offline", "last_upgrade"), ["dev-c"]);
      const table = await od(["list", "--show", "site", "site"], { env });
      match(table.stdout, /^DEVICE\s+STATE\s+LAST SEEN\s+PARENT\s+SITE\n/);
      match(table.stdout, /dev-a\s+online\s+now\s+zurich/);
    });

    await t.step("--await online returns 0 when the device connects, 124 on timeout", async () => {
      const waiting = od(["events", "--await", "online", "--device", "dev-c", "--timeout", "30"], {
        env,
      });
      await start("dev-c");
      assertEquals((await waiting).code, 0);
      const timeout = await od([
        "events",
        "--await",
        "offline",
        "--device",
        "dev-a",
        "--timeout",
        "1",
      ], { env });
      assertEquals(timeout.code, 124);
    });

    await t.step("rename and removal (refused while online without --force)", async () => {
      const fullEnv = { ...env, OD_KEY: (await addKey(relay.dataDir, "acme", "full")).key };
      assertEquals((await od(["device", "rename", "dev-b", "dev-b2"], { env: fullEnv })).code, 0);
      assertEquals(await ids("site=basel"), ["dev-b2"]);
      assertOneSentence(
        await od(["device", "rm", "dev-a"], { env: fullEnv }),
        /is online; stop its daemon first or use --force/,
      );
      assertOneSentence(
        await od(["device", "rm", "dev-a"], { env }),
        /a client key cannot do this/,
      );
      assertEquals((await od(["device", "rm", "--force", "dev-a"], { env: fullEnv })).code, 0);
      assertEquals(await ids(), ["dev-b2", "dev-c"]);
    });
  } finally {
    for (const d of daemons.values()) await d.stop();
  }
});

/** Polls a property from the client side until it has `value` (sync takes a round trip). */
async function waitForProp(env: Record<string, string>, id: string, key: string, value: string) {
  for (let i = 0; i < 100; i++) {
    const out = await od(["props", "--device", id, "get", key], { env });
    if (out.stdout === `${value}\n`) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`property ${key} of ${id} never became ${value}`);
}
