/** `od device rename DEV NEW` and `od device rm DEV [--force]` (need a full key). */
import { expectPositionals, parse } from "../cli/args.ts";
import { UsageError } from "../shared/errors.ts";
import { printJson } from "../cli/output.ts";
import { idProblem, normalizeDeviceArg } from "../protocol/names.ts";
import { callApi } from "../transport/dial.ts";
import { clientTarget, loadClientConfig } from "./config.ts";
import { relayFailure } from "./commands.ts";

const USAGE = `Usage: od device rename DEV NEW [--json]
       od device rm DEV [--force] [--json]

Renames or removes a device (needs a full key). rm refuses a device that is online unless
--force is given; its daemon is then disconnected and cannot reconnect.
`;

/** Entry point of `od device`. */
export async function deviceCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    force: { type: "boolean" },
    json: { type: "boolean" },
  }, USAGE);
  const [action, ...rest] = positionals;
  const target = clientTarget(loadClientConfig());
  const ref = (typed: string) => {
    try {
      return encodeURIComponent(normalizeDeviceArg(typed));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  };
  if (action === "rename") {
    const [dev, name] = expectPositionals(rest, ["DEV", "NEW"]);
    if (idProblem(name)) throw new UsageError(idProblem(name)!);
    const out = await callApi(target, "POST", `/v1/devices/${ref(dev)}/rename`, { name })
      .catch(relayFailure) as { id: string; from: string };
    if (values.json) printJson(out);
    else console.log(`Renamed device "${out.from}" to "${out.id}".`);
    return 0;
  }
  if (action === "rm") {
    const [dev] = expectPositionals(rest, ["DEV"]);
    const out = await callApi(
      target,
      "DELETE",
      `/v1/devices/${ref(dev)}${values.force ? "?force=1" : ""}`,
    ).catch(relayFailure) as { removed: string };
    if (values.json) printJson(out);
    else console.log(`Removed device "${out.removed}".`);
    return 0;
  }
  throw new UsageError(action ? `unknown device command "${action}"` : "missing rename or rm");
}
