/// <reference lib="dom" />
/**
 * The devices page: the search box (the CLI's filter grammar, kept in the URL with the sort so
 * a view can be bookmarked and shared), the count, the windowed table, and the bulk editor that
 * sets or removes one property on every selected device. The first time rows are in the
 * document the page records `performance.mark("od:first-rows")`, which the benchmark reads.
 */
import type { PropsResult } from "../src/protocol/api.ts";
import { keyProblem, valueProblem } from "../src/protocol/props.ts";
import { api } from "./api.ts";
import { h, message, replace } from "./dom.ts";
import { Fleet, SORT_KEYS, type SortKey } from "./fleet.ts";
import { listen } from "./follow.ts";
import { parseSearch } from "./search.ts";
import { deviceTable } from "./device_table.ts";

const SEARCH_DELAY_MS = 250; // typing pauses this long before the relay is asked
const BULK_PARALLEL = 4; // requests in flight during a bulk edit
const TICK_MS = 30_000; // "3 min ago" stays true to the minute without re-rendering often
let firstRowsMarked = false;

/** The page's state as the URL holds it. */
function fromUrl(): { q: string; sort: SortKey; desc: boolean } {
  const p = new URLSearchParams(location.search);
  const sort = p.get("sort") as SortKey | null;
  return {
    q: p.get("q") ?? "",
    sort: sort && (SORT_KEYS as readonly string[]).includes(sort) ? sort : "device",
    desc: p.get("desc") === "1",
  };
}

function toUrl(q: string, sort: SortKey, desc: boolean): void {
  const p = new URLSearchParams();
  if (q.trim()) p.set("q", q);
  if (sort !== "device") p.set("sort", sort);
  if (desc) p.set("desc", "1");
  const search = p.toString();
  history.replaceState(null, "", search ? `/?${search}` : "/");
}

/** Applies one change to many devices, a few at a time; returns the refusals by device. */
async function bulk(refs: string[], body: unknown, progress: (done: number) => void) {
  const failed: [string, string][] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < refs.length) {
      const ref = refs[next++];
      try {
        await api<PropsResult>("PATCH", `/v1/devices/${encodeURIComponent(ref)}/props`, body);
      } catch (err) {
        failed.push([ref, (err as Error).message]);
      }
      progress(++done);
    }
  };
  await Promise.all(Array.from({ length: BULK_PARALLEL }, worker));
  return failed;
}

/** Renders the devices page into `root`. */
export function devicesPage(root: HTMLElement): () => void {
  const state = fromUrl();
  const fleet = new Fleet();
  fleet.setSort(state.sort, state.desc);
  const selected = new Set<string>();
  const count = h("span", { class: "count", id: "count", "aria-live": "polite" });
  const searchError = h("div", { class: "search-error" });
  const search = h("input", {
    type: "search",
    id: "search",
    value: state.q,
    placeholder: "site=zurich on:version!=0.2.0 group",
    "aria-label": "filter devices",
    spellcheck: "false",
    autocomplete: "off",
  });
  const bulkKey = h("input", { id: "bulk-key", placeholder: "key", "aria-label": "property key" });
  const bulkValue = h("input", {
    id: "bulk-value",
    placeholder: "value",
    "aria-label": "property value",
  });
  const bulkCount = h("span", { id: "bulk-count" });
  const bulkStatus = h("div", { class: "status", id: "bulk-status" });
  const bulkBar = h(
    "div",
    { class: "bulk", id: "bulk", hidden: true },
    bulkCount,
    bulkKey,
    bulkValue,
    h(
      "button",
      { type: "button", id: "bulk-set", onclick: () => bulkEdit("set") },
      "Set on selected",
    ),
    h(
      "button",
      { type: "button", id: "bulk-rm", onclick: () => bulkEdit("rm") },
      "Remove from selected",
    ),
    h("button", {
      type: "button",
      class: "quiet",
      onclick: () => {
        selected.clear();
        selectionChanged();
        table.render();
      },
    }, "Clear selection"),
    bulkStatus,
  );
  const listError = h("div", { class: "list-error" });

  const table = deviceTable({
    fleet,
    selected,
    onSort(key) {
      const desc = fleet.sort === key ? !fleet.desc : false;
      fleet.setSort(key, desc);
      toUrl(search.value, key, desc);
    },
    onSelect: selectionChanged,
    drawn(rows) {
      if (firstRowsMarked || (rows === 0 && !fleet.complete)) return;
      firstRowsMarked = true;
      performance.mark("od:first-rows");
    },
  });

  function selectionChanged(): void {
    bulkBar.hidden = selected.size === 0;
    bulkCount.textContent = `${selected.size} selected`;
  }

  async function bulkEdit(kind: "set" | "rm"): Promise<void> {
    const key = bulkKey.value.trim();
    const value = bulkValue.value;
    const problem = keyProblem(key) ?? (kind === "set" ? valueProblem(key, value) : null);
    if (problem) return replace(bulkStatus, message(problem));
    const refs = [...selected];
    const body = kind === "set" ? { set: { [key]: value } } : { rm: [key] };
    const what = kind === "set" ? `set ${key}=${value} on` : `removed ${key} from`;
    const failed = await bulk(refs, body, (done) => {
      replace(bulkStatus, message(`${done} of ${refs.length} devices…`, "notice"));
    });
    if (failed.length === 0) {
      replace(bulkStatus, message(`${what} ${refs.length} devices`, "notice"));
    } else {
      replace(
        bulkStatus,
        message(`${what} ${refs.length - failed.length} of ${refs.length} devices`, "notice"),
        failed.slice(0, 10).map(([ref, why]) => message(`${ref}: ${why}`)),
      );
    }
  }

  function updateCount(): void {
    const rows = fleet.rows;
    let online = 0;
    for (const d of rows) if (d.state === "online") online++;
    const n = rows.length.toLocaleString("en");
    count.textContent = `${n} device${rows.length === 1 ? "" : "s"}${
      fleet.complete ? "" : " so far, loading…"
    } · ${online.toLocaleString("en")} online`;
    replace(listError, fleet.error && message(fleet.error));
  }

  let timer: ReturnType<typeof setTimeout> | undefined;
  function searchChanged(): void {
    clearTimeout(timer);
    timer = setTimeout(() => {
      let parsed;
      try {
        parsed = parseSearch(search.value);
      } catch (err) {
        return replace(searchError, message((err as Error).message));
      }
      replace(searchError);
      toUrl(search.value, fleet.sort, fleet.desc);
      selected.clear();
      selectionChanged();
      fleet.load(parsed.args, parsed.filters);
    }, SEARCH_DELAY_MS);
  }
  search.addEventListener("input", searchChanged);

  fleet.addEventListener("change", () => {
    updateCount();
    table.render();
  });
  const unlisten = listen({ event: (e) => fleet.apply(e), resync: () => fleet.resync() });
  const tick = setInterval(() => table.render(), TICK_MS);
  const resize = () => table.render();
  addEventListener("resize", resize);

  replace(
    root,
    h("div", { class: "toolbar" }, search, count),
    searchError,
    bulkBar,
    listError,
    table.element,
  );
  try {
    const parsed = parseSearch(state.q);
    fleet.load(parsed.args, parsed.filters);
  } catch (err) {
    replace(searchError, message((err as Error).message));
  }
  return () => {
    clearTimeout(timer);
    clearInterval(tick);
    removeEventListener("resize", resize);
    unlisten();
    fleet.close();
  };
}
