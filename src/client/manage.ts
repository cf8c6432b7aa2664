/**
 * Account management for full-key holders, through the relay: `od key` (add, list, revoke),
 * `od share` (add, list, rm) and `od audit`. The same operations on the data directory itself
 * are under `od admin`.
 */
import { expectPositionals, list, parse, str } from "../cli/args.ts";
import { UsageError } from "../shared/errors.ts";
import { ago, printJson, printTable } from "../cli/output.ts";
import { KEY_ROLES } from "../protocol/keys.ts";
import { callApi } from "../transport/dial.ts";
import { clientTarget, loadClientConfig } from "./config.ts";
import { relayFailure } from "./commands.ts";
import { parseSince } from "../cli/output.ts";
import { printAudit } from "../cli/audit_table.ts";
import type { AddedKey, ApiKey, AuditEntry, Revoked, Share } from "../protocol/api.ts";

const api = (method: string, path: string, body?: unknown) =>
  callApi(clientTarget(loadClientConfig()), method, path, body).catch(relayFailure);

const KEY_USAGE = `Usage: od key add --role client|device|full [--label TEXT] [--json]
       od key list [--json]
       od key revoke ID [--json]

Manages your account's keys (needs a full key). A new key is shown once. Revoking closes the
tunnels opened with the key at once.
`;

/** Entry point of `od key`. */
export async function keyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    role: { type: "string" },
    label: { type: "string" },
    json: { type: "boolean" },
  }, KEY_USAGE);
  const [action, ...rest] = positionals;
  if (action === "add") {
    expectPositionals(rest, []);
    const role = str(values, "role");
    if (!role || !(KEY_ROLES as readonly string[]).includes(role)) {
      throw new UsageError(`key add needs --role ${KEY_ROLES.join("|")}`);
    }
    const out = await api("POST", "/v1/keys", {
      role,
      label: str(values, "label") ?? "",
    }) as AddedKey;
    if (values.json) printJson(out);
    else console.log(`Added ${role} key ${out.id} (shown once):\n${out.key}`);
    return 0;
  }
  if (action === "list") {
    expectPositionals(rest, []);
    const keys = await api("GET", "/v1/keys") as ApiKey[];
    if (values.json) printJson(keys);
    else {
      printTable(
        ["ID", "ROLE", "STATE", "LAST USED", "LABEL"],
        keys.map((k) => [
          k.id,
          k.role,
          k.revokedAt ? "revoked" : "active",
          ago(k.lastUsedAt ? Date.parse(k.lastUsedAt) : null),
          k.label,
        ]),
      );
    }
    return 0;
  }
  if (action === "revoke") {
    const [id] = expectPositionals(rest, ["ID"]);
    const out = await api("DELETE", `/v1/keys/${encodeURIComponent(id)}`) as Revoked;
    if (values.json) printJson(out);
    else console.log(`Revoked key ${id}; closed ${out.tunnelsClosed} open tunnels.`);
    return 0;
  }
  throw new UsageError(action ? `unknown key command "${action}"` : "missing add, list or revoke");
}

const SHARE_USAGE = `Usage: od share add ACCOUNT [--device DEV | FILTER…] [--service NAME]… [--json]
       od share list [--json]
       od share rm ID

Lets ACCOUNT list and reach some of your devices as YOURACCOUNT.DEV: one device (--device), or
every device matching the filters (KEY=VALUE, KEY!=VALUE, KEY; none means all), and only the
services named (--service, repeatable; none means all). Shared devices are read-only for the
other account. Removing a share closes its open tunnels at once. Needs a full key.
`;

/** Entry point of `od share`. */
export async function shareCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    device: { type: "string" },
    service: { type: "string", multiple: true },
    json: { type: "boolean" },
  }, SHARE_USAGE);
  const [action, ...rest] = positionals;
  if (action === "add") {
    const [account, ...filters] = rest;
    if (!account) throw new UsageError("share add needs ACCOUNT");
    const device = str(values, "device");
    if (device && filters.length) throw new UsageError("give --device or filters, not both");
    const out = await api("POST", "/v1/shares", {
      account,
      device: device ?? null,
      filters,
      services: list(values, "service"),
    }) as Share;
    if (values.json) printJson(out);
    else console.log(`Added share ${out.id}: ${describeShare(out)}.`);
    return 0;
  }
  if (action === "list") {
    expectPositionals(rest, []);
    const shares = await api("GET", "/v1/shares") as Share[];
    if (values.json) printJson(shares);
    else {
      printTable(
        ["ID", "FROM", "TO", "DEVICES", "SERVICES"],
        shares.map((s) => [
          String(s.id),
          s.owner,
          s.grantee,
          s.device ?? (s.filters.join(" ") || "all"),
          s.services.join(",") || "all",
        ]),
      );
    }
    return 0;
  }
  if (action === "rm") {
    const [id] = expectPositionals(rest, ["ID"]);
    if (!/^\d+$/.test(id)) throw new UsageError(`share ID "${id}" must be a number`);
    const out = await api("DELETE", `/v1/shares/${id}`) as Revoked;
    console.log(`Removed share ${id}; closed ${out.tunnelsClosed} open tunnels.`);
    return 0;
  }
  throw new UsageError(action ? `unknown share command "${action}"` : "missing add, list or rm");
}

function describeShare(s: Share): string {
  const what = s.device
    ? `device ${s.device}`
    : s.filters.length
    ? `devices where ${s.filters.join(" ")}`
    : "all devices";
  return `${what} of ${s.owner} with ${s.grantee}, services ${s.services.join(",") || "all"}`;
}

const AUDIT_USAGE = `Usage: od audit [--device DEV] [--since TIME] [--json]

Shows the audit log of your account (needs a full key): every tunnel attempt, allowed or refused,
and every refused or privileged request, with time, account, key, address, device, service,
result, duration and bytes each way. TIME is an ISO time or an age like 10m, 2h, 7d.
`;

/** Entry point of `od audit`. */
export async function auditCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    device: { type: "string" },
    since: { type: "string" },
    json: { type: "boolean" },
  }, AUDIT_USAGE);
  expectPositionals(positionals, []);
  const params = new URLSearchParams();
  if (values.device) params.set("device", String(values.device).toLowerCase());
  if (values.since) params.set("since", String(parseSince(String(values.since))));
  const rows = await api("GET", `/v1/audit?${params}`) as AuditEntry[];
  if (values.json) printJson(rows);
  else printAudit(rows);
  return 0;
}
