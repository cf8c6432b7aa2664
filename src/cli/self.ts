/**
 * How to run this same od again: for ssh's ProxyCommand, for printed instructions and for the
 * systemd units `od daemon install` writes. od runs in one of three forms: the compiled binary,
 * the one-file bundle `dist/od.js` under `deno run`, or main.ts of a checkout.
 */

/**
 * The permissions od needs, the same as deno.json's compile tasks and scripts/od (a test keeps
 * them equal): network, files, environment, subprocesses (ssh, rsync, systemctl), system facts.
 */
export const RUN_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
];

/**
 * V8's young generation, kept small: Deno lets it grow to 64 MiB under a burst of requests, and
 * that was most of what a flood of property requests added to the relay's memory (+64 MiB
 * against +44–55 MiB with this), and a third of each idle device link's share at 1,000 devices;
 * tunnel throughput and CPU per byte measured the same either way (`deno task bench --only core`).
 * The compile tasks bake the same flag into the binary.
 */
export const V8_FLAGS = ["--v8-flags=--max-semi-space-size=2"];

/** `deno run` flags that make a script behave like the compiled od. */
export const RUN_FLAGS = ["--quiet", "--no-prompt", "--no-config", ...V8_FLAGS, ...RUN_PERMISSIONS];

/** Which form of od this is. */
export type SelfForm = "compiled" | "bundle" | "checkout";

const MODULE = new URL(import.meta.url);

/** The form of the running od: a bundle's modules all live in the one file, dist/od.js. */
export function selfForm(): SelfForm {
  if (!/(^|\/)deno(\.exe)?$/.test(Deno.execPath())) return "compiled";
  return MODULE.pathname.endsWith("/src/cli/self.ts") ? "checkout" : "bundle";
}

/** The script `deno run` is given: main.ts of the checkout, or the bundle file itself. */
function script(): string {
  return selfForm() === "checkout"
    ? new URL("../../main.ts", MODULE).pathname
    : decodeURIComponent(MODULE.pathname);
}

/**
 * The command (argv) that runs this od for a person or for ssh: `OD_SELF` if set, the binary,
 * `scripts/od` of the checkout (which finds deno on PATH), or deno running the bundle.
 */
export function selfArgv(): string[] {
  const override = Deno.env.get("OD_SELF");
  if (override) return [override];
  switch (selfForm()) {
    case "compiled":
      return [Deno.execPath()];
    case "checkout":
      return [new URL("../../scripts/od", MODULE).pathname];
    case "bundle":
      return [Deno.execPath(), "run", ...RUN_FLAGS, script()];
  }
}

/**
 * The command (argv) a systemd unit runs: absolute paths only, as a service has a bare PATH.
 * `OD_SELF` (a path to an od executable) overrides it, e.g. to write units for /usr/local/bin/od.
 */
export function serviceArgv(): string[] {
  const override = Deno.env.get("OD_SELF");
  if (override) return [override];
  if (selfForm() === "compiled") return [Deno.execPath()];
  return [Deno.execPath(), "run", ...RUN_FLAGS, script()];
}

/** The one-line shell form of selfArgv(): words quoted for /bin/sh where needed. */
export function selfCommand(): string {
  return selfArgv().map(shellWord).join(" ");
}

/** Quotes a word for /bin/sh if it needs it. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_\-./=:,@+%]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * `od` when the `od` on PATH is this od (the same file, or a small wrapper script that runs this
 * bundle), else the full command, for messages people copy.
 */
export function displayCommand(): string {
  const argv = selfArgv();
  const path = Deno.env.get("PATH") ?? "";
  for (const dir of path.split(":")) {
    if (!dir) continue;
    try {
      const onPath = Deno.realPathSync(`${dir}/od`);
      if (argv.length === 1 && onPath === Deno.realPathSync(argv[0])) return "od";
      if (selfForm() === "bundle" && Deno.statSync(onPath).size < 4096) {
        if (Deno.readTextFileSync(onPath).includes(script())) return "od";
      }
    } catch {
      // not there, or not readable
    }
  }
  return selfCommand();
}
