/// <reference lib="dom" />
/**
 * One device: its facts, the `od ssh` command to reach it, its sshd host key fingerprints,
 * its properties (add, edit, remove, with the CLI's validation sentences; read-only when the
 * device is shared with the account), its events, and for a full key its audit rows, rename
 * and removal. Events about the device re-read it while the page is open.
 */
import type {
  AuditEntry,
  Device,
  Event as OdEvent,
  PropsResult,
  RenameResult,
} from "../src/protocol/api.ts";
import { keyProblem, valueProblem } from "../src/protocol/props.ts";
import { idProblem } from "../src/protocol/names.ts";
import { api, ApiError, currentSession, query, request } from "./api.ts";
import { copyText, h, message, replace } from "./dom.ts";
import { fingerprintLine } from "./fingerprint.ts";
import { listen } from "./follow.ts";
import { ago, exact, span } from "./time.ts";
import { navigate } from "./router.ts";
import { auditTable } from "./audit_page.ts";
import { manageSection } from "./device_manage.ts";

const EVENT_DAYS = 30; // the relay keeps events this long
const EVENTS_SHOWN = 200;
const AUDIT_ROWS = 25;
const RELOAD_DELAY_MS = 300; // events come in bursts (a state change, then what it reported)
const FLASH_MS = 10_000; // how long "set site" stays under the properties

function fact(label: string, value: string | Node, title?: string): HTMLElement[] {
  return [h("dt", {}, label), h("dd", { title: title ?? null }, value)];
}

function facts(d: Device): HTMLElement {
  const now = Date.now();
  const seen = d.state === "online" && d.since
    ? fact("Online since", `${span(now - Date.parse(d.since))} (${exact(d.since)})`)
    : fact("Last seen", `${ago(d.lastSeen, now)}`, exact(d.lastSeen));
  return h(
    "dl",
    { class: "facts" },
    fact("State", h("span", { class: `state ${d.state}`, id: "state" }, d.state)),
    seen,
    fact("Address", d.ip ?? "—"),
    fact("Version", d.version ?? "—"),
    fact(
      "Parent",
      d.parent
        ? h("a", { href: `/device/${encodeURIComponent(d.parent)}`, "data-link": true }, d.parent)
        : "—",
    ),
    fact("Enrolled", ago(d.createdAt, now), exact(d.createdAt)),
    fact("Account", d.account),
    fact("Services", d.services.length ? d.services.join(", ") : "none reported"),
  );
}

function connect(d: Device): HTMLElement {
  const command = `od ssh root@${d.ref}`;
  const code = h("code", { id: "ssh-command" }, command);
  const status = h("span", { class: "copied", "aria-live": "polite" });
  return h(
    "section",
    {},
    h("h2", {}, "Connect"),
    h(
      "div",
      { class: "command" },
      code,
      h("button", {
        type: "button",
        id: "copy-ssh",
        onclick: async () => {
          status.textContent = (await copyText(command, code))
            ? "copied"
            : "selected: press Ctrl-C";
        },
      }, "Copy"),
      status,
    ),
  );
}

function hostKeys(d: Device): HTMLElement {
  const lines = d.hostKeys.map((k) => fingerprintLine(k) ?? `unreadable key: ${k.slice(0, 80)}`);
  return h(
    "section",
    {},
    h("h2", {}, "Host keys"),
    lines.length
      ? h(
        "ul",
        { class: "fingerprints", id: "fingerprints" },
        lines.map((l) => h("li", {}, h("code", {}, l))),
      )
      : h("p", { class: "quiet" }, "The device reported no ssh host keys."),
  );
}

