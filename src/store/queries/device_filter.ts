/**
 * Device filters (`key=value`, `key!=value`, `key`) as SQL over `devices d`, so listings filter
 * in the database and pages stay full. User properties match present (non-removed) values; the
 * relay's `on:` properties come from the device's columns and its link (src/relay/api.ts shows
 * the same values): a device is online while a relay whose heartbeat is recent holds its link,
 * and an online device's `on:lastSeen` is "now", which no stored time equals.
 */
import type { Filter } from "../../protocol/filter.ts";

/** A WHERE condition with its parameters. */
export interface Condition {
  sql: string;
  params: (string | number | null)[];
}

const ONLINE = `EXISTS (SELECT 1 FROM device_links l JOIN relays r ON r.id = l.relay_id
  WHERE l.device_id = d.id AND r.heartbeat_at >= ?)`;
const ONLINE_SINCE = `EXISTS (SELECT 1 FROM device_links l JOIN relays r ON r.id = l.relay_id
  WHERE l.device_id = d.id AND r.heartbeat_at >= ? AND l.since = ?)`;

const COLUMNS: Record<string, string> = {
  "on:parent": "d.parent",
  "on:version": "d.version",
  "on:ip": "d.last_ip",
};

const TRUE: Condition = { sql: "1 = 1", params: [] };
const FALSE: Condition = { sql: "1 = 0", params: [] };

/** Milliseconds of an ISO time exactly as the API prints it, or null. */
function isoMs(text: string): number | null {
  const ms = Date.parse(text);
  return Number.isFinite(ms) && new Date(ms).toISOString() === text ? ms : null;
}

function not(c: Condition): Condition {
  return { sql: `NOT (${c.sql})`, params: c.params };
}

/** `has`, `=` and `!=` from the condition "equals value" and the condition "has a value". */
function compare(f: Filter, equals: (v: string) => Condition, has: Condition): Condition {
  if (f.op === "has") return has;
  return f.op === "=" ? equals(f.value) : not(equals(f.value));
}

/**
 * The SQL for one filter; `liveSince` is the oldest heartbeat that keeps a relay live. A value
 * with a NUL character equals nothing stored (od stores none, and PostgreSQL's text cannot hold
 * one), so it never reaches the database.
 */
export function filterSql(f: Filter, liveSince: number): Condition {
  if (f.op !== "has" && f.value.includes("\0")) return compare(f, () => FALSE, TRUE);
  const online: Condition = { sql: ONLINE, params: [liveSince] };
  // Own keys only: `constructor` or `toString` are property names a user may filter by.
  const column = Object.hasOwn(COLUMNS, f.key) ? COLUMNS[f.key] : undefined;
  if (column) {
    return compare(
      f,
      (v) => ({ sql: `coalesce(${column} = ?, false)`, params: [v] }),
      { sql: `${column} IS NOT NULL`, params: [] },
    );
  }
  switch (f.key) {
    case "on:state":
      return compare(
        f,
        (v) => (v === "online" ? online : v === "offline" ? not(online) : FALSE),
        TRUE,
      );
    case "on:createdAt":
      return compare(f, (v) => {
        const ms = isoMs(v);
        return ms === null ? FALSE : { sql: "d.created_at = ?", params: [ms] };
      }, TRUE);
    case "on:since":
      return compare(f, (v) => {
        const ms = isoMs(v);
        return ms === null ? FALSE : { sql: ONLINE_SINCE, params: [liveSince, ms] };
      }, online);
    case "on:lastSeen":
      return compare(f, (v) => {
        const ms = isoMs(v);
        return ms === null
          ? FALSE
          : { sql: `(d.last_seen = ? AND NOT ${ONLINE})`, params: [ms, liveSince] };
      }, { sql: `(d.last_seen IS NOT NULL OR ${ONLINE})`, params: [liveSince] });
  }
  if (f.key.startsWith("on:")) return compare(f, () => FALSE, FALSE); // no such property
  const prop = "SELECT 1 FROM props p WHERE p.device_id = d.id AND p.key = ?";
  return compare(
    f,
    (v) => ({ sql: `EXISTS (${prop} AND p.value = ?)`, params: [f.key, v] }),
    { sql: `EXISTS (${prop} AND p.value IS NOT NULL)`, params: [f.key] },
  );
}
