/// <reference lib="dom" />
/**
 * The account's keys, for a full key: the list (never a secret), adding a key with a role and a
 * label — its secret is shown once, here, with a copy button — and revoking one, which closes
 * the tunnels opened with it at once (and ends this session, if it is its own key).
 */
import type { AddedKey, ApiKey } from "../src/protocol/api.ts";
import { KEY_ROLES } from "../src/protocol/keys.ts";
import { api, currentSession } from "./api.ts";
import { copyText, h, message, replace } from "./dom.ts";
import { ago, exact } from "./time.ts";

function keyRow(k: ApiKey, revoke: (k: ApiKey) => void): HTMLElement {
  const own = k.id === currentSession()?.keyId;
  return h(
    "tr",
    { "data-key-id": k.id, class: k.revokedAt ? "revoked" : "" },
    h("td", {}, h("code", {}, k.id), own && h("span", { class: "badge" }, "this session")),
    h("td", {}, k.role),
    h("td", { class: "label" }, k.label),
    h("td", { title: exact(k.createdAt) }, ago(k.createdAt)),
    h("td", { title: exact(k.lastUsedAt) }, k.lastUsedAt ? ago(k.lastUsedAt) : "never"),
    h(
      "td",
      {},
      k.revokedAt
        ? h("span", { title: exact(k.revokedAt) }, `revoked ${ago(k.revokedAt)}`)
        : h("button", {
          type: "button",
          class: "revoke danger",
          onclick: () => revoke(k),
        }, "Revoke…"),
    ),
  );
}

/** Renders the keys page into `root`. */
export function keysPage(root: HTMLElement): void {
  const list = h("tbody");
  const status = h("div", { class: "status", id: "keys-status" });
  const added = h("div", { class: "added", id: "added-key" });
  const role = h(
    "select",
    { id: "key-role", "aria-label": "role" },
    KEY_ROLES.map((r) => h("option", { value: r }, r)),
  );
  const label = h("input", {
    id: "key-label",
    placeholder: "label (who or what uses it)",
    "aria-label": "label",
  });

  const load = async () => {
    try {
      const keys = await api<ApiKey[]>("GET", "/v1/keys");
      replace(list, keys.map((k) => keyRow(k, confirmRevoke)));
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  const confirmRevoke = (k: ApiKey) => {
    const own = k.id === currentSession()?.keyId;
    replace(
      status,
      h(
        "p",
        { class: "confirm" },
        `Revoke ${k.id}${k.label ? ` (${k.label})` : ""}? Tunnels opened with it close at once` +
          (own ? ", and so does this session. " : ". "),
        h("button", {
          type: "button",
          id: "revoke-confirm",
          class: "danger",
          onclick: async () => {
            try {
              const r = await api<{ tunnelsClosed: number }>(
                "DELETE",
                `/v1/keys/${encodeURIComponent(k.id)}`,
              );
              replace(
                status,
                message(`revoked ${k.id}; closed ${r.tunnelsClosed} tunnels`, "notice"),
              );
              load();
            } catch (err) {
              replace(status, message((err as Error).message));
            }
          },
        }, "Revoke"),
        h("button", { type: "button", class: "quiet", onclick: () => replace(status) }, "Cancel"),
      ),
    );
  };
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      const k = await api<AddedKey>("POST", "/v1/keys", { role: role.value, label: label.value });
      const secret = h("code", { id: "new-key-secret" }, k.key);
      const copied = h("span", { class: "copied" });
      replace(
        added,
        h("p", {}, `New ${k.role} key ${k.id}. Copy it now: it is shown only this once.`),
        h(
          "div",
          { class: "command" },
          secret,
          h("button", {
            type: "button",
            onclick: async () => {
              copied.textContent = (await copyText(k.key, secret))
                ? "copied"
                : "selected: press Ctrl-C";
            },
          }, "Copy"),
          copied,
        ),
      );
      label.value = "";
      replace(status);
      load();
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  replace(
    root,
    h("h1", {}, "Keys"),
    h(
      "form",
      { class: "row", id: "add-key", onsubmit: add },
      role,
      label,
      h("button", { type: "submit" }, "Add key"),
    ),
    added,
    status,
    h(
      "table",
      { class: "list", id: "keys" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Key", "Role", "Label", "Created", "Last used", ""].map((t) => h("th", {}, t)),
        ),
      ),
      list,
    ),
  );
  load();
}
