/**
 * Times as people read them in a table: relative ("3 min ago", "for 2 h"), with the exact time
 * for the hover text, in the browser's time zone and in UTC.
 */

const UNITS: [number, string][] = [
  [86_400_000, "d"],
  [3_600_000, "h"],
  [60_000, "min"],
  [1_000, "s"],
];

/** A span of time in its largest unit: "42 s", "3 min", "5 h", "12 d". */
export function span(ms: number): string {
  const abs = Math.max(0, ms);
  for (const [size, unit] of UNITS) {
    if (abs >= size) return `${Math.floor(abs / size)} ${unit}`;
  }
  return "0 s";
}

/** "3 min ago" (or "just now") for a past ISO time; "—" for none. */
export function ago(iso: string | null, now = Date.now()): string {
  if (iso === null) return "—";
  const ms = now - Date.parse(iso);
  return ms < 1_000 ? "just now" : `${span(ms)} ago`;
}

/** The exact time for hover text: local, and UTC as the API gives it. */
export function exact(iso: string | null): string {
  if (iso === null) return "never";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toLocaleString()} (${d.toISOString()})`;
}

/** Parses "15m", "2h", "7d" (or a number of hours) into milliseconds; null if malformed. */
export function parseSpan(text: string): number | null {
  const m = /^\s*(\d{1,6})\s*(s|m|min|h|d)?\s*$/.exec(text);
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? "h";
  const size = unit === "s" ? 1_000 : unit === "d" ? 86_400_000 : unit === "h" ? 3_600_000 : 60_000;
  return n * size;
}
