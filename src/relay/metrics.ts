/**
 * A small metrics registry rendered in the Prometheus text exposition format 0.0.4: counters,
 * gauges (set directly or read at scrape time) and histograms with fixed buckets. Label values
 * are declared up front, so the set of series is fixed when the registry is built and can never
 * grow with the number of devices, keys or addresses: an undeclared label value is a bug and
 * throws.
 */

/** One metric family that can print itself. */
interface Family {
  readonly name: string;
  render(out: string[]): void;
}

/** Escapes a HELP text (backslash and newline, per the format). */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Escapes a label value (backslash, quote and newline, per the format). */
function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Formats a sample value as Prometheus expects (+Inf, -Inf, NaN, or a plain number). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function header(out: string[], name: string, help: string, type: string): void {
  out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** A counter, optionally split by one label with a fixed set of values. */
export class Counter implements Family {
  readonly name: string;
  #help: string;
  #label: string | null;
  #values = new Map<string, number>();

  constructor(name: string, help: string, label?: { name: string; values: readonly string[] }) {
    this.name = name;
    this.#help = help;
    this.#label = label?.name ?? null;
    for (const v of label?.values ?? [""]) this.#values.set(v, 0);
  }

  /** Adds `n` (default 1) to the series of `labelValue` (omit it for an unlabelled counter). */
  inc(labelValue = "", n = 1): void {
    const current = this.#values.get(labelValue);
    if (current === undefined) throw new Error(`${this.name}: undeclared label "${labelValue}"`);
    this.#values.set(labelValue, current + n);
  }

  /** The current value of one series. */
  get(labelValue = ""): number {
    return this.#values.get(labelValue) ?? 0;
  }

  render(out: string[]): void {
    header(out, this.name, this.#help, "counter");
    for (const [v, n] of this.#values) {
      const labels = this.#label === null ? "" : `{${this.#label}="${escapeLabel(v)}"}`;
      out.push(`${this.name}${labels} ${formatValue(n)}`);
    }
  }
}

/** A gauge: set or moved by hooks, or read from `collect` at every scrape. */
export class Gauge implements Family {
  readonly name: string;
  #help: string;
  #value = 0;
  #collect: (() => number) | null;

  constructor(name: string, help: string, collect?: () => number) {
    this.name = name;
    this.#help = help;
    this.#collect = collect ?? null;
  }

  /** Sets the value. */
  set(v: number): void {
    this.#value = v;
  }

  /** Adds `n` (may be negative). */
  add(n: number): void {
    this.#value += n;
  }

  /** The current value. */
  get(): number {
    return this.#collect ? this.#collect() : this.#value;
  }

  render(out: string[]): void {
    header(out, this.name, this.#help, "gauge");
    out.push(`${this.name} ${formatValue(this.get())}`);
  }
}

/** A histogram with fixed, increasing upper bounds (the +Inf bucket is implied). */
export class Histogram implements Family {
  readonly name: string;
  #help: string;
  #bounds: number[];
  #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.#help = help;
    this.#bounds = [...bounds];
    if (this.#bounds.some((b, i) => i > 0 && b <= this.#bounds[i - 1])) {
      throw new Error(`${name}: bucket bounds must increase`);
    }
    this.#counts = this.#bounds.map(() => 0);
  }

  /** Records one observation. */
  observe(v: number): void {
    this.#sum += v;
    this.#count++;
    for (let i = 0; i < this.#bounds.length; i++) {
      if (v <= this.#bounds[i]) {
        this.#counts[i]++;
        return;
      }
    }
  }

  /** Number of observations so far. */
  get count(): number {
    return this.#count;
  }

  render(out: string[]): void {
    header(out, this.name, this.#help, "histogram");
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i];
      out.push(`${this.name}_bucket{le="${formatValue(this.#bounds[i])}"} ${cumulative}`);
    }
    out.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    out.push(`${this.name}_sum ${formatValue(this.#sum)}`, `${this.name}_count ${this.#count}`);
  }
}

/** A set of metric families with unique names. */
export class Registry {
  #families: Family[] = [];

  /** Adds a family and returns it; names must be valid and unique. */
  add<F extends Family>(family: F): F {
    if (!NAME.test(family.name)) throw new Error(`invalid metric name "${family.name}"`);
    if (this.#families.some((f) => f.name === family.name)) {
      throw new Error(`metric "${family.name}" registered twice`);
    }
    this.#families.push(family);
    return family;
  }

  /** The exposition text: every family, HELP and TYPE first, ending with a newline. */
  render(): string {
    const out: string[] = [];
    for (const f of this.#families) f.render(out);
    return out.join("\n") + "\n";
  }
}

/** The Content-Type of the text exposition format. */
export const EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8";
