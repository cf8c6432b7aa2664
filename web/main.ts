/// <reference lib="dom" />
/**
 * The od dashboard in the browser: signs in with an account key, then shows the page the URL
 * names — devices (`/`), one device (`/device/REF`), keys, shares, audit — without reloading
 * between them (history.pushState). scripts/build_web.ts bundles this file and what it imports
 * into the relay's executable.
 */
import type { SessionInfo } from "../src/protocol/dashboard.ts";
import { api, ApiError, currentSession, request, setSession } from "./api.ts";
import { h, message, replace } from "./dom.ts";
import { startFollowing, stopFollowing } from "./follow.ts";
import { devicesPage } from "./devices_page.ts";
import { devicePage } from "./device_page.ts";
import { keysPage } from "./keys_page.ts";
import { sharesPage } from "./shares_page.ts";
import { auditPage } from "./audit_page.ts";
import { navigate, setRenderer } from "./router.ts";

/** A page: renders into `root`; may return a function that tears it down. */
export type Page = (root: HTMLElement, params: string[]) => (() => void) | void;

const PAGES: [RegExp, Page, "any" | "full"][] = [
  [/^\/$/, devicesPage, "any"],
  [/^\/device\/([^/]+)$/, devicePage, "any"],
  [/^\/shares$/, sharesPage, "any"],
  [/^\/keys$/, keysPage, "full"],
  [/^\/audit$/, auditPage, "full"],
];

const NAMES: Record<string, string> = { "/keys": "keys page", "/audit": "audit log" };

let teardown: (() => void) | void;
const header = h("header", { class: "top" });
const main = h("main", { id: "main" });

function navLink(path: string, label: string): HTMLElement {
  const active = path === "/"
    ? location.pathname === "/" || location.pathname.startsWith("/device/")
    : location.pathname === path;
  return h("a", { href: path, "data-link": true, class: active ? "active" : "" }, label);
}

function renderHeader(s: SessionInfo): void {
  replace(
    header,
    h("a", { href: "/", "data-link": true, class: "brand" }, "od"),
    h(
      "nav",
      {},
      navLink("/", "Devices"),
      navLink("/shares", "Shares"),
      s.role === "full" && navLink("/keys", "Keys"),
      s.role === "full" && navLink("/audit", "Audit"),
    ),
    h(
      "div",
      { class: "who" },
      h(
        "span",
        { title: `key ${s.keyId}, session until ${s.expiresAt}` },
        `${s.account} · ${s.role} key`,
      ),
      h("button", { type: "button", id: "sign-out", onclick: () => signOut() }, "Sign out"),
    ),
  );
}

/** Renders the page the URL names (or the sign-in form). */
function render(): void {
  teardown?.();
  teardown = undefined;
  const s = currentSession();
  if (!s) return signInForm();
  renderHeader(s);
  const path = location.pathname;
  for (const [re, page, needs] of PAGES) {
    const m = re.exec(path);
    if (!m) continue;
    if (needs === "full" && s.role !== "full") {
      replace(
        main,
        h("h1", {}, "Not available"),
        message(
          `The ${NAMES[path]} needs a full key; this session's key ${s.keyId} is a ${s.role} key.`,
        ),
      );
      return;
    }
    replace(main);
    teardown = page(main, m.slice(1).map((p) => decodeURIComponent(p)));
    return;
  }
  replace(main, h("h1", {}, "Not found"), message(`There is no page ${path.slice(0, 200)}.`));
}

function signInForm(notice?: string, error?: string): void {
  replace(header, h("span", { class: "brand" }, "od"));
  const input = h("input", {
    type: "password",
    id: "key",
    name: "key",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "od_client_… or od_full_…",
    required: true,
  });
  const status = h("div", { class: "status" });
  if (error) replace(status, message(error));
  else if (notice) replace(status, message(notice, "notice"));
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        replace(status);
        try {
          const res = await request("POST", "/v1/session", {
            headers: { authorization: `Bearer ${input.value.trim()}` },
          });
          started(await res.json() as SessionInfo);
        } catch (err) {
          replace(status, message((err as Error).message));
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("label", { for: "key" }, "Client or full key of your account"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  replace(main, form);
  input.focus();
}

function ended(reason: string): void {
  stopFollowing();
  teardown?.();
  teardown = undefined;
  signInForm(undefined, reason);
}

function started(s: SessionInfo): void {
  setSession(s, ended);
  startFollowing();
  render();
}

async function signOut(): Promise<void> {
  try {
    await api("DELETE", "/v1/session");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) throw err;
  }
  setSession(null);
  stopFollowing();
  teardown?.();
  teardown = undefined;
  signInForm("Signed out.");
}

async function boot(): Promise<void> {
  setRenderer(render);
  document.body.append(header, main);
  document.addEventListener("click", (e) => {
    const a = (e.target as Element).closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(a.pathname + a.search);
  });
  addEventListener("popstate", () => render());
  try {
    const res = await fetch("/v1/session", { credentials: "same-origin" });
    if (res.status === 200) return started(await res.json() as SessionInfo);
    if (res.status === 401) return signInForm(undefined, (await res.json()).error);
    await res.body?.cancel();
  } catch {
    // the relay is unreachable: the form says so when signing in
  }
  signInForm();
}

boot();
