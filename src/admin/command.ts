/**
 * `od admin`: manages accounts and keys directly in the relay's store (the SQLite file in a data
 * directory, or PostgreSQL with --store), whether relays are running or not: they learn of what
 * it writes from the store's change feed.
 */
import { parse, str } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { ago, iso, parseSince, printJson, printTable } from "../cli/output.ts";
import { openStore, type StoreTarget } from "../store/open.ts";
import { ConflictError, type Store, StoreError } from "../store/types.ts";
import { isPgUrl } from "../store/pg/url.ts";
import { KEY_ROLES, type KeyRole } from "../protocol/keys.ts";
import { idProblem } from "../protocol/names.ts";
import { printAudit } from "../cli/audit_table.ts";
import { auditView } from "../protocol/api.ts";

const USAGE = `Usage: od admin [--data DIR | --store postgres://USER@HOST/DB] COMMAND [--json]

Manages the relay's store directly (works whether or not relays are running).

Commands:
  account add NAME                 create an account; prints its client and device keys
  account list                     list accounts
  account rm NAME                  delete an account with all its devices and keys
  key add --account NAME --role client|device|full [--label TEXT]
                                   add a key; prints it (shown once)
  key list [--account NAME]        list keys (never their secrets)
  key revoke ID                    revoke a key; its open tunnels close within seconds
  audit [--account NAME] [--device DEV] [--since TIME]
                                   the audit log of all accounts, including attempts with
                                   keys the relay does not know
  relay list                       the relays of the store: heartbeat, mesh URL, devices held
  migrate --to postgres://USER@HOST/DB
                                   copy the SQLite store of --data into an empty PostgreSQL
                                   store (stop the relay first); checks every table's count

Options:
  --data DIR        data directory of the SQLite store (default ./od-data)
  --store URL       the PostgreSQL store instead (as od serve --store)
  --store-password-file FILE
                    a file (mode 0600) whose first line is the PostgreSQL password (also for
                    migrate --to); otherwise the URL, PGPASSWORD or PGPASSFILE
  --json            print JSON instead of text
`;

/** Entry point of `od admin`. */
export async function adminCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    data: { type: "string" },
    store: { type: "string" },
    "store-password-file": { type: "string" },
    to: { type: "string" },
    json: { type: "boolean" },
    account: { type: "string" },
    role: { type: "string" },
    label: { type: "string" },
    device: { type: "string" },
    since: { type: "string" },
  }, USAGE);
  const [group, action, ...rest] = positionals;
  if (!group) throw new UsageError("missing command: account or key (see od admin --help)");
  const json = values.json === true;
  const passwordFile = str(values, "store-password-file");
  if (!["account", "key", "audit", "relay", "migrate"].includes(group)) {
    throw new UsageError(`unknown command "${group}": use account, key, audit, relay or migrate`);
  }
  if (group === "migrate") {
    const { migrateCommand } = await import("./migrate.ts");
    return await migrateCommand(values, [action, ...rest].filter((a) => a), json);
  }
  if (values.to !== undefined) throw new UsageError("--to belongs to od admin migrate");
  let store: Store;
  try {
    // Only the first account creates a store: a mistyped --data must not look like an empty relay.
    const create = group === "account" && action === "add";
    store = await openStore(target(values), { create, passwordFile });
  } catch (err) {
    if (err instanceof StoreError) throw new OdError(err.message);
    throw err;
  }
  try {
    if (group === "account") return await account(store, action, rest, json);
    if (group === "key") return await key(store, action, rest, values, json);
    if (group === "relay") return await relays(store, action, rest, json);
    return await audit(store, [action, ...rest].filter((a) => a), values, json);
  } catch (err) {
    if (err instanceof ConflictError || err instanceof StoreError) throw new OdError(err.message);
    throw err;
  } finally {
    await store.close();
  }
}

/** The store `--store` or `--data` names. */
export function target(values: Record<string, unknown>): StoreTarget {
  const url = typeof values.store === "string" ? values.store : undefined;
  if (url === undefined) {
    return { dataDir: typeof values.data === "string" ? values.data : "./od-data" };
  }
  if (values.data !== undefined) {
    throw new UsageError("--store and --data name two stores; give one");
  }
  if (!isPgUrl(url)) {
    throw new UsageError(
      `--store must be a postgres://USER@HOST/DB URL, not "${url.slice(0, 40)}"`,
    );
  }
  return url;
}

function one(rest: string[], what: string): string {
  if (rest.length === 0) throw new UsageError(`missing ${what}`);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  return rest[0];
}

