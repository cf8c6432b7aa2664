/**
 * PostgreSQL store URLs and passwords. The URL is `postgres://USER@HOST[:PORT]/DB`, or with the
 * server's Unix socket directory as `postgres://USER@/DB?host=/run/postgresql` (libpq's form;
 * `port` may also be given as a parameter). The password comes, first found first, from the URL,
 * a password file given explicitly (`--store-password-file`, its first line), `PGPASSWORD`, or
 * `PGPASSFILE` (libpq's `host:port:db:user:password` lines). Password files must not be readable
 * by others. The password is never part of `shown`, and nothing here puts it in a message.
 */
import { StoreError } from "../db.ts";

/** A parsed store URL. */
export interface PgTarget {
  user: string;
  /** From the URL only; see resolvePassword for the others. */
  urlPassword: string | null;
  /** Host name or address for TCP, or null for a Unix socket. */
  host: string | null;
  /** Directory of the server's Unix socket, or null for TCP. */
  socketDir: string | null;
  port: number;
  database: string;
  ssl: false | "require" | "verify-full";
  /** The URL without the password, for messages and logs. */
  shown: string;
}

/** A password and where it came from (for messages, never the password itself). */
export interface Password {
  value: string | null;
  source: string | null;
}

const URL_RE =
  /^postgres(?:ql)?:\/\/(?:([^:@/?]*)(?::([^@/?]*))?@)?([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/;
const SSL_MODES = { disable: false, require: "require", "verify-full": "verify-full" } as const;

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new StoreError(`Store URL has a malformed ${what}`);
  }
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}

/** True if `url` names a PostgreSQL store. */
export function isPgUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Parses a store URL; StoreError with a sentence (never echoing a password) if it is wrong. */
export function parsePgUrl(url: string): PgTarget {
  const m = URL_RE.exec(url);
  if (!m) throw new StoreError("Store URL must look like postgres://USER@HOST/DB");
  const [, rawUser, rawPassword, hostPort, rawDb, query] = m;
  const params = new URLSearchParams(query ?? "");
  for (const key of params.keys()) {
    if (!["host", "port", "sslmode"].includes(key)) {
      throw new StoreError(`Store URL parameter "${key}" is not supported (host, port, sslmode)`);
    }
  }
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostPort);
  if (!hp) throw new StoreError("Store URL has a malformed host");
  const queryHost = params.get("host");
  const hostName = decode(queryHost ?? hp[1].replace(/^\[|\]$/g, ""), "host") || "localhost";
  const socketDir = hostName.startsWith("/") ? hostName : null;
  const portText = params.get("port") ?? hp[2] ?? "";
  const port = portText === "" ? 5432 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new StoreError(`Store URL port "${portText}" is not a port number`);
  }
  const user = decode(rawUser ?? "", "user") || env("PGUSER") || "";
  if (!user) throw new StoreError("Store URL must name a user: postgres://USER@HOST/DB");
  const database = decode(rawDb ?? "", "database name") || user;
  const sslmode = params.get("sslmode") ?? "disable";
  if (!(sslmode in SSL_MODES)) {
    throw new StoreError(
      `Store URL sslmode "${sslmode}" is not supported (disable, require, verify-full)`,
    );
  }
  const shownUser = encodeURIComponent(user);
  const shownDb = encodeURIComponent(database);
  const shownHost = hp[1].startsWith("[") ? `[${hostName}]` : hostName;
  const shown = socketDir
    ? `postgres://${shownUser}@/${shownDb}?host=${socketDir}&port=${port}`
    : `postgres://${shownUser}@${shownHost}:${port}/${shownDb}`;
  return {
    user,
    urlPassword: rawPassword === undefined ? null : decode(rawPassword, "password"),
    host: socketDir ? null : hostName,
    socketDir,
    port,
    database,
    ssl: SSL_MODES[sslmode as keyof typeof SSL_MODES],
    shown,
  };
}

async function privateFile(path: string, what: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    throw new StoreError(`Cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new StoreError(`${what} ${path} is readable by others; chmod 600 ${path}`);
  }
  return await Deno.readTextFile(path);
}

/** The password of a pgpass file's first matching line, or null. */
export function pgpassLookup(text: string, t: PgTarget): string | null {
  const host = t.socketDir ? ["localhost", t.socketDir] : [t.host!];
  const wanted = [host, [String(t.port)], [t.database], [t.user]];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const fields = line.replace(/\r$/, "").split(/(?<!\\):/).map((f) => f.replace(/\\(.)/g, "$1"));
    if (fields.length < 5) continue;
    const password = fields.slice(4).join(":");
    if (wanted.every((options, i) => fields[i] === "*" || options.includes(fields[i]))) {
      return password;
    }
  }
  return null;
}

/** Finds the password (URL, explicit file, PGPASSWORD, PGPASSFILE); null value if none. */
export async function resolvePassword(t: PgTarget, passwordFile?: string): Promise<Password> {
  if (t.urlPassword !== null) return { value: t.urlPassword, source: "the store URL" };
  if (passwordFile) {
    const text = await privateFile(passwordFile, "Store password file");
    return {
      value: text.split("\n")[0].replace(/\r$/, ""),
      source: `password file ${passwordFile}`,
    };
  }
  const fromEnv = env("PGPASSWORD");
  if (fromEnv !== undefined) return { value: fromEnv, source: "PGPASSWORD" };
  const passfile = env("PGPASSFILE");
  if (passfile) {
    const value = pgpassLookup(await privateFile(passfile, "PGPASSFILE"), t);
    if (value !== null) return { value, source: `PGPASSFILE ${passfile}` };
  }
  return { value: null, source: null };
}
