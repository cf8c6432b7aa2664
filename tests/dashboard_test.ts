/**
 * The web dashboard in a real browser (Debian's chromium through playwright-core) against a real
 * relay and real daemons: signing in and what each role sees, rows following daemons that stop
 * and start, property edits that reach the device, a bulk edit of exactly the selected devices,
 * hostile values rendered as text under the CSP, and a filter kept in the URL. The session
 * tests (sign-out, revocation, cookies, CSRF, keys added in the page) are in
 * dashboard_session_test.ts.
 *
 * With OD_DASHBOARD_SCREENSHOT=FILE the devices page of the first test is saved there as PNG
 * (the README's screenshot).
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  clientEnv,
  echoServer,
  enrollByApi,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { call, propsOnDevice, propsOnRelay } from "./_api.ts";
import {
  type PageDocument,
  rowRefs,
  signIn,
  startBrowser,
  waitForCount,
  waitForText,
} from "./_browser.ts";

const HOSTILE = `<img src=x onerror="window.__pwned=1">`;

const sorted = (o: object) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a < b ? -1 : 1));

/** Sets properties on a device through the API with `key`. */
async function setProps(relay: Relay, key: string, device: string, set: Record<string, string>) {
  const r = await call(relay, key, "PATCH", `/v1/devices/${device}/props`, { set });
  assertEquals(r.status, 200, r.text);
}

Deno.test("sign-in: a wrong key gets a sentence; a client key sees its own and shared devices, and no keys or audit", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const beta = await addAccount(relay.dataDir, "beta");
  const acmeFull = (await addKey(relay.dataDir, "acme", "full")).key;
  for (const id of ["edge-1", "edge-2"]) await enrollByApi(relay, acme.deviceKey, id);
  for (const id of ["beta-1", "beta-2"]) await enrollByApi(relay, beta.deviceKey, id);
  await setProps(relay, acmeFull, "edge-1", { site: "zurich" });
  const share = await call(relay, acmeFull, "POST", "/v1/shares", {
    account: "beta",
    device: "edge-1",
  });
  assertEquals(share.status, 201, share.text);
  await using browser = await startBrowser();
  const page = await browser.page();

  await page.goto(relay.url);
  for (
    const [key, sentence] of [
      [`od_client_${"A".repeat(43)}`, "the key is not valid on this relay"],
      ["hunter2", "the key is not an od key"],
      [acme.deviceKey, "a device key cannot do this; it needs a client or full key"],
    ]
  ) {
    await page.fill("#key", key);
    await page.click("form.signin button[type=submit]");
    await waitForText(page, ".signin .msg.error", sentence, 5000);
  }
  assertEquals(await page.$("#sign-out"), null, "refused keys do not sign in");

  await page.fill("#key", beta.clientKey);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("tr[data-ref='acme.edge-1']");
  assertEquals(await rowRefs(page), ["beta-1", "beta-2", "acme.edge-1"]);
  match(await page.textContent("#count") ?? "", /^3 devices/);
  ok(await page.isDisabled("tr[data-ref='acme.edge-1'] input.select"));
  const nav = await page.$$eval("header nav a", (as) => as.map((a) => a.textContent));
  assertEquals(nav, ["Devices", "Shares"], "no keys or audit links for a client key");

  // The API and the pages themselves refuse the full-key pages.
  const statuses = await page.evaluate(async () => {
    const s = async (p: string) => (await fetch(p)).status;
    return [await s("/v1/keys"), await s("/v1/audit"), await s("/v1/shares")];
  });
  assertEquals(statuses, [403, 403, 200]);
  for (const path of ["/keys", "/audit"]) {
    const res = await page.goto(`${relay.url}${path}`);
    assertEquals(res?.status(), 403, path);
    await page.waitForSelector("main .msg.error");
    match(
      await page.textContent("main") ?? "",
      /needs a full key; this session's key key-\w+ is a client key/,
    );
  }

  // A shared device's page is read-only: no inputs, no rename.
  await page.goto(`${relay.url}/device/acme.edge-1`);
  await page.waitForSelector("#props");
  match(await page.textContent("main") ?? "", /Shared with your account read-only/);
  assertEquals(await page.$$("#props input"), []);
  assertEquals(await page.$("#rename"), null);
  assertEquals(await page.textContent("#ssh-command"), "od ssh root@acme.edge-1");
  assertEquals(browser.problems.filter((p) => !/401|403/.test(p)), []);
});

