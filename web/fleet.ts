/**
 * The devices the page shows, kept current: loaded in pages (a small first page so rows appear
 * at once, then large ones in the background until the listing is complete), filtered by the
 * relay with the search's filters, sorted here, and updated from the account's event stream
 * (state, property, rename, removal and enrolment events) without reloading.
 *
 * Events carry what changes most (state, address, property values); other facts (version,
 * services) are re-read for the devices an event named, a few at a time, or by listing again
 * when a storm names many. Devices shared with the account have no events for it: they are
 * listed again every SHARED_POLL_MS.
 */
import type { Device, Event as OdEvent } from "../src/protocol/api.ts";
import { type Filter, matches } from "../src/protocol/filter.ts";
import { api, ApiError, query } from "./api.ts";

/** Rows in the first page: enough to fill a screen, quick to list at any fleet size. */
export const FIRST_PAGE = 100;
const PAGE = 2_500; // later pages: a 10,000-device fleet in four more requests
const REFRESH_MS = 1_000; // how often devices named by events are re-read
const MAX_SINGLE_REFRESH = 20; // beyond this many at once, listing again is cheaper
const SHARED_POLL_MS = 15_000;
const RELIST_MIN_MS = 10_000; // a reconnect storm relists at most this often

/** Columns the table sorts by. */
export const SORT_KEYS = ["device", "state", "seen", "address", "version", "parent"] as const;
/** One of SORT_KEYS. */
export type SortKey = typeof SORT_KEYS[number];

const natural = new Intl.Collator("en", { numeric: true });

function seenAt(d: Device): number {
  const t = d.state === "online" ? d.since : d.lastSeen;
  return t === null ? 0 : Date.parse(t);
}

const COMPARE: Record<SortKey, (a: Device, b: Device) => number> = {
  // As od list orders them: own devices, then shared ones (`owner.id`); by ref within each.
  device: (a, b) => Number(a.ref.includes(".")) - Number(b.ref.includes(".")),
  state: (a, b) => (a.state === b.state ? 0 : a.state === "online" ? -1 : 1),
  seen: (a, b) => seenAt(b) - seenAt(a),
  address: (a, b) => natural.compare(a.ip ?? "", b.ip ?? ""),
  version: (a, b) => natural.compare(a.version ?? "", b.version ?? ""),
  parent: (a, b) => natural.compare(a.parent ?? "", b.parent ?? ""),
};

/** The fleet as the page sees it; listeners of "change" re-render. */
export class Fleet extends EventTarget {
  #all = new Map<string, Device>();
  #rows: Device[] = [];
  #sorted = true;
  #args: string[] = [];
  #filters: Filter[] = [];
  #generation = 0;
  #dirty = new Set<string>();
  #lastList = 0;
  #timers: ReturnType<typeof setInterval>[] = [];
  #changeQueued = false;
  sort: SortKey = "device";
  desc = false;
  /** True once every page has arrived. */
  complete = false;
  /** The last listing error, shown instead of rows. */
  error: string | null = null;

  constructor() {
    super();
    this.#timers.push(setInterval(() => this.#refresh(), REFRESH_MS));
    this.#timers.push(setInterval(() => this.#pollShared(), SHARED_POLL_MS));
  }

  /** Stops the timers. */
  close(): void {
    this.#timers.forEach(clearInterval);
    this.#generation++;
  }

