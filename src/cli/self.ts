/**
 * How to run this same od again (for ssh's ProxyCommand and for printed instructions): the
 * compiled binary itself, or `scripts/od` of this checkout when running from source.
 */

/** The command (one path) that runs this od; `OD_SELF` overrides it. */
export function selfCommand(): string {
  const override = Deno.env.get("OD_SELF");
  if (override) return override;
  const exe = Deno.execPath();
  if (!/(^|\/)deno(\.exe)?$/.test(exe)) return exe; // compiled: the od binary itself
  return new URL("../../scripts/od", import.meta.url).pathname;
}

/** `od` when this od is on PATH as `od`, else the full command, for messages people copy. */
export function displayCommand(): string {
  const self = selfCommand();
  const path = Deno.env.get("PATH") ?? "";
  for (const dir of path.split(":")) {
    try {
      if (dir && Deno.realPathSync(`${dir}/od`) === Deno.realPathSync(self)) return "od";
    } catch {
      // not there
    }
  }
  return self;
}
