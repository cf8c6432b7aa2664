/**
 * Secrets: credential files are written 0600 and refused when others can read them, as ssh
 * does; no key or credential appears in logs, errors, audit rows or --json output after the
 * command that created it.
 */
import { deepStrictEqual as assertEquals, doesNotMatch, match } from "node:assert/strict";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  assertOneSentence,
  clientEnv,
  echoServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

const SECRET = /od_(client|device|full|cred)_[A-Za-z0-9_-]{43}/;

Deno.test("credential files are private, and secrets never leak after creation", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { echo: echo.port },
  });
  const cfg = `${dir}/config`;
  const env = { OD_CONFIG_DIR: cfg };
  const outputs: string[] = [];
  const run = async (args: string[], e: Record<string, string> = env) => {
    const out = await od(args, { env: e });
    outputs.push(out.stdout, out.stderr);
    return out;
  };
  try {
    await t.step(
      "od login writes config.json 0600 and refuses it once others can read it",
      async () => {
        assertEquals((await run(["login", "--relay", relay.url, "--key", keys.clientKey])).code, 0);
        assertEquals((await Deno.stat(`${cfg}/config.json`)).mode! & 0o777, 0o600);
        assertEquals((await run(["list"])).code, 0);
        await Deno.chmod(`${cfg}/config.json`, 0o644);
        assertOneSentence(
          await run(["list"]),
          /permissions 644 of .*config\.json are too open; .*chmod 600/,
        );
        await Deno.chmod(`${cfg}/config.json`, 0o600);
      },
    );

    await t.step("the daemon's state is 0600 and refused when readable by others", async () => {
      assertEquals((await Deno.stat(`${dir}/state/state.json`)).mode! & 0o777, 0o600);
      await daemon.stop();
      await Deno.chmod(`${dir}/state/state.json`, 0o640);
      const refused = new Proc("daemon", ["daemon", "--state", `${dir}/state`]);
      const out = await refused.output();
      assertOneSentence(
        { code: out.code, stderr: out.stderr },
        /permissions 640 of .*state\.json are too open/,
      );
      await Deno.chmod(`${dir}/state/state.json`, 0o600);
    });

    await t.step("no secret in logs, errors, audit rows or JSON", async () => {
      const bad = `od_client_${"B".repeat(43)}`;
      await run(["pipe", "edge-1", "echo"], { ...clientEnv(relay, bad, cfg) });
      await run(["list", "--json"]);
      await run(["admin", "--data", relay.dataDir, "key", "list", "--json"], {});
      await run(["admin", "--data", relay.dataDir, "account", "list", "--json"], {});
      // Audit rows are written once a second: wait for the refusal's.
      const audit = await eventually("the refusal's audit row", async () => {
        const out = await od(["admin", "--data", relay.dataDir, "audit", "--json"]);
        return /"result": "refused"/.test(out.stdout) && out;
      });
      outputs.push(audit.stdout, audit.stderr);
      match(audit.stdout, /"result": "refused"/);
      const state = await Deno.readTextFile(`${dir}/state/state.json`);
      doesNotMatch(state, /od_device_/, "the enrolment key is dropped once enrolled");
      for (const text of [...outputs, relay.proc.stderr, daemon.stderr]) doesNotMatch(text, SECRET);
    });
  } finally {
    await daemon.stop();
  }
});
