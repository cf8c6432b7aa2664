/**
 * `od version` (also `od --version`): what a bug report needs to say which od this is — od's
 * release, the wire protocol it speaks, the runtime under it, the target it runs on, and whether
 * it is the compiled binary, the one-file bundle or a checkout.
 */
import { parse } from "./args.ts";
import { printJson } from "./output.ts";
import { selfForm } from "./self.ts";
import { SUBPROTOCOL } from "../protocol/frame.ts";
import { VERSION } from "../version.ts";

const USAGE = `Usage: od version [--json]

Prints od's version, the protocol version, the runtime (Deno) version and the target.
`;

/** Everything `od version` reports. */
export interface VersionInfo {
  od: string;
  protocol: string;
  runtime: string;
  v8: string;
  target: string;
  form: string;
}

/** The facts of this build. */
export function versionInfo(): VersionInfo {
  return {
    od: VERSION,
    protocol: SUBPROTOCOL,
    runtime: `deno ${Deno.version.deno}`,
    v8: Deno.version.v8,
    target: Deno.build.target,
    form: selfForm(),
  };
}

/** Entry point of `od version`. */
export function versionCommand(args: string[]): number {
  const { values } = parse(args, { json: { type: "boolean" } }, USAGE, { positionals: false });
  const info = versionInfo();
  if (values.json) {
    printJson(info);
    return 0;
  }
  console.log(`od ${info.od}
protocol ${info.protocol}
runtime ${info.runtime} (v8 ${info.v8})
target ${info.target} (${info.form})`);
  return 0;
}
