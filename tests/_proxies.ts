/**
 * Real TLS reverse proxies in front of a relay, each run from its configuration in deploy/ as it
 * is: the test supplies only a port, the certificate and the relay's address (through the
 * environment variables Caddy and HAProxy read, and for nginx the od-relay.local file the site
 * includes). Each runs in the foreground on [::1] with its pid, logs and state in a temp dir, so
 * a system instance of the same server is neither needed nor disturbed.
 *
 * They listen on ::1 while the relay listens on 127.0.0.1: a client reaches the proxy from ::1
 * and the proxy reaches the relay from 127.0.0.1, so the address the relay records shows
 * whether it believed the proxy's X-Forwarded-For.
 */
import { Proc } from "./_harness.ts";
import type { TestCa } from "./_fleet.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;

/** A running reverse proxy. */
export interface ReverseProxy extends AsyncDisposable {
  name: "caddy" | "nginx" | "haproxy";
  /** The relay URL as clients use it through this proxy. */
  url: string;
  proc: Proc;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "::1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function accepting(port: number, proc: Proc): Promise<boolean> {
  let exited = false;
  proc.status.then(() => (exited = true));
  for (let i = 0; i < 100 && !exited; i++) {
    try {
      (await Deno.connect({ hostname: "::1", port })).close();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/** Starts a proxy with `launch(port)`, retrying on another free port if it could not listen. */
async function start(
  name: ReverseProxy["name"],
  launch: (port: number) => Promise<Proc>,
): Promise<ReverseProxy> {
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const proc = await launch(port);
    if (await accepting(port, proc)) {
      return {
        name,
        url: `https://[::1]:${port}`,
        proc,
        [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose](),
      };
    }
    await proc.stop();
    last = proc.stderr;
  }
  throw new Error(`${name} did not start:\n${last}`);
}

/** Caddy running deploy/Caddyfile. */
export function startCaddy(dir: string, ca: TestCa, upstream: string): Promise<ReverseProxy> {
  return start("caddy", async (port) => {
    const home = `${dir}/caddy-${port}`;
    await Deno.mkdir(home, { recursive: true });
    return new Proc("caddy", ["run", "--adapter", "caddyfile", "--config", `${DEPLOY}Caddyfile`], {
      cmd: "caddy",
      cwd: home,
      env: {
        HOME: home,
        XDG_DATA_HOME: `${home}/data`, // certificates and locks Caddy would manage
        XDG_CONFIG_HOME: `${home}/config`, // autosave.json
        OD_SITE: `https://[::1]:${port}`,
        OD_UPSTREAM: upstream,
        OD_CADDY_TLS: `tls ${ca.certFile} ${ca.keyFile}`,
        OD_CADDY_ADMIN: "off",
        OD_CADDY_HTTP_PORT: String(freePort()), // not 80: its redirect listener stays out of the way
      },
    });
  });
}

/** nginx including deploy/nginx/od-relay.conf from a main config of the test's own. */
export function startNginx(dir: string, ca: TestCa, upstream: string): Promise<ReverseProxy> {
  return start("nginx", async (port) => {
    const home = `${dir}/nginx-${port}`;
    await Deno.mkdir(home, { recursive: true });
    await Deno.writeTextFile(
      `${home}/od-relay.local`,
      [
        `listen [::1]:${port} ssl;`,
        "server_name localhost;",
        `ssl_certificate ${ca.certFile};`,
        `ssl_certificate_key ${ca.keyFile};`,
        `set $od_relay ${upstream};`,
        "",
      ].join("\n"),
    );
    const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
      .map((t) => `${t}_temp_path ${home}/${t};`);
    await Deno.writeTextFile(
      `${home}/nginx.conf`,
      [
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        `pid ${home}/nginx.pid;`,
        "error_log stderr notice;",
        "events { worker_connections 1024; }",
        "http {",
        `  access_log ${home}/access.log;`,
        ...temp.map((t) => `  ${t}`),
        `  include ${DEPLOY}nginx/od-relay.conf;`,
        "}",
        "",
      ].join("\n"),
    );
    // -e: errors before the config is read go to stderr, not to /var/log/nginx.
    return new Proc("nginx", ["-e", "stderr", "-p", `${home}/`, "-c", `${home}/nginx.conf`], {
      cmd: "nginx",
    });
  });
}

/** HAProxy running deploy/haproxy.cfg. */
export function startHaproxy(dir: string, ca: TestCa, upstream: string): Promise<ReverseProxy> {
  return start("haproxy", async (port) => {
    const home = `${dir}/haproxy-${port}`;
    await Deno.mkdir(home, { recursive: true });
    // HAProxy wants the chain and the key in one file.
    const pem = `${home}/relay.pem`;
    await Deno.writeTextFile(
      pem,
      (await Deno.readTextFile(ca.certFile)) + (await Deno.readTextFile(ca.keyFile)),
    );
    return new Proc("haproxy", ["-db", "-f", `${DEPLOY}haproxy.cfg`], {
      cmd: "haproxy",
      cwd: home,
      env: { OD_BIND: `[::1]:${port}`, OD_TLS_PEM: pem, OD_UPSTREAM: upstream },
    });
  });
}
