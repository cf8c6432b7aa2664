/** Output helpers: tables for people, JSON for scripts, times as people say them. */
import { UsageError } from "../shared/errors.ts";

/** Prints rows as left-aligned columns under a header. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

/** Prints one JSON document. */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** "just now", "3 min ago", "2 h ago", "5 days ago" for a past time in ms. */
export function ago(then: number | null, now = Date.now()): string {
  if (then === null) return "never";
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** An ISO 8601 time, or null. */
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Parses an ISO time or an age such as `10m` into epoch milliseconds. */
export function parseSince(value: string, now = Date.now()): number {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(value);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as "s"];
  const t = Date.parse(value);
  if (!Number.isFinite(t)) {
    throw new UsageError(`--since "${value}" is neither an ISO time nor an age like 10m`);
  }
  return t;
}
