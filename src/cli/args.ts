/**
 * Command-line parsing for od's commands: `--name value`, `--name=value`, `-x value`, combined
 * short flags, repeatable options, `--` to end options, `--help`/`-h`. It follows node:util's
 * parseArgs semantics but is written out here because loading node:util costs every `od pipe`
 * (run once per ssh connection) about 10 ms of start-up.
 */
import { HelpRequested, UsageError } from "../shared/errors.ts";

/** Option specs, by long name. */
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
  { positionals: allowPositionals = true } = {},
): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  const byShort = new Map(
    Object.entries(options).flatMap(([n, o]) => (o.short ? [[o.short, n]] : [])),
  );
  const set = (name: string, value: string | boolean) => {
    const spec = options[name];
    if (spec.multiple) values[name] = [...((values[name] as string[]) ?? []), value as string];
    else values[name] = value;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "--help" || arg === "-h") throw new HelpRequested(usage);
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      // Own names only: --constructor is not an option because Object.prototype has one.
      if (!Object.hasOwn(options, name)) throw new UsageError(`unknown option --${name}`);
    } else if (arg.startsWith("-") && arg.length > 1) {
      // -abc: booleans may be combined; a string option takes the rest or the next argument.
      for (let j = 1; j < arg.length; j++) {
        const n = byShort.get(arg[j]);
        if (!n) throw new UsageError(`unknown option -${arg[j]}`);
        if (options[n].type === "boolean") {
          set(n, true);
          continue;
        }
        name = n;
        inline = j + 1 < arg.length ? arg.slice(j + 1) : undefined;
        break;
      }
      if (name === undefined) continue;
    } else {
      if (!allowPositionals) throw new UsageError(`unexpected argument "${arg}"`);
      positionals.push(arg);
      continue;
    }
    const spec = options[name];
    if (spec.type === "boolean") {
      if (inline !== undefined) throw new UsageError(`option --${name} takes no value`);
      set(name, true);
      continue;
    }
    if (inline === undefined) {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("-") && next.length > 1)) {
        throw new UsageError(`option --${name} needs a value`);
      }
      inline = next;
      i++;
    }
    set(name, inline);
  }
  return { values, positionals };
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
