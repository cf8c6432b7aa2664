/**
 * Regression tests for the validation and access bugs of issue 9, one step each, found by a
 * black-box attack with ordinary keys: request bodies of the wrong shape, inherited names as
 * filters, audit limits, renaming an online device, clones across accounts, NUL in values,
 * fingerprints and far-future change times from a device, malformed path escapes.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  assertOneSentence,
  clientEnv,
  echoServer,
  enrollByApi,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { call, propsOnRelay, RogueDevice } from "./_api.ts";
import { generateCredential } from "../src/protocol/keys.ts";
import { LOCAL_SOCKET } from "../src/protocol/local.ts";

Deno.test("validation and access regressions of issue 9", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const beta = await addAccount(relay.dataDir, "beta");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  await using echo = echoServer();
  const state = `${dir}/edge-1`;
  const daemon = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "edge-1",
    stateDir: state,
    services: { echo: echo.port },
  });
  const props = (set: Record<string, string>, rm: string[] = [], device = "edge-1") =>
    call(relay, acme.clientKey, "PATCH", `/v1/devices/${device}/props`, { set, rm });
  try {
    await t.step("a share whose filters or services is not a list is a 400", async () => {
      for (
        const body of [
          { account: "beta", filters: "site=zurich" },
          { account: "beta", filters: { site: "zurich" } },
          { account: "beta", services: "ssh" },
          { account: "beta", services: [1] },
          { account: "beta", filters: [null] },
        ]
      ) {
        const answer = await call(relay, full, "POST", "/v1/shares", body);
        assertEquals(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
        match((answer.body as { error: string }).error, /must be a list of at most \d+ strings/);
      }
      assertEquals((await call(relay, full, "GET", "/v1/shares")).body, [], "nothing was shared");
      const devices = await call(relay, beta.clientKey, "GET", "/v1/devices");
      assertEquals(devices.body, []);
    });

    await t.step('the "has KEY" filter matches own properties only', async () => {
      for (const name of ["constructor", "toString", "hasOwnProperty", "__proto__"]) {
        const share = await call(relay, full, "POST", "/v1/shares", {
          account: "beta",
          filters: [name],
        });
        assertEquals(share.status, 201, share.text);
      }
      const devices = await call(relay, beta.clientKey, "GET", "/v1/devices");
      assertEquals(devices.body, [], "beta must not see the fleet");
      const tunnel = await call(relay, beta.clientKey, "GET", "/v1/devices/acme.edge-1");
      assertEquals(tunnel.status, 404);
      for (const s of (await call(relay, full, "GET", "/v1/shares")).body as { id: number }[]) {
        assertEquals((await call(relay, full, "DELETE", `/v1/shares/${s.id}`)).status, 200);
      }
    });

    await t.step("/v1/audit?limit= takes whole numbers from 1 to the cap only", async () => {
      for (const limit of ["0.5", "-1", "0", "1e3", "abc", "100001", ""]) {
        const answer = await call(relay, full, "GET", `/v1/audit?limit=${limit}`);
        assertEquals(answer.status, 400, `limit=${limit}: ${answer.text}`);
      }
      const two = await call(relay, full, "GET", "/v1/audit?limit=2");
      assertEquals(two.status, 200);
      ok((two.body as unknown[]).length <= 2);
    });

    await t.step("a bad %-escape in a device path is a 400", async () => {
      for (const path of ["/v1/devices/%E0%A4%A", "/v1/devices/%zz/props", "/v1/devices/%"]) {
        const method = path.endsWith("props") ? "PATCH" : "GET";
        const body = method === "PATCH" ? { set: {} } : undefined;
        const answer = await call(relay, acme.clientKey, method, path, body);
        assertEquals(answer.status, 400, `${path}: ${answer.text}`);
        match((answer.body as { error: string }).error, /malformed %-escape/);
      }
    });

    await t.step("a NUL in a value is refused everywhere, never stored cut", async () => {
      const answer = await props({ nul: "before\x00after" });
      assertEquals(answer.status, 400, answer.text);
      match((answer.body as { error: string }).error, /NUL/);
      const surrogate = await call(
        relay,
        acme.clientKey,
        "PATCH",
        "/v1/devices/edge-1/props",
        '{"set":{"half":"\\ud800"}}',
      );
      assertEquals(surrogate.status, 400, surrogate.text);
      // On the device, through the daemon's socket (a shell argument cannot hold a NUL).
      const reply = await localRequest(state, { op: "edit", set: { nul: "a\x00b" }, rm: [] });
      assertEquals(reply.ok, false);
      match(String(reply.error), /NUL/);
      // From a device link: the relay refuses the key in its ack.
      const credential = await enrollByApi(relay, acme.deviceKey, "rogue-nul");
      const rogue = await RogueDevice.connect(relay, credential);
      rogue.send({ t: "props", seq: 7, changes: [{ k: "nul", v: "x\x00y", at: Date.now() }] });
      const ack = await rogue.next((m) => m.t === "props-ack");
      assertEquals(ack, { t: "props-ack", seq: 7, rejected: ["nul"] });
      await rogue.close();
      assertEquals(await propsOnRelay(relay, acme.clientKey, "rogue-nul"), {});
      assertEquals(await propsOnRelay(relay, acme.clientKey, "edge-1"), {});
    });

    await t.step("a change time far in the future does not freeze a key", async () => {
      const credential = await enrollByApi(relay, acme.deviceKey, "rogue-time");
      const rogue = await RogueDevice.connect(relay, credential);
      rogue.send({ t: "props", seq: 1, changes: [{ k: "frozen", v: "device", at: 1e308 }] });
      assertEquals(await rogue.next((m) => m.t === "props-ack"), {
        t: "props-ack",
        seq: 1,
        rejected: [],
      });
      const later = await props({ frozen: "client" }, [], "rogue-time");
      assertEquals(later.status, 200, later.text);
      assertEquals((await propsOnRelay(relay, acme.clientKey, "rogue-time")).frozen, "client");
      // The relay pushes the client's edit with a sane time, which a daemon accepts.
      const push = await rogue.next((m) => m.t === "props-state" && !m.full);
      const at = (push.props as Record<string, { at: number }>).frozen.at;
      ok(at <= Date.now() && at > Date.now() - 60_000, `pushed time ${at}`);
      await rogue.close();
    });

    await t.step("a device may not send a fingerprint of any length", async () => {
      const credential = generateCredential();
      const enroll = await call(relay, acme.deviceKey, "POST", "/v1/enroll", {
        credential,
        id: "fp-1",
        fingerprint: "A".repeat(129),
      });
      assertEquals(enroll.status, 400, enroll.text);
      const ok201 = await call(relay, acme.deviceKey, "POST", "/v1/enroll", {
        credential,
        id: "fp-1",
      });
      assertEquals(ok201.status, 201, ok201.text);
      const link = await fetch(`${relay.url}/v1/device`, {
        headers: {
          authorization: `Bearer ${credential}`,
          "x-od-protocol": "od.1",
          "x-od-fingerprint": "B".repeat(4000),
        },
      });
      assertEquals(link.status, 400);
      match((await link.json()).error, /fingerprint must be 16 to 128/);
    });

    await t.step("/v1/clone with another account's credential is a 409", async () => {
      const original = await enrollByApi(relay, acme.deviceKey, "orig-1");
      const theirs = await enrollByApi(relay, beta.deviceKey, "theirs-1");
      const answer = await call(relay, original, "POST", "/v1/clone", {
        credential: theirs,
        fingerprint: "C".repeat(32),
      });
      assertEquals(answer.status, 409, answer.text);
      match((answer.body as { error: string }).error, /belongs to another account/);
    });

    await t.step("renaming an online device renames its live session", async () => {
      const renamed = await call(relay, full, "POST", "/v1/devices/edge-1/rename", {
        name: "edge-one",
      });
      assertEquals(renamed.status, 200, renamed.text);
      await daemon.waitFor(/renamed by the relay .*to=edge-one/);
      // A store change makes the relay check its sessions against the store (it once took the
      // old name for a removal and disconnected the device). A revocation by od admin is one,
      // and the relay logs when it has handled it.
      const spare = await addKey(relay.dataDir, "acme", "client");
      const from = relay.proc.stderr.length;
      assertEquals(
        (await od(["admin", "--data", relay.dataDir, "key", "revoke", spare.id])).code,
        0,
      );
      await relay.proc.waitFor(/keys revoked/, 10_000, from);
      const device = await call(relay, acme.clientKey, "GET", "/v1/devices/edge-one");
      assertEquals((device.body as { state: string }).state, "online");
      ok(!/link to relay closed/.test(daemon.stderr), daemon.stderr);
      const env = clientEnv(relay, acme.clientKey, `${dir}/config`);
      const pipe = await od(["pipe", "edge-one", "echo"], { env, stdin: "renamed" });
      assertEquals([pipe.code, pipe.stdout], [0, "renamed"], pipe.stderr);
      await daemon.stop();
      const events = await od(["events", "--since", "1h", "--no-follow", "--json"], { env });
      const lines = events.stdout.trim().split("\n").map((l) => JSON.parse(l));
      ok(
        lines.some((e) => e.device === "edge-one" && e.type === "state" && e.state === "offline"),
        `the disconnect is logged under the new name:\n${events.stdout}`,
      );
      ok(!lines.some((e) => e.device === "edge-1" && e.type === "removed"));
    });

    await t.step("od constructor and --constructor are usage errors", async () => {
      assertOneSentence(await od(["constructor"]), /unknown command "constructor"/, 2);
      assertOneSentence(await od(["toString"]), /unknown command "toString"/, 2);
      assertOneSentence(await od(["list", "--constructor"]), /unknown option --constructor/, 2);
    });
  } finally {
    await daemon.stop();
  }
});

/** Sends one request line to a daemon's local socket and reads its reply. */
async function localRequest(stateDir: string, request: unknown): Promise<Record<string, unknown>> {
  const conn = await Deno.connect({ transport: "unix", path: `${stateDir}/${LOCAL_SOCKET}` });
  try {
    await conn.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    const text = await new Response(conn.readable).text();
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`local request failed: ${err}`);
  }
}