async function account(
  store: Store,
  action: string | undefined,
  rest: string[],
  json: boolean,
): Promise<number> {
  switch (action) {
    case "add": {
      const name = one(rest, "account NAME");
      const problem = idProblem(name, "account name");
      if (problem) throw new UsageError(problem);
      const created = await store.accounts.create(name.toLowerCase());
      if (json) printJson(created);
      else {
        console.log(`Created account "${created.account}". Keys are shown once; keep them safe.`);
        console.log(`client key: ${created.clientKey}`);
        console.log(`device key: ${created.deviceKey}`);
      }
      return 0;
    }
    case "list": {
      if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
      const accounts = await store.accounts.list();
      if (json) {
        printJson(accounts.map((a) => ({
          account: a.name,
          devices: a.devices,
          keys: a.keys,
          createdAt: iso(a.createdAt),
        })));
      } else {
        printTable(
          ["ACCOUNT", "DEVICES", "KEYS", "CREATED"],
          accounts.map((a) => [a.name, String(a.devices), String(a.keys), ago(a.createdAt)]),
        );
      }
      return 0;
    }
    case "rm": {
      const name = one(rest, "account NAME").toLowerCase();
      if (!(await store.accounts.remove(name))) {
        throw new OdError(`account "${name}" does not exist`);
      }
      if (json) printJson({ removed: name });
      else console.log(`Removed account "${name}" with its devices and keys.`);
      return 0;
    }
    default:
      throw new UsageError(
        action ? `unknown account command "${action}"` : "missing account command: add, list or rm",
      );
  }
}

async function key(
  store: Store,
  action: string | undefined,
  rest: string[],
  values: Record<string, unknown>,
  json: boolean,
): Promise<number> {
  switch (action) {
    case "add": {
      if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
      const account = values.account;
      const role = values.role;
      if (typeof account !== "string") throw new UsageError("key add needs --account NAME");
      if (typeof role !== "string" || !KEY_ROLES.includes(role as KeyRole)) {
        throw new UsageError(`key add needs --role ${KEY_ROLES.join("|")}`);
      }
      const label = typeof values.label === "string" ? values.label.slice(0, 200) : "";
      const added = await store.accounts.addKey(account.toLowerCase(), role as KeyRole, label);
      if (json) printJson({ id: added.id, account: account.toLowerCase(), role, key: added.key });
      else {
        console.log(
          `Added ${role} key ${added.id} to account "${account.toLowerCase()}" (shown once):`,
        );
        console.log(added.key);
      }
      return 0;
    }
    case "list": {
      if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
      const account = typeof values.account === "string" ? values.account.toLowerCase() : undefined;
      const keys = await store.accounts.listKeys(account);
      if (json) {
        printJson(keys.map((k) => ({
          id: k.id,
          account: k.account,
          role: k.role,
          label: k.label,
          createdAt: iso(k.createdAt),
          lastUsedAt: iso(k.lastUsedAt),
          revokedAt: iso(k.revokedAt),
        })));
      } else {
        printTable(
          ["ID", "ACCOUNT", "ROLE", "STATE", "LAST USED", "LABEL"],
          keys.map((k) => [
            k.id,
            k.account,
            k.role,
            k.revokedAt === null ? "active" : "revoked",
            ago(k.lastUsedAt),
            k.label,
          ]),
        );
      }
      return 0;
    }
    case "revoke": {
      const id = one(rest, "key ID");
      if (!(await store.accounts.revokeKey(id))) {
        throw new OdError(`no active key "${id}" (see od admin key list)`);
      }
      if (json) printJson({ revoked: id });
      else console.log(`Revoked key ${id}.`);
      return 0;
    }
    default:
      throw new UsageError(
        action ? `unknown key command "${action}"` : "missing key command: add, list or revoke",
      );
  }
}

async function audit(
  store: Store,
  rest: string[],
  values: Record<string, unknown>,
  json: boolean,
): Promise<number> {
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  let accountId: number | undefined;
  if (typeof values.account === "string") {
    const id = await store.accounts.find(values.account.toLowerCase());
    if (id === null) throw new OdError(`account "${values.account}" does not exist`);
    accountId = id;
  }
  const rows = (await store.audit.query({
    accountId,
    device: typeof values.device === "string" ? values.device.toLowerCase() : undefined,
    since: typeof values.since === "string" ? parseSince(values.since) : undefined,
  })).map(auditView);
  if (json) printJson(rows);
  else printAudit(rows);
  return 0;
}

async function relays(
  store: Store,
  action: string | undefined,
  rest: string[],
  json: boolean,
): Promise<number> {
  if (action !== "list") {
    throw new UsageError(
      action ? `unknown relay command "${action}"` : "missing relay command: list",
    );
  }
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const rows = await store.relays.list();
  const held = await store.relays.heldCounts();
  if (json) {
    printJson(rows.map((r) => ({
      id: r.id,
      meshUrl: r.meshUrl || null,
      startedAt: iso(r.startedAt),
      heartbeatAt: iso(r.heartbeatAt),
      devices: held.get(r.id) ?? 0,
    })));
  } else {
    printTable(
      ["RELAY", "MESH URL", "HEARTBEAT", "STARTED", "DEVICES"],
      rows.map((r) => [
        r.id,
        r.meshUrl || "-",
        ago(r.heartbeatAt),
        ago(r.startedAt),
        String(held.get(r.id) ?? 0),
      ]),
    );
  }
  return 0;
}
