/// <reference lib="dom" />
/**
 * The devices table, windowed: rows have one fixed height and only those in view (and a few
 * either side) exist in the document, between two spacer rows that keep the scroll height of the
 * whole list. So 10,000 devices cost 10,000 objects and some 40 table rows, and scrolling,
 * sorting or a storm of events re-renders a screenful.
 */
import type { Device } from "../src/protocol/api.ts";
import { h, replace } from "./dom.ts";
import { ago, exact, span } from "./time.ts";
import type { Fleet, SortKey } from "./fleet.ts";

/** Height of one row in CSS pixels (app.css gives rows exactly this height). */
export const ROW_HEIGHT = 36;
const OVERSCAN = 10; // rows rendered beyond each edge, so fast scrolling shows no blank
const CHIPS = 8; // property chips per row; the device page shows all

const COLUMNS: [SortKey | null, string][] = [
  [null, ""],
  ["device", "Device"],
  ["state", "State"],
  ["seen", "Since / last seen"],
  ["address", "Address"],
  ["version", "Version"],
  ["parent", "Parent"],
  [null, "Properties"],
];

/** What the table needs from its page. */
export interface TableHost {
  fleet: Fleet;
  selected: Set<string>;
  onSort(key: SortKey): void;
  onSelect(): void;
  /** Called after each render with the number of rows put in the document. */
  drawn(rows: number): void;
}

function seenCell(d: Device, now: number): HTMLElement {
  if (d.state === "online" && d.since !== null) {
    return h(
      "td",
      { class: "seen", title: `online since ${exact(d.since)}` },
      `for ${span(now - Date.parse(d.since))}`,
    );
  }
  return h("td", { class: "seen", title: `last seen ${exact(d.lastSeen)}` }, ago(d.lastSeen, now));
}

function chips(props: Record<string, string>): HTMLElement {
  const user = Object.entries(props).filter(([k]) => !k.startsWith("on:"));
  const cell = h("td", { class: "props" });
  for (const [k, v] of user.slice(0, CHIPS)) {
    cell.append(h("span", { class: "chip", title: `${k}=${v}` }, h("b", {}, k), "=", v));
  }
  if (user.length > CHIPS) cell.append(h("span", { class: "more" }, `+${user.length - CHIPS}`));
  return cell;
}

function row(d: Device, host: TableHost, now: number): HTMLTableRowElement {
  const shared = d.ref.includes(".");
  const box = h("input", {
    type: "checkbox",
    class: "select",
    "aria-label": `select ${d.ref}`,
    disabled: shared,
    title: shared ? "shared with you read-only" : null,
    onchange: () => {
      if (box.checked) host.selected.add(d.ref);
      else host.selected.delete(d.ref);
      host.onSelect();
    },
  });
  box.checked = host.selected.has(d.ref);
  return h(
    "tr",
    { "data-ref": d.ref, "data-state": d.state, class: shared ? "shared" : "" },
    h("td", { class: "check" }, box),
    h(
      "td",
      { class: "device" },
      h("a", { href: `/device/${encodeURIComponent(d.ref)}`, "data-link": true }, d.ref),
      shared && h("span", { class: "badge", title: "shared with you read-only" }, "shared"),
    ),
    h("td", { class: "state" }, h("span", { class: `state ${d.state}` }, d.state)),
    seenCell(d, now),
    h("td", { class: "ip" }, d.ip ?? "—"),
    h("td", { class: "version" }, d.version ?? "—"),
    h("td", { class: "parent" }, d.parent ?? ""),
    chips(d.props),
  );
}

/** Builds the table; returns its element and the function that re-renders the visible rows. */
export function deviceTable(host: TableHost): { element: HTMLElement; render: () => void } {
  const body = h("tbody");
  const all = h("input", {
    type: "checkbox",
    "aria-label": "select every device shown",
    onchange: () => {
      for (const d of host.fleet.rows) {
        if (d.ref.includes(".")) continue;
        if (all.checked) host.selected.add(d.ref);
        else host.selected.delete(d.ref);
      }
      host.onSelect();
      render();
    },
  });
  const head = h("tr", {});
  const scroller = h(
    "div",
    { class: "scroller" },
    h("table", { class: "devices" }, h("thead", {}, head), body),
  );
  let queued = false;

  function headers(): void {
    replace(
      head,
      COLUMNS.map(([key, label]) => {
        if (key === null) return h("th", { class: label ? "" : "check" }, label || all);
        const sorted = host.fleet.sort === key;
        const arrow = sorted ? (host.fleet.desc ? " ▼" : " ▲") : "";
        return h(
          "th",
          { "aria-sort": sorted ? (host.fleet.desc ? "descending" : "ascending") : "none" },
          h("button", {
            type: "button",
            class: "sort",
            "data-sort": key,
            onclick: () => host.onSort(key),
          }, label + arrow),
        );
      }),
    );
  }

  function draw(): void {
    queued = false;
    headers();
    const rows = host.fleet.rows;
    const top = Math.max(0, scroller.scrollTop - ROW_HEIGHT); // the header row scrolls too
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const count = Math.ceil(scroller.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const last = Math.min(rows.length, first + count);
    const now = Date.now();
    const before = h("tr", { class: "spacer" });
    before.style.height = `${first * ROW_HEIGHT}px`;
    const after = h("tr", { class: "spacer" });
    after.style.height = `${(rows.length - last) * ROW_HEIGHT}px`;
    replace(body, before, rows.slice(first, last).map((d) => row(d, host, now)), after);
    const own = rows.filter((d) => !d.ref.includes("."));
    all.checked = own.length > 0 && own.every((d) => host.selected.has(d.ref));
    host.drawn(last - first);
  }

  function render(): void {
    if (queued) return;
    queued = true;
    requestAnimationFrame(draw);
  }

  scroller.addEventListener("scroll", render, { passive: true });
  return { element: scroller, render };
}