Deno.test("rows follow their daemons: offline within 5 s of a stop, online again after a start, without a reload", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  let daemon = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "pi-1",
    stateDir: `${dir}/pi-1`,
    services: { echo: echo.port },
  });
  await using browser = await startBrowser();
  const page = await browser.page();
  try {
    await signIn(page, relay.url, acme.clientKey);
    await page.waitForSelector("tr[data-ref='pi-1'][data-state='online']");
    await page.evaluate(() => ((globalThis as unknown as { __loaded: number }).__loaded = 1));
    const version = (await call(relay, acme.clientKey, "GET", "/v1/devices/pi-1")).body as {
      version: string;
    };
    await waitForText(page, "tr[data-ref='pi-1'] td.version", version.version);

    const stopped = Date.now();
    await daemon.stop();
    await page.waitForSelector("tr[data-ref='pi-1'][data-state='offline']", { timeout: 5000 });
    const offlineMs = Date.now() - stopped;
    match(await page.textContent("#count") ?? "", /1 device · 0 online/);

    daemon = new Proc("daemon pi-1", ["daemon", "--state", `${dir}/pi-1`, "--keepalive", "2"]);
    await daemon.waitFor(/connected to relay/);
    const started = Date.now();
    await page.waitForSelector("tr[data-ref='pi-1'][data-state='online']", { timeout: 5000 });
    console.log(
      `offline shown ${offlineMs} ms after the stop, online ${
        Date.now() - started
      } ms after the connect`,
    );
    assertEquals(
      await page.evaluate(() => (globalThis as unknown as { __loaded?: number }).__loaded),
      1,
      "the page was not reloaded",
    );
  } finally {
    await daemon.stop();
  }
});

