/**
 * Dashboard sessions in a real browser against a real relay: a key added in the page works with
 * `od list` and revoking it there closes a live `od pipe`; signing out or revoking the session's
 * key ends the session on the next request; the cookie's attributes (HttpOnly, SameSite=Strict,
 * expiring, Secure and `__Host-` under TLS) and that only its hash is stored; and a page on
 * another origin of the same site, whose requests carry the cookie, changes nothing.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { PG_TEST, storeNumber } from "./_test_store.ts";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  clientEnv,
  echoServer,
  makeTestCa,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { call } from "./_api.ts";
import { signIn, startBrowser, waitForText } from "./_browser.ts";
import { hashSecret } from "../src/store/hash.ts";

/** Starts `od pipe DEV echo` that keeps sending; `ended` resolves with its exit and stderr. */
function livePipe(env: Record<string, string>, device: string) {
  const proc = new Proc(`pipe ${device}`, ["pipe", device, "echo"], { env, stdin: "piped" });
  const writer = proc.child.stdin.getWriter();
  const timer = setInterval(() => writer.write(new Uint8Array(100)).catch(() => {}), 50);
  const ended = proc.output().then((out) => {
    clearInterval(timer);
    writer.close().catch(() => {});
    return { ...out, at: Date.now() };
  });
  const flowing = () => eventually("the pipe to carry data", () => proc.stdout.length > 0);
  return { ended, flowing, stop: () => proc.stop() };
}

Deno.test("a key added in the page works with od list; revoking it in the page closes its live od pipe within 5 s", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  await using echo = echoServer();
  const daemon = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/edge-1`,
    services: { echo: echo.port },
  });
  await using browser = await startBrowser();
  const page = await browser.page();
  try {
    await signIn(page, relay.url, full);
    await page.click("header nav a[href='/keys']");
    await page.waitForSelector("#keys tbody tr");
    await page.selectOption("#key-role", "client");
    await page.fill("#key-label", "ci runner");
    await page.click("#add-key button[type=submit]");
    const secret = (await (await page.waitForSelector("#new-key-secret")).textContent())!;
    match(secret, /^od_client_[A-Za-z0-9_-]{43}$/);
    const row = await page.waitForSelector("#keys tr:has(td.label:text-is('ci runner'))");
    const id = (await row.getAttribute("data-key-id"))!;

    const env = clientEnv(relay, secret, `${dir}/cfg`);
    const list = await od(["list"], { env });
    assertEquals(list.code, 0, list.stderr);
    match(list.stdout, /^edge-1\s+online/m);

    const pipe = livePipe(env, "edge-1");
    await pipe.flowing();
    await page.click(`#keys tr[data-key-id='${id}'] button.revoke`);
    const revokedAt = Date.now();
    await page.click("#revoke-confirm");
    const end = await pipe.ended;
    console.log(`od pipe ended ${end.at - revokedAt} ms after the revocation was confirmed`);
    ok(end.at - revokedAt < 5000, `the pipe ended ${end.at - revokedAt} ms after the revocation`);
    match(end.stderr, /the key was revoked/);
    await page.waitForSelector(`#keys tr[data-key-id='${id}'].revoked`);
    assertEquals((await od(["list"], { env })).code, 1);
    // The secret was shown once: the list never has it.
    ok(!(await page.textContent("#keys"))!.includes(secret));
  } finally {
    await daemon.stop();
  }
});

/** The session cookie the browser holds for `url`. */
async function sessionCookie(context: import("playwright-core").BrowserContext, url: string) {
  const cookies = await context.cookies(url);
  const found = cookies.filter((c) => c.name.endsWith("od_session"));
  assertEquals(found.length, 1, JSON.stringify(cookies));
  return found[0];
}

