/**
 * The dashboard's account pages with a full key, in a real browser against a real relay: a share
 * added in the page lets the other account see the device and removing it there takes it away;
 * the audit log pages back and forth by 100 rows, newest first, and filters by device; renaming
 * and removing a device from its page.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, tempDir } from "./_harness.ts";
import { addAccount, addKey, enrollByApi, type Relay, startRelay } from "./_fleet.ts";
import { call } from "./_api.ts";
import { signIn, startBrowser, waitForCount, waitForText } from "./_browser.ts";

/** The refs beta's client key lists. */
async function seenBy(relay: Relay, key: string): Promise<string[]> {
  return ((await call(relay, key, "GET", "/v1/devices")).body as { ref: string }[]).map((d) =>
    d.ref
  );
}

Deno.test("shares added and removed in the page change what the other account sees", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const beta = await addAccount(relay.dataDir, "beta");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  for (const id of ["edge-1", "edge-2"]) await enrollByApi(relay, acme.deviceKey, id);
  await using browser = await startBrowser();
  const page = await browser.page();
  await signIn(page, relay.url, full);
  await page.click("header nav a[href='/shares']");
  await page.waitForSelector("#add-share");
  await page.fill("#share-account", "nobody");
  await page.fill("#share-device", "edge-1");
  await page.click("#add-share button[type=submit]");
  await waitForText(page, "#shares-status .msg.error", `account "nobody" does not exist`);

  await page.fill("#share-account", "beta");
  await page.fill("#share-services", "ssh, web");
  await page.click("#add-share button[type=submit]");
  await page.waitForSelector("#shares tr[data-share]");
  match(await page.textContent("#shares-status") ?? "", /^shared with beta \(share \d+\)$/);
  const row = await page.textContent("#shares tr[data-share]") ?? "";
  match(row, /to beta\s*edge-1\s*ssh, web/);
  assertEquals(await seenBy(relay, beta.clientKey), ["acme.edge-1"]);

  await page.click("#shares tr[data-share] button.danger");
  await waitForCount(page, "#shares tr[data-share]", 0);
  assertEquals(await seenBy(relay, beta.clientKey), []);
});

Deno.test("the audit log pages by 100 rows newest first and filters by device; rename and remove from the device page", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const full = (await addKey(relay.dataDir, "acme", "full")).key;
  await enrollByApi(relay, acme.deviceKey, "edge-1");
  // 150 refused reads of devices that do not exist: 150 audit rows, oldest nope-0.
  for (let i = 0; i < 150; i++) {
    assertEquals((await call(relay, full, "GET", `/v1/devices/nope-${i}`)).status, 404);
  }
  await eventually("the audit rows to be written", async () => {
    const rows = (await call(relay, full, "GET", "/v1/audit?device=nope-149")).body as unknown[];
    return rows.length === 1;
  });
  await using browser = await startBrowser();
  const page = await browser.page();
  await signIn(page, relay.url, full);
  // The sign-in's own row is written within a second: wait for it, so the pages hold still.
  await eventually("the sign-in's audit row", async () => {
    const [row] = (await call(relay, full, "GET", "/v1/audit?order=newest&limit=1")).body as {
      reason: string;
    }[];
    return row?.reason === "signed in to the dashboard";
  });
  await page.click("header nav a[href='/audit']");
  await page.waitForSelector("#audit-rows tbody tr");
  const devices = () =>
    page.$$eval("#audit-rows tbody tr td:nth-child(6)", (tds) => tds.map((t) => t.textContent));
  const first = await devices();
  assertEquals(first.length, 100);
  ok(first.indexOf("nope-149") < first.indexOf("nope-100"), "newest first");
  await page.click("#audit-older");
  await page.waitForSelector("#audit-newer");
  const second = await devices();
  ok(second.includes("nope-0") && !second.includes("nope-149"), second.join(","));
  await page.click("#audit-newer");
  await waitForCount(page, "#audit-older", 1);
  assertEquals(await devices(), first);

  await page.fill("#audit-device", "nope-7");
  await page.click("#audit-filter button[type=submit]");
  await waitForCount(page, "#audit-rows tbody tr", 1);
  assertEquals(new URL(page.url()).search, "?device=nope-7");
  match(await page.textContent("#audit-rows tbody tr") ?? "", /refused.*no device "nope-7"/);

  // Rename, then remove, from the device page.
  await page.goto(`${relay.url}/device/edge-1`);
  await page.fill("#rename-to", "edge-9");
  await page.click("#rename");
  await page.waitForURL(`${relay.url}/device/edge-9`);
  await waitForText(page, "#device-name", "edge-9");
  await page.click("#remove");
  await page.click("#remove-confirm");
  await page.waitForURL(`${relay.url}/`);
  assertEquals((await call(relay, full, "GET", "/v1/devices")).body, []);
  await waitForText(page, "#count", "0 devices · 0 online");
});
