/**
 * `od inventory`: Ansible's dynamic inventory protocol (`--list`, `--host H`). Every device is a
 * host; groups come from the `group` property (comma-separated), from every property as
 * `KEY_VALUE`, and from the state (`online`, `offline`). Host variables carry the ssh options that
 * route Ansible's own ssh through od with pinned host keys, so `ansible -i INVENTORY all -m ping`
 * needs no other setup. `od --list` and `od --host H` answer the same, so the od executable itself
 * can be given to `ansible -i`.
 */
import { parse, str } from "../cli/args.ts";
import { UsageError } from "../shared/errors.ts";
import { findDevices } from "./commands.ts";
import type { Device } from "../protocol/api.ts";
import { hostAlias } from "./known_hosts.ts";
import { odSshOptions } from "./ssh_options.ts";
import { shellQuote } from "./ssh_options.ts";

const USAGE = `Usage: od inventory --list [FILTER…]
       od inventory --host HOST

Ansible dynamic inventory of your devices. Use it as an inventory source:
  ansible -i "$(command -v od)" all -m ping          (od answers --list itself)
or through a two-line script:  #!/bin/sh  /  exec od inventory "$@"
Groups: values of the "group" property (comma-separated), KEY_VALUE for every property
(e.g. site_zurich), and online/offline. FILTER (KEY=VALUE, KEY!=VALUE, KEY) limits the hosts.
`;

/** An Ansible group name: letters, digits and underscores, not starting with a digit. */
export function groupName(text: string): string {
  const name = text.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  return /^[0-9]/.test(name) ? `_${name}` : name || "_";
}

/** The host variables that make Ansible's ssh go through od. */
function hostVars(d: Device, host: string): Record<string, unknown> {
  const args = odSshOptions(hostAlias(d.account, d.id));
  const userProps = Object.fromEntries(
    Object.entries(d.props).filter(([k]) => !k.startsWith("on:")),
  );
  return {
    ansible_host: host,
    ansible_ssh_common_args: args.map(shellQuote).join(" "),
    od_device: d.id,
    od_account: d.account,
    od_state: d.state,
    od_props: userProps,
  };
}

/** Builds the `--list` document. */
export function inventory(devices: Device[]): Record<string, unknown> {
  const groups = new Map<string, Set<string>>();
  const add = (group: string, host: string) => {
    const g = groups.get(group) ?? new Set();
    g.add(host);
    groups.set(group, g);
  };
  const hostvars: Record<string, unknown> = {};
  for (const d of devices) {
    const host = d.ref;
    hostvars[host] = hostVars(d, host);
    add(d.state, host);
    for (const g of (d.props.group ?? "").split(",").map((s) => s.trim()).filter((s) => s)) {
      add(groupName(g), host);
    }
    for (const [k, v] of Object.entries(d.props)) {
      if (!k.startsWith("on:")) add(groupName(`${k}_${v}`), host);
    }
  }
  const doc: Record<string, unknown> = {
    _meta: { hostvars },
    all: { hosts: Object.keys(hostvars), children: [...groups.keys()] },
  };
  for (const [name, hosts] of groups) doc[name] = { hosts: [...hosts] };
  return doc;
}

/** Entry point of `od inventory` (and of `od --list` / `od --host`). */
export async function inventoryCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    list: { type: "boolean" },
    host: { type: "string" },
  }, USAGE);
  const host = str(values, "host");
  if (!values.list && host === undefined) throw new UsageError("give --list or --host HOST");
  const devices = await findDevices(host === undefined ? positionals : []);
  const doc = inventory(devices);
  const vars = (doc._meta as { hostvars: Record<string, unknown> }).hostvars;
  console.log(JSON.stringify(host === undefined ? doc : vars[host] ?? {}, null, 2));
  return 0;
}
