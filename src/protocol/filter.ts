/**
 * Device filters as `od list`, `od exec` and `od inventory` take them: `key=value`,
 * `key!=value` and `key` (has the property). Several filters must all match. They apply to user
 * properties and to the relay's `on:` properties alike (`on:version=0.1.0`).
 */

/** One parsed filter. */
export type Filter =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "has" };

const KEY_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Parses filters; throws RangeError naming the first malformed one. */
export function parseFilters(args: string[]): Filter[] {
  return args.map((arg) => {
    const m = /^([^=!]+)(!=|=)(.*)$/s.exec(arg);
    const key = m ? m[1] : arg;
    if (!KEY_RE.test(key)) {
      throw new RangeError(`filter "${arg}" must be KEY=VALUE, KEY!=VALUE or KEY`);
    }
    return m ? { key, op: m[2] as "=" | "!=", value: m[3] } : { key, op: "has" };
  });
}

/**
 * True if `props` matches every filter. A missing key never equals and always differs. Only
 * the object's own properties count: `constructor` or `toString` are not properties of a device.
 */
export function matches(props: Record<string, string>, filters: Filter[]): boolean {
  return filters.every((f) => {
    const v = Object.hasOwn(props, f.key) ? props[f.key] : undefined;
    if (f.op === "has") return v !== undefined;
    if (f.op === "=") return v === f.value;
    return v !== f.value;
  });
}
