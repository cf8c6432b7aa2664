/**
 * A real PostgreSQL 15 for tests (Debian's `postgresql` package): `initdb` into a temporary
 * directory, then `pg_ctl` with the server listening on a Unix socket in another temporary
 * directory and on a free TCP port of 127.0.0.1. PostgreSQL refuses to run as root, so the
 * server runs as the `postgres` system user the package creates (via runuser), and the temporary
 * directories are handed to it. The fixture creates one database and one role with a password
 * (scram-sha-256 on the socket and on TCP); the superuser is reachable only by peer
 * authentication as `postgres`. Dispose stops the server (fast shutdown, then SIGKILL by the PID
 * in postmaster.pid) and removes the directories.
 */

/** Where Debian installs PostgreSQL 15's server binaries. */
export const PG_BIN = "/usr/lib/postgresql/15/bin";
const PG_USER = "postgres"; // the system user Debian's package creates

/** True if the PostgreSQL server binaries are installed (scripts/test installs them). */
export function havePostgres(): boolean {
  try {
    Deno.statSync(`${PG_BIN}/initdb`);
    Deno.statSync(`${PG_BIN}/pg_ctl`);
    return true;
  } catch {
    return false;
  }
}

/** The sentence a skipped PostgreSQL test prints. */
export const SKIP_SENTENCE =
  `PostgreSQL tests skipped: ${PG_BIN}/initdb is not installed (scripts/test installs postgresql)`;

/** A running PostgreSQL server with one database and one password-protected role. */
export interface Postgres extends AsyncDisposable {
  /** The directory holding the server's Unix socket. */
  socketDir: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** `postgres://USER@127.0.0.1:PORT/DB` (no password in it). */
  tcpUrl: string;
  /** `postgres://USER@/DB?host=SOCKETDIR&port=PORT` (no password in it). */
  socketUrl: string;
  /** The postmaster's PID. */
  pid(): number;
  /** `pg_ctl restart -m fast`: every connection is closed; the server comes back. */
  restart(): Promise<void>;
  /** `pg_ctl stop -m fast`. */
  stop(): Promise<void>;
  /** `pg_ctl stop -m immediate`: like a crash, no checkpoint; the next start replays the WAL. */
  crash(): Promise<void>;
  /** `pg_ctl start` after stop(). */
  start(): Promise<void>;
  /** Runs SQL as the superuser through psql; returns stdout. */
  psql(sql: string, database?: string): Promise<string>;
}

async function run(cmd: string, args: string[], what: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`${what} failed (exit ${out.code}): ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

function asPostgres(args: string[], what: string): Promise<string> {
  return run("runuser", ["-u", PG_USER, "--", ...args], what);
}

async function uidGid(user: string): Promise<[number, number]> {
  const uid = Number((await run("id", ["-u", user], "id -u")).trim());
  const gid = Number((await run("id", ["-g", user], "id -g")).trim());
  return [uid, gid];
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

const HBA = [
  "local all postgres peer", // the fixture's own setup, as the postgres system user
  "local all all scram-sha-256",
  "host all all 127.0.0.1/32 scram-sha-256",
  "",
].join("\n");

/** Options for startPostgres. */
export interface PostgresOptions {
  /** The server's max_connections (default PostgreSQL's 100). */
  maxConnections?: number;
  /** Lets role `od` create databases (a whole test suite gets one database per relay). */
  createdb?: boolean;
}

/** Starts PostgreSQL with database `od` and role `od` (random password). */
export async function startPostgres(options: PostgresOptions = {}): Promise<Postgres> {
  const root = await Deno.makeTempDir({ prefix: "od-pg-" });
  const data = `${root}/data`;
  const socketDir = `${root}/sock`;
  try {
    const [uid, gid] = await uidGid(PG_USER);
    await Deno.mkdir(socketDir, { mode: 0o700 });
    for (const dir of [root, socketDir]) await Deno.chown(dir, uid, gid);
    await Deno.chmod(root, 0o700);
    const password = randomHex(16);
    await asPostgres([
      `${PG_BIN}/initdb`,
      "-D",
      data,
      "-U",
      PG_USER,
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
      "--auth=trust", // replaced by HBA below before the server starts
      "--no-instructions",
    ], "initdb");
    await Deno.writeTextFile(`${data}/pg_hba.conf`, HBA);
    await Deno.chown(`${data}/pg_hba.conf`, uid, gid);
    let port = 0;
    for (let attempt = 0; attempt < 5 && port === 0; attempt++) {
      const candidate = freePort();
      const ok = await pgCtl(data, socketDir, candidate, "start", options).then(
        () => true,
        (err) => {
          if (attempt === 4) throw err;
          return false;
        },
      );
      if (ok) port = candidate;
    }
    const pg = fixture(root, data, socketDir, port, password, options);
    const createdb = options.createdb ? " CREATEDB" : "";
    await pg.psql(`CREATE ROLE od LOGIN${createdb} PASSWORD '${password}'`);
    await pg.psql("CREATE DATABASE od OWNER od");
    return pg;
  } catch (err) {
    await killPostmaster(data);
    await Deno.remove(root, { recursive: true }).catch(() => {});
    throw err;
  }
}

function pgCtl(
  data: string,
  socketDir: string,
  port: number,
  action: string,
  settings: PostgresOptions = {},
): Promise<string> {
  let options = `-k ${socketDir} -p ${port} -c listen_addresses=127.0.0.1`;
  if (settings.maxConnections) options += ` -c max_connections=${settings.maxConnections}`;
  return asPostgres([
    `${PG_BIN}/pg_ctl`,
    "-D",
    data,
    "-l",
    `${data}/server.log`,
    "-o",
    options,
    "-m",
    "fast",
    "-w",
    "-t",
    "30",
    action,
  ], `pg_ctl ${action}`);
}

function postmasterPid(data: string): number | null {
  try {
    const pid = Number(Deno.readTextFileSync(`${data}/postmaster.pid`).split("\n")[0]);
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

async function killPostmaster(data: string): Promise<void> {
  const pid = postmasterPid(data);
  if (pid === null) return;
  await pgCtlStop(data).catch(() => {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  });
}

function pgCtlStop(data: string, mode = "fast"): Promise<string> {
  return asPostgres(
    [`${PG_BIN}/pg_ctl`, "-D", data, "-m", mode, "-w", "-t", "30", "stop"],
    "pg_ctl stop",
  );
}

function fixture(
  root: string,
  data: string,
  socketDir: string,
  port: number,
  password: string,
  settings: PostgresOptions,
): Postgres {
  return {
    socketDir,
    port,
    database: "od",
    user: "od",
    password,
    tcpUrl: `postgres://od@127.0.0.1:${port}/od`,
    socketUrl: `postgres://od@/od?host=${socketDir}&port=${port}`,
    pid() {
      const pid = postmasterPid(data);
      if (pid === null) throw new Error("PostgreSQL is not running");
      return pid;
    },
    async restart() {
      await pgCtl(data, socketDir, port, "restart", settings);
    },
    async stop() {
      await pgCtlStop(data);
    },
    async crash() {
      await pgCtlStop(data, "immediate");
    },
    async start() {
      await pgCtl(data, socketDir, port, "start", settings);
    },
    psql(sql: string, database = "postgres") {
      return asPostgres([
        `${PG_BIN}/psql`,
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        socketDir,
        "-p",
        String(port),
        "-d",
        database,
        "-c",
        sql,
      ], "psql");
    },
    async [Symbol.asyncDispose]() {
      await killPostmaster(data);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}
