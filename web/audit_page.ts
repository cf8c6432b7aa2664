/// <reference lib="dom" />
/**
 * The audit log, for a full key: the account's rows newest first, a page at a time (older and
 * newer by row id), filtered by device and by age; the filters are kept in the URL.
 */
import type { AuditEntry } from "../src/protocol/api.ts";
import { api, query } from "./api.ts";
import { h, message, replace } from "./dom.ts";
import { ago, exact, parseSpan } from "./time.ts";

const PAGE = 100;

const bytes = (n: number | null) =>
  n === null
    ? ""
    : n < 1024
    ? `${n} B`
    : n < 1048576
    ? `${(n / 1024).toFixed(1)} KiB`
    : `${(n / 1048576).toFixed(1)} MiB`;

/** A table of audit rows. */
export function auditTable(rows: AuditEntry[]): HTMLElement {
  return h(
    "table",
    { class: "list audit", id: "audit-rows" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        [
          "Time",
          "Account",
          "Key",
          "Address",
          "Action",
          "Device",
          "Result",
          "Reason",
          "Duration",
          "Up / down",
        ].map((t) => h("th", {}, t)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((r) =>
        h(
          "tr",
          { "data-id": String(r.id), class: `result-${r.result}` },
          h("td", { title: exact(r.at) }, ago(r.at)),
          h("td", {}, r.account ?? "—"),
          h("td", {}, r.key ?? "—"),
          h("td", {}, r.ip),
          h("td", {}, r.action),
          h(
            "td",
            {},
            r.device
              ? (r.owner && r.owner !== r.account ? `${r.owner}.${r.device}` : r.device)
              : "",
            r.service ? ` (${r.service})` : "",
          ),
          h("td", { class: "result" }, r.result, r.count > 1 ? ` ×${r.count}` : ""),
          h("td", { class: "reason" }, r.reason),
          h("td", {}, r.durationMs === null ? "" : `${(r.durationMs / 1000).toFixed(1)} s`),
          h("td", {}, r.bytesUp === null ? "" : `${bytes(r.bytesUp)} / ${bytes(r.bytesDown)}`),
        )
      ),
    ),
  );
}

/** Renders the audit page into `root`. */
export function auditPage(root: HTMLElement): void {
  const params = new URLSearchParams(location.search);
  const device = h("input", {
    id: "audit-device",
    value: params.get("device") ?? "",
    placeholder: "device",
    "aria-label": "device",
  });
  const since = h("input", {
    id: "audit-since",
    value: params.get("since") ?? "",
    placeholder: "since: 2h, 7d (all if empty)",
    "aria-label": "since",
  });
  const status = h("div", { class: "status" });
  const rows = h("div", {});
  const pager = h("div", { class: "row pager" });
  const cursors: (number | undefined)[] = [undefined]; // `before` of each page shown so far

  const show = async () => {
    const before = cursors[cursors.length - 1];
    const age = since.value.trim() ? parseSpan(since.value) : null;
    if (since.value.trim() && age === null) {
      return replace(
        status,
        message(`since "${since.value.slice(0, 40)}" must be like 30m, 2h or 7d`),
      );
    }
    try {
      const page = await api<AuditEntry[]>(
        "GET",
        "/v1/audit" + query([
          ["order", "newest"],
          ["limit", PAGE],
          ["before", before],
          ["device", device.value.trim().toLowerCase()],
          ["since", age === null ? undefined : Date.now() - age],
        ]),
      );
      replace(status);
      replace(rows, page.length ? auditTable(page) : h("p", { class: "quiet" }, "No audit rows."));
      replace(
        pager,
        cursors.length > 1 &&
          h(
            "button",
            { type: "button", id: "audit-newer", onclick: () => (cursors.pop(), show()) },
            "← Newer",
          ),
        page.length === PAGE && h("button", {
          type: "button",
          id: "audit-older",
          onclick: () => (cursors.push(page[page.length - 1].id), show()),
        }, "Older →"),
      );
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  const apply = (e: Event) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (device.value.trim()) p.set("device", device.value.trim());
    if (since.value.trim()) p.set("since", since.value.trim());
    history.replaceState(null, "", `/audit${p.size ? `?${p}` : ""}`);
    cursors.splice(1);
    show();
  };
  replace(
    root,
    h("h1", {}, "Audit log"),
    h(
      "form",
      { class: "row", id: "audit-filter", onsubmit: apply },
      device,
      since,
      h("button", { type: "submit" }, "Filter"),
    ),
    status,
    rows,
    pager,
  );
  show();
}