  /** The devices matching the search, sorted. */
  get rows(): Device[] {
    if (!this.#sorted) {
      const by = COMPARE[this.sort];
      const dir = this.desc ? -1 : 1;
      this.#rows = [...this.#all.values()].sort((a, b) =>
        dir * (by(a, b) || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0))
      );
      this.#sorted = true;
    }
    return this.#rows;
  }

  /** A device shown now, by ref. */
  get(ref: string): Device | undefined {
    return this.#all.get(ref);
  }

  /** Sorts by `key` (descending if `desc`). */
  setSort(key: SortKey, desc: boolean): void {
    this.sort = key;
    this.desc = desc;
    this.#changed();
  }

  #changed(): void {
    this.#sorted = false;
    if (this.#changeQueued) return;
    this.#changeQueued = true;
    queueMicrotask(() => {
      this.#changeQueued = false;
      this.dispatchEvent(new Event("change"));
    });
  }

  #put(d: Device): void {
    if (matches(d.props, this.#filters)) this.#all.set(d.ref, d);
    else this.#all.delete(d.ref);
  }

  #listPath(limit: number, after?: string): string {
    return "/v1/devices" +
      query([
        ["limit", limit],
        ["after", after],
        ...this.#args.map((f): [string, string] => [
          "filter",
          f,
        ]),
      ]);
  }

  /** Lists the devices matching `args` from the start, first page first. */
  async load(args: string[], filters: Filter[]): Promise<void> {
    const generation = ++this.#generation;
    this.#args = args;
    this.#filters = filters;
    this.#lastList = Date.now();
    this.complete = false;
    this.error = null;
    let limit = FIRST_PAGE;
    let after: string | undefined;
    let fresh = true;
    try {
      while (true) {
        const page = await api<Device[]>("GET", this.#listPath(limit, after));
        if (generation !== this.#generation) return;
        if (fresh) this.#all.clear(); // replaced only when the new listing arrives
        fresh = false;
        page.forEach((d) => this.#put(d));
        this.#changed();
        if (page.length < limit) break;
        after = page[page.length - 1].ref;
        limit = PAGE;
      }
      this.complete = true;
    } catch (err) {
      if (generation !== this.#generation) return;
      this.error = (err as Error).message;
    }
    this.#changed();
  }

  /** Applies one event of the account's stream. */
  apply(e: OdEvent): void {
    const d = this.#all.get(e.device);
    switch (e.type) {
      case "state": {
        if (!d) return this.#markDirty(e.device);
        const online = e.state === "online";
        d.state = online ? "online" : "offline";
        d.since = online ? e.at : null;
        d.lastSeen = e.at;
        if (online && typeof e.ip === "string") d.ip = e.ip;
        d.props["on:state"] = d.state;
        d.props["on:lastSeen"] = e.at;
        if (online) d.props["on:since"] = e.at;
        else delete d.props["on:since"];
        this.#put(d);
        if (online) this.#markDirty(e.device); // the version it reports comes after
        break;
      }
      case "props": {
        if (!d) return this.#markDirty(e.device);
        const changes = Array.isArray(e.changes) ? e.changes : [];
        for (const c of changes as { key: string; value: string | null }[]) {
          if (c.value === null) delete d.props[c.key];
          else d.props[c.key] = c.value;
        }
        this.#put(d);
        break;
      }
      case "renamed":
        if (typeof e.from === "string") this.#all.delete(e.from);
        this.#markDirty(e.device);
        break;
      case "removed":
        this.#all.delete(e.device);
        break;
      default: // enrolled, clone
        this.#markDirty(e.device);
    }
    this.#changed();
  }

  /** After the event stream reconnected: events may have been missed. */
  resync(): void {
    this.load(this.#args, this.#filters);
  }

  #markDirty(ref: string): void {
    this.#dirty.add(ref);
  }

  async #refresh(): Promise<void> {
    if (this.#dirty.size === 0) return;
    if (this.#dirty.size > MAX_SINGLE_REFRESH) {
      if (Date.now() - this.#lastList < RELIST_MIN_MS) return; // keep them for the next pass
      this.#dirty.clear();
      return this.load(this.#args, this.#filters);
    }
    const refs = [...this.#dirty];
    this.#dirty.clear();
    const generation = this.#generation;
    for (const ref of refs) {
      try {
        const d = await api<Device>("GET", `/v1/devices/${encodeURIComponent(ref)}`);
        if (generation === this.#generation) this.#put(d);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) this.#all.delete(ref);
      }
    }
    this.#changed();
  }

  async #pollShared(): Promise<void> {
    if (!this.complete) return;
    const generation = this.#generation;
    try {
      // `after=.` starts the listing among shared devices (refs `owner.id`).
      const shared = await api<Device[]>("GET", this.#listPath(PAGE, "."));
      if (generation !== this.#generation) return;
      for (const ref of [...this.#all.keys()]) if (ref.includes(".")) this.#all.delete(ref);
      shared.forEach((d) => this.#put(d));
      this.#changed();
    } catch {
      // shown by the next listing
    }
  }
}
