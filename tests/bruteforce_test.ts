/**
 * Brute force: 1,000 bad-key attempts from one address are throttled with 429 and Retry-After,
 * while a legitimate client from another address (::1 against 127.0.0.1, both loopback) is
 * unaffected; the audit log counts every attempt.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { eventually, od, tempDir } from "./_harness.ts";
import { addAccount, addKey, clientEnv, echoServer, startDaemon, startRelay } from "./_fleet.ts";

Deno.test("1,000 bad keys from one address are throttled; another address is not", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`, { dualStack: true });
  const keys = await addAccount(relay.dataDir, "acme");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  await using echo = echoServer();
  await using _daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { echo: echo.port },
  });
  const v4 = `http://127.0.0.1:${relay.port}`;
  const v6 = `http://[::1]:${relay.port}`;
  const statuses = new Map<number, number>();
  let retryAfter = 0;
  let legitFailures = 0;
  const attacker = async (i: number) => {
    const res = await fetch(`${v4}/v1/devices`, {
      headers: { authorization: `Bearer od_client_${String(i).padStart(43, "x")}` },
    });
    await res.body?.cancel();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (res.status === 429) {
      retryAfter = Math.max(retryAfter, Number(res.headers.get("retry-after")));
    }
    return res.status;
  };
  const legit = async () => {
    const res = await fetch(`${v6}/v1/devices`, {
      headers: { authorization: `Bearer ${keys.clientKey}` },
    });
    await res.body?.cancel();
    if (res.status !== 200) legitFailures++;
  };
  for (let i = 0; i < 1000; i += 20) {
    await Promise.all([...Array.from({ length: 20 }, (_, j) => attacker(i + j)), legit()]);
  }
  let refused = statuses.get(401) ?? 0;
  let throttled = statuses.get(429) ?? 0;
  assertEquals(refused + throttled, 1000, JSON.stringify([...statuses]));
  ok(throttled >= 900, `only ${throttled} of 1000 bad attempts were throttled`);
  ok(retryAfter >= 1, "429 carries Retry-After");
  assertEquals(legitFailures, 0, "the client on ::1 was never refused");

  // Even the right key is throttled from the attacking address, while ::1 and od itself work.
  // The bucket refills one failure a second: bad attempts until one is refused (401) take the
  // token that may have come back meanwhile, so the next second has none.
  for (let i = 0; i < 30 && (await attacker(1000 + i)) !== 401; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  refused = statuses.get(401) ?? 0;
  throttled = statuses.get(429) ?? 0;
  const blocked = await fetch(`${v4}/v1/devices`, {
    headers: { authorization: `Bearer ${keys.clientKey}` },
  });
  await blocked.body?.cancel();
  assertEquals(blocked.status, 429);
  const env = { ...clientEnv(relay, keys.clientKey, `${dir}/config`), OD_RELAY: v6 };
  const pipe = await od(["pipe", "edge-1", "echo"], { env, stdin: "unaffected" });
  assertEquals([pipe.code, pipe.stdout], [0, "unaffected"], pipe.stderr);

  const audit = await fetch(`${v6}/v1/audit`, { headers: { authorization: `Bearer ${full}` } });
  assertEquals(audit.status, 200);
  await audit.body?.cancel();
  type Row = { ip: string; result: string; count: number };
  let fromAttacker: Row[] = [];
  const count = (result: string) =>
    fromAttacker.filter((r) => r.result === result).reduce((n, r) => n + r.count, 0);
  // Audit rows are written once a second: wait until every refusal is counted.
  await eventually("the audit rows of the attack", async () => {
    const rows = JSON.parse(
      (await od(["admin", "--data", relay.dataDir, "audit", "--json"])).stdout,
    ) as Row[];
    fromAttacker = rows.filter((r) => r.ip === "::ffff:127.0.0.1");
    return count("refused") >= refused && count("throttled") >= throttled;
  });
  assertEquals(count("refused"), refused);
  ok(count("throttled") >= throttled, `audit counts ${count("throttled")} throttled attempts`);
  ok(fromAttacker.length < 200, `throttled attempts merged into ${fromAttacker.length} rows`);
});

Deno.test("behind a trusted proxy, throttling follows X-Forwarded-For; elsewhere it is ignored", async () => {
  await using dir = await tempDir();
  await using plain = await startRelay(`${dir}/plain`);
  const keys = await addAccount(plain.dataDir, "acme");
  const attempt = async (url: string, key: string, forwardedFor: string) => {
    const res = await fetch(`${url}/v1/devices`, {
      headers: { authorization: `Bearer ${key}`, "x-forwarded-for": forwardedFor },
    });
    await res.body?.cancel();
    return res.status;
  };
  const bad = `od_client_${"Z".repeat(43)}`;
  // Untrusted: a client cannot dodge throttling by inventing addresses.
  for (let i = 0; i < 30; i++) await attempt(plain.url, bad, `203.0.113.${i}`);
  assertEquals(await attempt(plain.url, keys.clientKey, "198.51.100.7"), 429);
  await plain.proc.stop();

  await using proxied = await startRelay(`${dir}/proxied`, {
    extraArgs: ["--trusted-proxy", "127.0.0.1"],
  });
  const keys2 = await addAccount(proxied.dataDir, "acme");
  for (let i = 0; i < 30; i++) await attempt(proxied.url, bad, "203.0.113.9");
  assertEquals(await attempt(proxied.url, keys2.clientKey, "203.0.113.9"), 429);
  assertEquals(await attempt(proxied.url, keys2.clientKey, "198.51.100.7"), 200);
});