Deno.test("a property edited in the page is what od props get prints on the device; a bulk edit changes exactly the selected devices", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const state = `${dir}/pi-1`;
  const daemon = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "pi-1",
    stateDir: state,
    services: { echo: echo.port },
  });
  for (const id of ["pi-2", "pi-3", "pi-4"]) await enrollByApi(relay, acme.deviceKey, id);
  await using browser = await startBrowser();
  const page = await browser.page();
  try {
    assertEquals((await od(["props", "--state", state, "set", "site=basel", "floor=2"])).code, 0);
    await signIn(page, relay.url, acme.clientKey);
    await page.goto(`${relay.url}/device/pi-1`);
    await page.waitForSelector("#props tr[data-key='site']");

    // Edit, add and remove; each through its own button.
    await page.fill("#props tr[data-key='site'] input.value", "zurich");
    await page.click("#props tr[data-key='site'] button.save");
    await page.waitForSelector("#props-status .msg.notice");
    await page.fill("#new-key", "rack");
    await page.fill("#new-value", "r7 / slot 3");
    await page.click("#add-prop");
    await page.waitForSelector("#props tr[data-key='rack']");
    await page.click("#props tr[data-key='floor'] button.remove");
    await waitForCount(page, "#props tr[data-key='floor']", 0);
    const expected = { site: "zurich", rack: "r7 / slot 3" };
    assertEquals(await propsOnRelay(relay, acme.clientKey, "pi-1"), expected);
    const same = (a: object, b: object) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));
    await eventually(
      "the edits to reach the device",
      async () => same(await propsOnDevice(state), expected),
      5000,
    );
    assertEquals(await propsOnDevice(state), expected, "what od props get prints on the device");
    const printed = await od(["props", "--state", state, "get", "site"]);
    assertEquals(printed.stdout, "zurich\n");

    // The page refuses what the CLI refuses, with the CLI's sentence.
    const cli = await od(["props", "--device", "pi-1", "set", "on:state=x"], {
      env: clientEnv(relay, acme.clientKey, `${dir}/cfg`),
    });
    assertEquals(cli.code, 2, cli.stderr);
    await page.fill("#new-key", "on:state");
    await page.fill("#new-value", "x");
    await page.click("#add-prop");
    await page.waitForSelector("#props-status .msg.error");
    assertEquals(`od: ${await page.textContent("#props-status .msg.error")}\n`, cli.stderr);

    // Bulk: select three of the four devices and set, then remove, one property on them.
    await page.goto(relay.url);
    await page.waitForSelector("tr[data-ref='pi-4']");
    for (const ref of ["pi-1", "pi-2", "pi-4"]) {
      await page.check(`tr[data-ref='${ref}'] input.select`);
    }
    assertEquals(await page.textContent("#bulk-count"), "3 selected");
    await page.fill("#bulk-key", "group");
    await page.fill("#bulk-value", "canary");
    await page.click("#bulk-set");
    await waitForText(page, "#bulk-status", "set group=canary on 3 devices");
    const groups = async () => {
      const out: Record<string, string | undefined> = {};
      for (const id of ["pi-1", "pi-2", "pi-3", "pi-4"]) {
        out[id] = (await propsOnRelay(relay, acme.clientKey, id)).group;
      }
      return out;
    };
    assertEquals(await groups(), {
      "pi-1": "canary",
      "pi-2": "canary",
      "pi-3": undefined,
      "pi-4": "canary",
    });
    // The table follows the props events: the chips show it without a reload.
    await page.waitForSelector("tr[data-ref='pi-4'] .chip[title='group=canary']");
    await page.click("#bulk-rm");
    await waitForText(page, "#bulk-status", "removed group from 3 devices");
    assertEquals(await groups(), {
      "pi-1": undefined,
      "pi-2": undefined,
      "pi-3": undefined,
      "pi-4": undefined,
    });
    assertEquals((await propsOnDevice(state)).group, undefined);
  } finally {
    await daemon.stop();
  }
});

Deno.test("hostile property values, names and labels render as text under a strict CSP", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  await enrollByApi(relay, acme.deviceKey, "edge-1");
  await setProps(relay, full, "edge-1", {
    note: HOSTILE,
    [`x`]: `"><script>window.__pwned=2</script>`,
  });
  await using browser = await startBrowser();
  const page = await browser.page();
  const pwned = () => page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned);

  const res = await page.goto(relay.url);
  const csp = res?.headers()["content-security-policy"] ?? "";
  match(csp, /(^|; )default-src 'self'(;|$)/);
  match(csp, /(^|; )script-src 'self'(;|$)/);
  ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), csp);
  assertEquals(res?.headers()["x-content-type-options"], "nosniff");
  await page.fill("#key", full);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("tr[data-ref='edge-1'] .chip");
  assertEquals(
    await page.getAttribute("tr[data-ref='edge-1'] .chip[title^='note=']", "title"),
    `note=${HOSTILE}`,
  );
  assertEquals(await page.$$("img, script:not([src])"), []);

  await page.click("a[href='/device/edge-1']");
  await page.waitForSelector("#props tr[data-key='note']");
  assertEquals(await page.inputValue("#props tr[data-key='note'] input.value"), HOSTILE);
  // A rename to a hostile name: the relay's sentence names it, and it is shown as text.
  await page.fill("#rename-to", HOSTILE);
  await page.click("#rename");
  await page.waitForSelector("#manage-status .msg.error");
  assertEquals(
    await page.textContent("#manage-status .msg.error"),
    `device ID "${HOSTILE}" may contain only letters, digits and single inner dashes`,
  );
  // Past the page's own check, the relay refuses it too, and its audit row keeps the text.
  const direct = await call(relay, full, "POST", "/v1/devices/edge-1/rename", {
    name: "<b>x</b>-1",
  });
  assertEquals(direct.status, 400, direct.text);
  const label = `</td><img src=x onerror="window.__pwned=3">`;
  assertEquals(
    (await call(relay, full, "POST", "/v1/keys", { role: "client", label })).status,
    201,
  );
  await page.goto(`${relay.url}/keys`);
  await page.waitForSelector("#keys td.label");
  ok((await page.$$eval("#keys td.label", (tds) => tds.map((t) => t.textContent))).includes(label));
  // Audit rows are written once a second: reload until the refusal's row is there.
  await eventually("the refused rename in the audit page", async () => {
    await page.goto(`${relay.url}/audit`);
    await page.waitForSelector("#audit-rows, main p.quiet");
    return (await page.textContent("main"))?.includes(`device ID "<b>x</b>-1" may contain only`);
  }, 10_000);
  assertEquals(await page.$$("main img, main b"), []);
  assertEquals(await pwned(), undefined);
  // The CSP itself refuses inline script: even an injected one would not run.
  await page.evaluate(() => {
    const doc = (globalThis as unknown as { document: PageDocument }).document;
    const s = doc.createElement("script");
    s.textContent = "window.__pwned = 4";
    doc.body.append(s);
  });
  assertEquals(await pwned(), undefined);
  ok(browser.problems.some((p) => /Content Security Policy/.test(p)), browser.problems.join("\n"));
});