Deno.test("signing out, or revoking the session's key, ends the session on the next request", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  await using browser = await startBrowser();
  const page = await browser.page();
  await signIn(page, relay.url, acme.clientKey);
  await page.waitForSelector("#count");

  const cookie = await sessionCookie(browser.context, relay.url);
  assertEquals([cookie.name, cookie.httpOnly, cookie.sameSite, cookie.secure, cookie.path], [
    "od_session",
    true,
    "Strict",
    false,
    "/",
  ]);
  const hours = (cookie.expires * 1000 - Date.now()) / 3_600_000;
  ok(hours > 11.9 && hours <= 12, `the cookie expires in ${hours} h`);
  // Stored hashed: the secret is nowhere in the store's files, its SHA-256 is.
  for (const file of ["od.db", "od.db-wal"]) {
    const bytes = await Deno.readFile(`${relay.dataDir}/${file}`).catch(() => new Uint8Array());
    ok(!new TextDecoder("latin1").decode(bytes).includes(cookie.value), `the secret is in ${file}`);
  }
  // One session is stored, and it is the secret's SHA-256 (on either store).
  const hex = [...hashSecret(cookie.value)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const literal = PG_TEST ? `decode('${hex}', 'hex')` : `X'${hex}'`;
  assertEquals(await storeNumber(relay.dataDir, "SELECT count(*) AS n FROM sessions"), 1);
  assertEquals(
    await storeNumber(relay.dataDir, `SELECT count(*) AS n FROM sessions WHERE hash = ${literal}`),
    1,
  );

  const withCookie = (path: string) =>
    call(relay, "", "GET", path, undefined, { cookie: `od_session=${cookie.value}` });
  assertEquals((await withCookie("/v1/devices")).status, 200);

  await page.click("#sign-out");
  await waitForText(page, ".signin .msg.notice", "Signed out.");
  const after = await withCookie("/v1/devices");
  assertEquals([after.status, after.body], [401, {
    error: "the session has ended; sign in again",
  }]);
  assertEquals(await sessionCookie(browser.context, relay.url).catch(() => null), null);

  // Revoking the key behind the relay's back (od admin) ends the next session at its next request.
  await signIn(page, relay.url, acme.clientKey);
  await page.waitForSelector("#count");
  const keyId = (await call(relay, acme.clientKey, "GET", "/v1/whoami")).body as { keyId: string };
  const revoked = await od(["admin", "--data", relay.dataDir, "key", "revoke", keyId.keyId]);
  assertEquals(revoked.code, 0, revoked.stderr);
  await page.click("header nav a[href='/shares']");
  await waitForText(
    page,
    ".signin .msg.error",
    `key ${keyId.keyId} has been revoked, which ended this session`,
  );
  const second = await sessionCookie(browser.context, relay.url);
  const refused = await call(relay, "", "GET", "/v1/session", undefined, {
    cookie: `od_session=${second.value}`,
  });
  assertEquals(refused.status, 401);
  // Without any cookie the session endpoint just says there is none.
  assertEquals((await call(relay, "", "GET", "/v1/session")).status, 204);
});

Deno.test("under TLS the session cookie is Secure and __Host- prefixed", async () => {
  await using dir = await tempDir();
  const ca = await makeTestCa(dir);
  await using relay = await startRelay(`${dir}/data`, { tls: ca });
  const acme = await addAccount(relay.dataDir, "acme");
  await using browser = await startBrowser({ ignoreHttpsErrors: true });
  const page = await browser.page();
  await signIn(page, relay.url, acme.clientKey);
  await page.waitForSelector("#count");
  const cookie = await sessionCookie(browser.context, relay.url);
  assertEquals([cookie.name, cookie.secure, cookie.httpOnly, cookie.sameSite], [
    "__Host-od_session",
    true,
    true,
    "Strict",
  ]);
});

Deno.test("a page on another origin of the same site, whose requests carry the cookie, changes nothing", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  await addAccount(relay.dataDir, "acme");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  // Another port of 127.0.0.1 is the same site, so SameSite=Strict lets the cookie go along:
  // the Origin and CSRF checks are what must refuse.
  const target = `${relay.url}/v1/keys`;
  const evil = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
    new Response(
      `<!doctype html><form id=f method=POST action="${target}" enctype="text/plain">
      <input name='{"role":"full","label":"' value='pwned by form"}'></form>
      <script>
        fetch(${JSON.stringify(target)}, { method: "POST", mode: "no-cors", credentials: "include",
          headers: { "content-type": "text/plain" }, body: '{"role":"full","label":"pwned by fetch"}' })
          .finally(() => document.getElementById("f").submit());
      </script>`,
      { headers: { "content-type": "text/html" } },
    ));
  try {
    await using browser = await startBrowser();
    const page = await browser.page();
    await signIn(page, relay.url, full);
    const evilUrl = `http://127.0.0.1:${evil.addr.port}/`;
    const landed = page.waitForURL(target, { timeout: 10_000 });
    await page.goto(evilUrl);
    await landed; // the form was submitted and answered
    match(await page.textContent("body") ?? "", /must come from the relay's own pages/);
    const keys = (await call(relay, full, "GET", "/v1/keys")).body as { label: string }[];
    assertEquals(keys.filter((k) => k.label.startsWith("pwned")), []);
    const audit = await eventually("the refusals' audit rows", async () => {
      const rows = (await call(relay, full, "GET", "/v1/audit")).body as {
        action: string;
        result: string;
      }[];
      const refused = rows.filter((r) => r.action === "key-add" && r.result === "refused");
      return refused.length >= 2 && refused;
    });
    assertEquals(audit.length, 2);
  } finally {
    await evil.shutdown();
  }
});
