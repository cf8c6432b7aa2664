/**
 * `od exec [--parallel N] [--max-errors N] [--json] FILTER… -- COMMAND`: runs COMMAND over ssh
 * on every online device matching the filters, at most N at a time. Each output line is
 * prefixed with the device ID as it arrives; a summary of exit codes follows; the exit code is 0
 * only if every device succeeded. After --max-errors failures no further devices are started.
 */
import { list, parse, str } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { printTable } from "../cli/output.ts";
import { findDevices } from "./commands.ts";
import type { Device } from "../protocol/api.ts";
import { hostAlias } from "./known_hosts.ts";
import { odSshOptions } from "./ssh_options.ts";

const USAGE = `Usage: od exec [--parallel N] [--max-errors N] [--json] [-l USER] [-i KEY] [-o OPT]…
               FILTER… -- COMMAND…

Runs COMMAND (through ssh, with BatchMode) on each online device matching FILTER
(KEY=VALUE, KEY!=VALUE, KEY; none means all). Output lines are prefixed with the device ID.

Options:
  --parallel N     devices at a time (default 10)
  --max-errors N   start no more devices after N have failed (default: no limit)
  -l USER          remote user;  -i KEY  identity file;  -o OPT  any ssh option (repeatable)
  --json           one JSON object per device as it finishes, no prefixed output
`;

/** How one device fared. */
export interface ExecResult {
  device: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** "skipped" when --max-errors stopped the run before this device started. */
  status: "ok" | "failed" | "skipped";
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  out: typeof Deno.stdout | null,
) {
  const decoder = new TextDecoder();
  let all = "";
  let partial = "";
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    all += text;
    if (!out) continue;
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    if (lines.length) {
      out.writeSync(new TextEncoder().encode(lines.map((l) => `${prefix}${l}\n`).join("")));
    }
  }
  if (out && partial) out.writeSync(new TextEncoder().encode(`${prefix}${partial}\n`));
  return all;
}

async function runOne(d: Device, sshArgs: string[], command: string[], json: boolean) {
  const device = d.ref;
  const args = [
    ...odSshOptions(hostAlias(d.account, d.id)),
    "-o",
    "BatchMode=yes",
    ...sshArgs,
    device,
    "--",
    ...command,
  ];
  const child = new Deno.Command(Deno.env.get("OD_SSH") ?? "ssh", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const prefix = `${device}: `;
  const [stdout, stderr, status] = await Promise.all([
    pump(child.stdout, prefix, json ? null : Deno.stdout),
    pump(child.stderr, prefix, json ? null : Deno.stderr),
    child.status,
  ]);
  const result: ExecResult = {
    device,
    exitCode: status.code,
    stdout,
    stderr,
    status: status.success ? "ok" : "failed",
  };
  if (json) console.log(JSON.stringify(result));
  return result;
}

/** Entry point of `od exec`. */
export async function execCommand(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  if (dash < 0 || dash === args.length - 1) throw new UsageError("od exec needs -- COMMAND");
  const { values, positionals } = parse(args.slice(0, dash), {
    parallel: { type: "string" },
    "max-errors": { type: "string" },
    json: { type: "boolean" },
    l: { type: "string", short: "l" },
    i: { type: "string", short: "i" },
    o: { type: "string", short: "o", multiple: true },
  }, USAGE);
  const parallel = Number(str(values, "parallel") ?? "10");
  const maxErrors = Number(str(values, "max-errors") ?? "Infinity");
  if (!Number.isInteger(parallel) || parallel < 1) {
    throw new UsageError("--parallel must be a positive integer");
  }
  if (!(maxErrors >= 1)) throw new UsageError("--max-errors must be a positive integer");
  const sshArgs = [
    ...(values.l ? ["-l", String(values.l)] : []),
    ...(values.i ? ["-i", String(values.i)] : []),
    ...list(values, "o").flatMap((o) => ["-o", o]),
  ];
  const devices = await findDevices(positionals, "online");
  if (devices.length === 0) throw new OdError("no online device matches the filters");
  const command = args.slice(dash + 1);
  const json = values.json === true;
  const results: ExecResult[] = [];
  let failures = 0;
  let next = 0;
  const worker = async () => {
    while (next < devices.length) {
      const d = devices[next++];
      if (failures >= maxErrors) {
        results.push({ device: d.ref, exitCode: null, stdout: "", stderr: "", status: "skipped" });
        continue;
      }
      const r = await runOne(d, sshArgs, command, json);
      if (r.status === "failed") failures++;
      results.push(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, devices.length) }, worker));
  results.sort((a, b) => a.device.localeCompare(b.device));
  if (!json) {
    printTable(
      ["DEVICE", "EXIT", "STATUS"],
      results.map((r) => [r.device, r.exitCode === null ? "-" : String(r.exitCode), r.status]),
    );
    const ok = results.filter((r) => r.status === "ok").length;
    console.log(`${ok} of ${results.length} devices succeeded`);
  }
  return results.every((r) => r.status === "ok") ? 0 : 1;
}
