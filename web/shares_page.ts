/// <reference lib="dom" />
/**
 * Shares: those the account gave and received, and for a full key adding one (an account, one
 * device or filters in the CLI's grammar, and services) and removing one it gave, which closes
 * the other account's tunnels it allowed.
 */
import type { Share } from "../src/protocol/api.ts";
import { api, currentSession } from "./api.ts";
import { h, message, replace } from "./dom.ts";
import { ago, exact } from "./time.ts";
import { tokenize } from "./search.ts";

function shareRow(s: Share, mine: boolean, remove: (s: Share) => void): HTMLElement {
  const what = s.device ?? (s.filters.length ? s.filters.join(" ") : "every device");
  return h(
    "tr",
    { "data-share": String(s.id) },
    h("td", {}, String(s.id)),
    h("td", {}, mine ? `to ${s.grantee}` : `from ${s.owner}`),
    h("td", { class: "label" }, what),
    h("td", {}, s.services.length ? s.services.join(", ") : "all"),
    h("td", { title: exact(s.createdAt) }, ago(s.createdAt)),
    h(
      "td",
      {},
      mine && currentSession()?.role === "full" && h("button", {
        type: "button",
        class: "danger",
        onclick: () => remove(s),
      }, "Remove"),
    ),
  );
}

/** Renders the shares page into `root`. */
export function sharesPage(root: HTMLElement): void {
  const session = currentSession()!;
  const list = h("tbody");
  const status = h("div", { class: "status", id: "shares-status" });
  const load = async () => {
    try {
      const shares = await api<Share[]>("GET", "/v1/shares");
      replace(
        list,
        shares.length === 0
          ? h("tr", {}, h("td", { colspan: 6, class: "quiet" }, "No shares."))
          : null,
        shares.map((s) => shareRow(s, s.owner === session.account, remove)),
      );
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  const remove = async (s: Share) => {
    try {
      const r = await api<{ tunnelsClosed: number }>("DELETE", `/v1/shares/${s.id}`);
      replace(
        status,
        message(`removed share ${s.id}; closed ${r.tunnelsClosed} tunnels`, "notice"),
      );
      load();
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  const account = h("input", {
    id: "share-account",
    placeholder: "account",
    "aria-label": "account to share with",
  });
  const device = h("input", {
    id: "share-device",
    placeholder: "device (or filters →)",
    "aria-label": "device",
  });
  const filters = h("input", {
    id: "share-filters",
    placeholder: "site=zurich group",
    "aria-label": "filters",
  });
  const services = h("input", {
    id: "share-services",
    placeholder: "ssh,web (all if empty)",
    "aria-label": "services",
  });
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      const body = {
        account: account.value.trim(),
        device: device.value.trim() || null,
        filters: tokenize(filters.value),
        services: services.value.split(",").map((s) => s.trim()).filter((s) => s),
      };
      const s = await api<Share>("POST", "/v1/shares", body);
      replace(status, message(`shared with ${s.grantee} (share ${s.id})`, "notice"));
      load();
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  replace(
    root,
    h("h1", {}, "Shares"),
    session.role === "full" && h(
      "form",
      { class: "row", id: "add-share", onsubmit: add },
      account,
      device,
      filters,
      services,
      h("button", { type: "submit" }, "Share"),
    ),
    status,
    h(
      "table",
      { class: "list", id: "shares" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Id", "With", "Devices", "Services", "Created", ""].map((t) => h("th", {}, t)),
        ),
      ),
      list,
    ),
  );
  load();
}
