/**
 * A real browser for the dashboard tests and the benchmark: Debian's chromium, headless, driven
 * through npm:playwright-core (pinned in deno.json and deno.lock) with a fresh profile in a
 * temporary directory, no background networking, no component updates, no sync, no QUIC. As
 * root, chromium needs --no-sandbox. Everything is stopped and removed on dispose.
 */
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { tempDir } from "./_harness.ts";

/** Where Debian installs chromium (scripts/test installs the package). */
export const CHROMIUM = "/usr/bin/chromium";

/** A running browser with one profile. */
export interface Browser extends AsyncDisposable {
  context: BrowserContext;
  /** A new tab that records its console errors and uncaught exceptions in `problems`. */
  page(): Promise<Page>;
  /** Console errors and page errors of every tab, for failure messages. */
  problems: string[];
}

/** Starts chromium; `ignoreHttpsErrors` for a relay with the tests' own CA. */
export async function startBrowser(options: { ignoreHttpsErrors?: boolean } = {}): Promise<
  Browser
> {
  const profile = await tempDir("od-chromium-");
  const args = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ];
  if (Deno.uid() === 0) args.push("--no-sandbox"); // chromium refuses to run as root otherwise
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(String(profile), {
      executablePath: CHROMIUM,
      headless: true,
      args,
      viewport: { width: 1280, height: 720 },
      ignoreHTTPSErrors: options.ignoreHttpsErrors ?? false,
    });
  } catch (err) {
    await profile[Symbol.asyncDispose]();
    throw err;
  }
  const problems: string[] = [];
  return {
    context,
    problems,
    async page() {
      const page = await context.newPage();
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      return page;
    },
    async [Symbol.asyncDispose]() {
      await context.close().catch(() => {});
      await profile[Symbol.asyncDispose]();
    },
  };
}

/** Opens `url`, signs in with `key` and waits for the signed-in header. */
export async function signIn(page: Page, url: string, key: string): Promise<void> {
  await page.goto(url);
  await page.fill("#key", key);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("#sign-out");
}

/** The device refs of the table's rows now in the document, in order. */
export function rowRefs(page: Page): Promise<string[]> {
  return page.$$eval("tr[data-ref]", (rows) => rows.map((r) => r.getAttribute("data-ref")!));
}

/** The little of the page's DOM the tests read (they are type-checked without the DOM library). */
export interface PageDocument {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): { length: number };
  createElement(tag: string): { textContent: string | null };
  body: { append(node: unknown): void };
}

/**
 * The page's document, inside functions run in the page. (They must be functions: the CSP
 * refuses to evaluate strings.)
 */
export const pageDocument = () => (globalThis as unknown as { document: PageDocument }).document;

/** Waits until the element `selector` has exactly `text` as its text. */
export async function waitForText(
  page: Page,
  selector: string,
  text: string,
  timeout = 10_000,
): Promise<void> {
  await page.waitForFunction(
    ([sel, expected]) =>
      (globalThis as unknown as { document: PageDocument }).document.querySelector(sel)
        ?.textContent === expected,
    [selector, text],
    { timeout },
  );
}

/** Waits until `selector` matches exactly `count` elements. */
export async function waitForCount(
  page: Page,
  selector: string,
  count: number,
  timeout = 10_000,
): Promise<void> {
  await page.waitForFunction(
    ([sel, n]) =>
      (globalThis as unknown as { document: PageDocument }).document.querySelectorAll(
        sel as string,
      ).length === n,
    [selector, count] as const,
    { timeout },
  );
}
