/**
 * Structured log lines on stderr: `2026-11-25T23:10:37.123Z info device connected device=pi`.
 * Callers pass fields, never secrets; values are quoted when they contain spaces.
 */

/** Log levels in increasing severity. */
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

let threshold: Level = parseLevel(safeEnv("OD_LOG")) ?? "info";

function safeEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function parseLevel(v: string | undefined): Level | null {
  return v && Object.hasOwn(ORDER, v) ? (v as Level) : null;
}

/** Sets the lowest level that is printed. */
export function setLogLevel(level: Level): void {
  threshold = level;
}

function format(value: unknown): string {
  const text = value instanceof Error ? value.message : String(value);
  return /[\s"=]/.test(text) || text === "" ? JSON.stringify(text) : text;
}

function write(level: Level, message: string, fields: Record<string, unknown>): void {
  if (ORDER[level] < ORDER[threshold]) return;
  let line = `${new Date().toISOString()} ${level} ${message}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined) line += ` ${k}=${format(v)}`;
  }
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  } catch {
    // stderr closed: nothing useful left to do
  }
}

/** The process logger. */
export const log = {
  debug: (m: string, f: Record<string, unknown> = {}) => write("debug", m, f),
  info: (m: string, f: Record<string, unknown> = {}) => write("info", m, f),
  warn: (m: string, f: Record<string, unknown> = {}) => write("warn", m, f),
  error: (m: string, f: Record<string, unknown> = {}) => write("error", m, f),
};
