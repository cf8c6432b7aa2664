/**
 * Debian's squid as a test's HTTP CONNECT proxy, never the system service: its own config, pid,
 * logs and (memory-only) cache in a directory of its own, Basic authentication from a password
 * file written with htpasswd, listening on an address and port the test chooses. Squid drops
 * root for its `proxy` user, so that directory is made for it (readable and writable by it).
 */
import { Proc } from "./_harness.ts";

/** A running (or stopped and restartable) squid. */
export interface Squid extends AsyncDisposable {
  /** `http://HOST:PORT`, without credentials. */
  url: string;
  host: string;
  port: number;
  /** squid's access log so far (a CONNECT is logged when its tunnel ends). */
  accessLog(): Promise<string>;
  /** Stops squid (SIGTERM; it exits at once with shutdown_lifetime 0). */
  stop(): Promise<void>;
  /** Starts it again on the same address and port. */
  start(): Promise<void>;
}

/** Squid's configuration; `idle` is how long a silent CONNECT tunnel is kept (read_timeout). */
function config(dir: string, host: string, port: number, idleS: number): string {
  return [
    `http_port ${host}:${port}`,
    "cache_effective_user proxy",
    `pid_filename ${dir}/squid.pid`,
    `cache_log ${dir}/cache.log`,
    `access_log stdio:${dir}/access.log squid`,
    "cache_store_log none",
    "logfile_rotate 0",
    `coredump_dir ${dir}`,
    "cache deny all",
    "cache_mem 8 MB",
    "netdb_filename none",
    "pinger_enable off",
    "shutdown_lifetime 0 seconds",
    `auth_param basic program /usr/lib/squid/basic_ncsa_auth ${dir}/passwd`,
    "auth_param basic realm od-test",
    "acl authed proxy_auth REQUIRED",
    "http_access deny !authed",
    "http_access allow authed",
    // Squid closes a CONNECT tunnel in which nothing moved for this long: a short one here, so
    // the test can show that od's keepalive keeps its links open through it.
    `read_timeout ${idleS} seconds`,
    "",
  ].join("\n");
}

async function accepting(host: string, port: number, proc: Proc): Promise<boolean> {
  let exited = false;
  proc.status.then(() => (exited = true));
  for (let i = 0; i < 150 && !exited; i++) {
    try {
      (await Deno.connect({ hostname: host, port })).close();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/** Starts squid on `host` with user `user` and password `password`. */
export async function startSquid(options: {
  host: string;
  user: string;
  password: string;
  idleTimeoutS: number;
}): Promise<Squid> {
  // Not under the test's temp dir: that is mode 0700 for root, and squid runs as proxy.
  const dir = await Deno.makeTempDir({ prefix: "od-squid-" });
  await Deno.chmod(dir, 0o755);
  const htpasswd = await new Deno.Command("htpasswd", {
    args: ["-b", "-c", `${dir}/passwd`, options.user, options.password],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!htpasswd.success) throw new Error(`htpasswd: ${new TextDecoder().decode(htpasswd.stderr)}`);
  await new Deno.Command("chown", { args: ["-R", "proxy:proxy", dir] }).output();
  let proc: Proc | null = null;
  let port = 0;
  const launch = async (): Promise<boolean> => {
    await Deno.writeTextFile(
      `${dir}/squid.conf`,
      config(dir, options.host, port, options.idleTimeoutS),
    );
    await Deno.remove(`${dir}/squid.pid`).catch(() => {});
    proc = new Proc("squid", ["-N", "-f", `${dir}/squid.conf`], { cmd: "squid" });
    if (await accepting(options.host, port, proc)) return true;
    await proc.stop();
    return false;
  };
  for (let attempt = 0; attempt < 5 && proc === null; attempt++) {
    const probe = Deno.listen({ hostname: options.host, port: 0 });
    port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    if (!(await launch())) proc = null;
  }
  if (!proc) {
    const log = await Deno.readTextFile(`${dir}/cache.log`).catch(() => "");
    await Deno.remove(dir, { recursive: true });
    throw new Error(`squid did not start:\n${log}`);
  }
  const stop = async () => {
    await proc?.stop();
    proc = null;
  };
  return {
    url: `http://${options.host}:${port}`,
    host: options.host,
    port,
    accessLog: () => Deno.readTextFile(`${dir}/access.log`).catch(() => ""),
    stop,
    async start() {
      if (!(await launch())) {
        throw new Error(
          `squid did not start again: ${await Deno.readTextFile(`${dir}/cache.log`)}`,
        );
      }
    },
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
