/**
 * The one-file bundle for tests: built by deno.json's `bundle` task as it is, with only the
 * output path moved into the test's temp dir, and the command line that runs it with the same
 * permissions as the compiled binary.
 */
import { RUN_FLAGS } from "../src/cli/self.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Runs `deno task bundle` with its output in `dir`; returns the bundle's path. */
export async function buildBundle(dir: string): Promise<string> {
  const task: string = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.bundle;
  const words = task.split(/\s+/);
  const at = words.indexOf("--output");
  if (words[0] !== "deno" || at < 0) throw new Error(`unexpected bundle task: ${task}`);
  const output = `${dir}/od.js`;
  words[at + 1] = output;
  const out = await new Deno.Command(Deno.execPath(), {
    args: words.slice(1),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno task bundle failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return output;
}

/** `deno run` arguments that run `bundle` as od (the compiled binary's permissions). */
export function bundleArgs(bundle: string): string[] {
  return ["run", ...RUN_FLAGS, bundle];
}
