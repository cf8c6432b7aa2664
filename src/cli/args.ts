/** Command-line parsing on top of node:util parseArgs, with od's help and usage errors. */
import { parseArgs } from "node:util";
import { HelpRequested, UsageError } from "./errors.ts";

/** Option specs as parseArgs takes them. */
export type OptionSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean }
>;

/** Parsed values: strings, booleans or string lists, by option name. */
export type Values = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `args` against `options`; `--help`/`-h` throws HelpRequested with `usage`. Unknown
 * options and missing values become UsageErrors that name the option.
 */
export function parse(
  args: string[],
  options: OptionSpec,
  usage: string,
  { positionals = true } = {},
): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: positionals,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(cleanParseError(err));
  }
  if (parsed.values.help) throw new HelpRequested(usage);
  return { values: parsed.values as Values, positionals: parsed.positionals };
}

function cleanParseError(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // parseArgs messages carry advice for Node scripts after the first sentence; keep the first.
  const first = text.split(/\.\s/)[0].replace(/\.$/, "");
  return first.replace(/^Unknown option '(.+?)'.*$/, "unknown option $1")
    .replace(/^Option '(.+?)' argument missing$/, "option $1 needs a value")
    .replace(/^Option '(.+?)' argument is ambiguous$/, "option $1 needs a value")
    .replace(/^Unexpected argument '(.+?)'.*$/, "unexpected argument $1");
}

/** The string value of an option, or `fallback`. */
export function str(values: Values, name: string, fallback?: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : fallback;
}

/** All values of a repeatable string option. */
export function list(values: Values, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/** Asserts exactly `count` positionals and returns them; otherwise a usage error. */
export function expectPositionals(positionals: string[], names: string[]): string[] {
  if (positionals.length < names.length) {
    throw new UsageError(`missing ${names.slice(positionals.length).join(" ")}`);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument "${positionals[names.length]}"`);
  }
  return positionals;
}
