/// <reference lib="dom" />
/**
 * Renaming and removing a device, for a full key: the new name is checked with the CLI's
 * sentence before it is sent, and removal asks once more on the page (and, for a device that is
 * online, whether to disconnect it).
 */
import type { Device, RenameResult } from "../src/protocol/api.ts";
import { api } from "./api.ts";
import { h, message, replace } from "./dom.ts";

/** What the page does after a change. */
export interface ManageHooks {
  renamed(r: RenameResult): void;
  removed(): void;
  /** The sentence for a malformed name, or null. */
  validate(name: string): string | null;
}

/** The manage section of a device page. */
export function manageSection(d: Device, hooks: ManageHooks): HTMLElement {
  const status = h("div", { class: "status", id: "manage-status" });
  const name = h("input", { id: "rename-to", value: d.id, "aria-label": "new device ID" });
  const rename = async () => {
    const to = name.value.trim();
    const problem = hooks.validate(to);
    if (problem) return replace(status, message(problem));
    try {
      hooks.renamed(
        await api<RenameResult>("POST", `/v1/devices/${encodeURIComponent(d.id)}/rename`, {
          name: to,
        }),
      );
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  const confirm = h("span", { class: "confirm", hidden: true });
  const remove = async () => {
    try {
      const force = d.state === "online" ? "?force=1" : "";
      await api("DELETE", `/v1/devices/${encodeURIComponent(d.id)}${force}`);
      hooks.removed();
    } catch (err) {
      replace(status, message((err as Error).message));
    }
  };
  replace(
    confirm,
    d.state === "online"
      ? `${d.id} is online: removing it disconnects its daemon, which cannot come back with its credential. `
      : `Remove ${d.id} and its properties? `,
    h(
      "button",
      { type: "button", id: "remove-confirm", class: "danger", onclick: remove },
      "Remove",
    ),
    h(
      "button",
      { type: "button", class: "quiet", onclick: () => (confirm.hidden = true) },
      "Cancel",
    ),
  );
  return h(
    "section",
    { class: "manage" },
    h("h2", {}, "Manage"),
    h(
      "div",
      { class: "row" },
      name,
      h("button", { type: "button", id: "rename", onclick: rename }, "Rename"),
    ),
    h(
      "div",
      { class: "row" },
      h("button", {
        type: "button",
        id: "remove",
        class: "danger",
        onclick: () => (confirm.hidden = false),
      }, "Remove device…"),
      confirm,
    ),
    status,
  );
}