/** The properties section; `readOnly` for shared devices. */
function propsSection(
  d: Device,
  readOnly: boolean,
  flash: string | null,
  changed: (props: Record<string, string>, done: string) => void,
) {
  const status = h(
    "div",
    { class: "status", id: "props-status" },
    flash && message(flash, "notice"),
  );
  const user = Object.entries(d.props).filter(([k]) => !k.startsWith("on:")).sort(([a], [b]) =>
    a < b ? -1 : 1
  );
  const relay = Object.entries(d.props).filter(([k]) => k.startsWith("on:"));
  const send = async (body: unknown, done: string): Promise<boolean> => {
    try {
      const r = await api<PropsResult>(
        "PATCH",
        `/v1/devices/${encodeURIComponent(d.ref)}/props`,
        body,
      );
      changed(r.props, done);
      return true;
    } catch (err) {
      replace(status, message((err as Error).message));
      return false;
    }
  };
  const rows = user.map(([k, v]) => {
    if (readOnly) {
      return h(
        "tr",
        { "data-key": k },
        h("th", {}, k),
        h("td", {}, h("span", { class: "value" }, v)),
        h("td"),
      );
    }
    const input = h("input", { class: "value", value: v, "aria-label": `value of ${k}` });
    return h(
      "tr",
      { "data-key": k },
      h("th", {}, k),
      h("td", {}, input),
      h(
        "td",
        { class: "actions" },
        h("button", {
          type: "button",
          class: "save",
          onclick: () => {
            const problem = valueProblem(k, input.value);
            if (problem) return replace(status, message(problem));
            send({ set: { [k]: input.value } }, `set ${k}`);
          },
        }, "Save"),
        h("button", {
          type: "button",
          class: "remove",
          onclick: () => send({ rm: [k] }, `removed ${k}`),
        }, "Remove"),
      ),
    );
  });
  const newKey = h("input", {
    id: "new-key",
    placeholder: "key",
    "aria-label": "new property key",
  });
  const newValue = h("input", {
    id: "new-value",
    placeholder: "value",
    "aria-label": "new property value",
  });
  const add = readOnly ? null : h(
    "tr",
    { class: "add" },
    h("th", {}, newKey),
    h("td", {}, newValue),
    h(
      "td",
      { class: "actions" },
      h("button", {
        type: "button",
        id: "add-prop",
        onclick: () => {
          const k = newKey.value.trim();
          const problem = keyProblem(k) ?? valueProblem(k, newValue.value);
          if (problem) return replace(status, message(problem));
          send({ set: { [k]: newValue.value } }, `set ${k}`).then((ok) => {
            if (!ok) return;
            // Added: the reload that follows must not bring the typed pair back (keepTyped).
            newKey.value = "";
            newValue.value = "";
          });
        },
      }, "Add"),
    ),
  );
  return h(
    "section",
    {},
    h("h2", {}, "Properties"),
    readOnly && h("p", { class: "quiet" }, "Shared with your account read-only."),
    h("table", { class: "props", id: "props" }, h("tbody", {}, rows, add)),
    status,
    h(
      "details",
      {},
      h("summary", {}, "Relay properties"),
      h(
        "table",
        { class: "props" },
        h("tbody", {}, relay.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))),
      ),
    ),
  );
}

function eventLine(e: OdEvent): HTMLElement {
  const { id: _id, at, device: _device, type, ...rest } = e;
  const detail = type === "props" && Array.isArray(rest.changes)
    ? (rest.changes as { key: string; value: string | null }[]).map((c) =>
      c.value === null ? `${c.key} removed` : `${c.key}=${c.value}`
    ).join(", ") + (rest.origin ? ` (by ${rest.origin})` : "")
    : Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
  return h(
    "li",
    { "data-type": type },
    h("time", { datetime: at, title: exact(at) }, ago(at)),
    h("span", { class: "type" }, type),
    h("span", { class: "detail" }, detail),
  );
}

async function eventsSection(d: Device): Promise<HTMLElement> {
  const section = h("section", {}, h("h2", {}, "Events"));
  if (d.ref.includes(".")) {
    section.append(
      h("p", { class: "quiet" }, "Events of shared devices are shown to their owner."),
    );
    return section;
  }
  const since = Date.now() - EVENT_DAYS * 86_400_000;
  const res = await request("GET", `/v1/events${query([["device", d.id], ["since", since]])}`);
  const events = (await res.text()).split("\n").filter((l) => l.trim()).map((l) =>
    JSON.parse(l) as OdEvent
  );
  const shown = events.slice(-EVENTS_SHOWN).reverse();
  section.append(
    shown.length
      ? h("ol", { class: "events", id: "events" }, shown.map(eventLine))
      : h("p", { class: "quiet" }, "No events in the last 30 days."),
  );
  return section;
}