Deno.test("a filter typed in the search box is in the URL, and reloading the URL shows the same rows", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const sites: Record<string, string> = { a: "zurich", b: "basel", c: "zurich", d: "new york" };
  for (const [n, site] of Object.entries(sites)) {
    await enrollByApi(relay, acme.deviceKey, `dev-${n}`);
    await setProps(relay, acme.clientKey, `dev-${n}`, {
      site,
      ...(n === "c" ? { group: "web" } : {}),
    });
  }
  await using browser = await startBrowser();
  const page = await browser.page();
  await signIn(page, relay.url, acme.clientKey);
  await page.waitForSelector("tr[data-ref='dev-d']");
  assertEquals((await rowRefs(page)).length, 4);

  await page.fill("#search", "site=zurich");
  await waitForCount(page, "tr[data-ref]", 2);
  assertEquals(await rowRefs(page), ["dev-a", "dev-c"]);
  assertEquals(new URL(page.url()).search, "?q=site%3Dzurich");

  await page.fill("#search", `site!=zurich site="new york"`);
  await waitForCount(page, "tr[data-ref]", 1);
  await page.click("button.sort[data-sort='device']"); // sorting is kept in the URL too
  const url = page.url();
  assertEquals(new URL(url).searchParams.get("q"), `site!=zurich site="new york"`);
  assertEquals(new URL(url).searchParams.get("desc"), "1");
  await page.reload();
  await page.waitForSelector("tr[data-ref]");
  assertEquals(await rowRefs(page), ["dev-d"]);
  assertEquals(await page.inputValue("#search"), `site!=zurich site="new york"`);

  // A bookmarked URL in a new tab shows the same rows; a malformed filter gets the CLI's sentence.
  const other = await browser.page();
  await other.goto(`${relay.url}/?q=${encodeURIComponent("site=zurich group")}`);
  await other.waitForSelector("tr[data-ref]");
  assertEquals(await rowRefs(other), ["dev-c"]);
  await other.fill("#search", "=zurich");
  await other.waitForSelector(".search-error .msg.error");
  assertEquals(
    await other.textContent(".search-error .msg.error"),
    `filter "=zurich" must be KEY=VALUE, KEY!=VALUE or KEY`,
  );
  assertEquals(await rowRefs(other), ["dev-c"], "a malformed filter keeps the rows shown");
});

Deno.test({
  name: "the README's screenshot of the devices page (with OD_DASHBOARD_SCREENSHOT=FILE)",
  ignore: !Deno.env.get("OD_DASHBOARD_SCREENSHOT"),
  async fn() {
    await using dir = await tempDir();
    await using relay = await startRelay(`${dir}/data`);
    const acme = await addAccount(relay.dataDir, "acme");
    await using echo = echoServer();
    const daemons: Proc[] = [];
    try {
      for (const id of ["pi-kitchen", "pi-garage", "store-zurich-1"]) {
        daemons.push(
          await startDaemon(relay, {
            key: acme.deviceKey,
            id,
            stateDir: `${dir}/${id}`,
            services: { ssh: echo.port },
          }),
        );
      }
      for (const id of ["store-basel-1", "store-basel-2", "store-zurich-2", "lab-nuc"]) {
        await enrollByApi(relay, acme.deviceKey, id);
      }
      const props: Record<string, Record<string, string>> = {
        "pi-kitchen": { site: "home", group: "sensors" },
        "pi-garage": { site: "home", group: "sensors", door: "north" },
        "store-zurich-1": { site: "zurich", group: "pos,web", rack: "r2" },
        "store-zurich-2": { site: "zurich", group: "pos", rack: "r3" },
        "store-basel-1": { site: "basel", group: "pos" },
        "store-basel-2": { site: "basel", group: "pos", note: "replace disk" },
        "lab-nuc": { site: "lab", owner: "ops" },
      };
      for (const [id, set] of Object.entries(props)) await setProps(relay, acme.clientKey, id, set);
      await using browser = await startBrowser();
      const page = await browser.page();
      await signIn(page, relay.url, (await addKey(relay.dataDir, "acme", "full")).key);
      await page.waitForSelector("tr[data-ref='store-zurich-2']");
      await page.waitForSelector("tr[data-ref='pi-kitchen'][data-state='online']");
      await page.check("tr[data-ref='store-basel-1'] input.select");
      await page.check("tr[data-ref='store-basel-2'] input.select");
      await page.screenshot({ path: Deno.env.get("OD_DASHBOARD_SCREENSHOT")! });
    } finally {
      for (const d of daemons) await d.stop();
    }
  },
});

Deno.test("the device page shows the host keys as ssh-keygen -l prints them and copies the od ssh command", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const expected: string[] = [];
  const hostKeyArgs: string[] = [];
  for (const [type, bits] of [["ed25519", []], ["rsa", ["-b", "3072"]]] as const) {
    const file = `${dir}/ssh_host_${type}_key`;
    const gen = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", type, ...bits, "-N", "", "-C", "root@pi", "-f", file],
    }).output();
    assertEquals(gen.code, 0);
    hostKeyArgs.push("--host-key", `${file}.pub`);
    // What the daemon reports is `type base64`: ssh-keygen -l of that same line.
    const [t, b64] = (await Deno.readTextFile(`${file}.pub`)).split(" ");
    await Deno.writeTextFile(`${file}.line`, `${t} ${b64}\n`);
    const out = await new Deno.Command("ssh-keygen", { args: ["-l", "-f", `${file}.line`] })
      .output();
    expected.push(new TextDecoder().decode(out.stdout).trim());
  }
  await using echo = echoServer();
  const daemon = await startDaemon(relay, {
    key: acme.deviceKey,
    id: "pi-1",
    stateDir: `${dir}/pi-1`,
    services: { ssh: echo.port },
    extraArgs: hostKeyArgs,
  });
  await using browser = await startBrowser();
  try {
    await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], {
      origin: relay.url,
    });
    const page = await browser.page();
    await signIn(page, relay.url, acme.clientKey);
    await page.goto(`${relay.url}/device/pi-1`);
    await page.waitForSelector("#fingerprints li");
    const shown = await page.$$eval("#fingerprints li", (lis) => lis.map((li) => li.textContent));
    assertEquals(shown.sort(), expected.sort());
    match(expected[0], /^256 SHA256:\S{43} no comment \(ED25519\)$/);
    await page.click("#copy-ssh");
    await waitForText(page, ".command .copied", "copied");
    const copied = await page.evaluate(() =>
      (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } })
        .navigator.clipboard.readText()
    );
    assertEquals(copied, "od ssh root@pi-1");
    match(await page.textContent("main") ?? "", /Services\s*ssh/);
  } finally {
    await daemon.stop();
  }
});