async function auditSection(d: Device): Promise<HTMLElement | null> {
  if (currentSession()?.role !== "full" || d.ref.includes(".")) return null;
  const rows = await api<AuditEntry[]>(
    "GET",
    `/v1/audit${query([["device", d.id], ["order", "newest"], ["limit", AUDIT_ROWS]])}`,
  );
  return h(
    "section",
    {},
    h("h2", {}, "Audit"),
    rows.length ? auditTable(rows) : h("p", { class: "quiet" }, "No audit rows for this device."),
    h(
      "p",
      {},
      h(
        "a",
        { href: `/audit?device=${encodeURIComponent(d.id)}`, "data-link": true },
        "All audit rows of this device",
      ),
    ),
  );
}

/**
 * Remembers what was typed into the inputs under `root` (by id or label) and where the focus
 * was; the returned function puts both back into the re-rendered page. A reload that lands while
 * someone types (after their own edit, or an event) then loses nothing.
 */
function keepTyped(root: HTMLElement): () => void {
  const name = (i: HTMLInputElement) => i.id || i.getAttribute("aria-label") || "";
  const typed = new Map<string, string>();
  for (const i of root.querySelectorAll("input")) {
    if (name(i) && i.value !== i.defaultValue) typed.set(name(i), i.value);
  }
  const active = document.activeElement;
  const focused = active instanceof HTMLInputElement && root.contains(active) ? name(active) : "";
  return () => {
    for (const i of root.querySelectorAll("input")) {
      const value = typed.get(name(i));
      if (value !== undefined) i.value = value;
      if (focused && name(i) === focused) i.focus();
    }
  };
}

/** Renders the page of device `ref` into `root`. */
export function devicePage(root: HTMLElement, [ref]: string[]): () => void {
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let flash: { text: string; until: number } | null = null; // the last edit's outcome, kept a while
  const load = async () => {
    let d: Device;
    try {
      d = await api<Device>("GET", `/v1/devices/${encodeURIComponent(ref)}`);
    } catch (err) {
      if (closed) return;
      return replace(
        root,
        h("p", {}, h("a", { href: "/", "data-link": true }, "← Devices")),
        h("h1", {}, ref),
        message((err as Error).message),
      );
    }
    const readOnly = d.ref.includes(".");
    const [events, audit] = await Promise.all([
      eventsSection(d),
      auditSection(d).catch((err) => message((err as Error).message)),
    ]);
    if (closed) return;
    const restore = keepTyped(root);
    replace(
      root,
      h("p", {}, h("a", { href: "/", "data-link": true }, "← Devices")),
      h(
        "h1",
        { class: "device-title" },
        h("span", { id: "device-name" }, d.ref),
        h("span", { class: `state ${d.state}` }, d.state),
      ),
      facts(d),
      connect(d),
      hostKeys(d),
      propsSection(
        d,
        readOnly,
        flash && flash.until > Date.now() ? flash.text : null,
        (_, done) => {
          flash = { text: done, until: Date.now() + FLASH_MS };
          load().catch(() => {});
        },
      ),
      events,
      audit,
      !readOnly && currentSession()?.role === "full" && manageSection(d, {
        renamed: (r: RenameResult) => navigate(`/device/${encodeURIComponent(r.id)}`, true),
        removed: () => navigate("/"),
        validate: (name: string) => idProblem(name),
      }),
    );
    restore();
  };
  const reloadSoon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      // Not while someone is typing into the page: that edit would be lost.
      const active = document.activeElement;
      if (
        active instanceof HTMLInputElement && root.contains(active) &&
        active.value !== active.defaultValue
      ) {
        return reloadSoon();
      }
      load().catch(() => {});
    }, RELOAD_DELAY_MS);
  };
  const unlisten = listen({
    event(e) {
      if (ref.includes(".")) return; // a shared device's events go to its owner
      const id = ref.toLowerCase();
      if (e.type === "renamed" && e.from === id) {
        navigate(`/device/${encodeURIComponent(e.device)}`, true); // renamed elsewhere: follow it
      } else if (e.device === id) reloadSoon();
    },
    resync: reloadSoon,
  });
  load().catch((err) => {
    if (!(err instanceof ApiError && err.status === 401)) {
      replace(root, message((err as Error).message));
    }
  });
  return () => {
    closed = true;
    clearTimeout(timer);
    unlisten();
  };
}
