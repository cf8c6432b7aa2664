/**
 * The services a daemon exposes, by name. The daemon, not the relay, enforces this list: a name
 * that is not on it is refused before anything is dialled, whatever the relay asks.
 */
import { serviceProblem } from "../protocol/names.ts";
import { MAX_SERVICES } from "../protocol/control.ts";
import { UsageError } from "../shared/errors.ts";

/** Where a service lives: a TCP address or a Unix socket. */
export type ServiceTarget =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** The default when no --service is given: the local sshd. */
export const DEFAULT_SERVICES: Record<string, string> = { ssh: "127.0.0.1:22" };

const DIAL_TIMEOUT_MS = 10_000; // a local service that does not accept in 10 s is down

/** Parses `HOST:PORT`, `[V6]:PORT`, `PORT` or `unix:/path`; throws UsageError. */
export function parseTarget(spec: string, name: string): ServiceTarget {
  if (spec.startsWith("unix:")) {
    const path = spec.slice(5);
    if (!path.startsWith("/")) {
      throw new UsageError(`service "${name}": unix socket path must be absolute`);
    }
    return { transport: "unix", path };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(spec) ??
    /^()()(\d{1,5})$/.exec(spec);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`service "${name}": "${spec}" is not HOST:PORT, PORT or unix:/path`);
  }
  return { transport: "tcp", hostname: m[1] || m[2] || "127.0.0.1", port };
}

/** Parses repeated `NAME=TARGET` options into a name → target-spec record. */
export function parseServiceOptions(options: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const opt of options) {
    const eq = opt.indexOf("=");
    if (eq <= 0) throw new UsageError(`--service "${opt}" must be NAME=HOST:PORT`);
    const name = opt.slice(0, eq);
    const problem = serviceProblem(name);
    if (problem) throw new UsageError(problem);
    if (Object.hasOwn(out, name)) throw new UsageError(`service "${name}" is given twice`);
    parseTarget(opt.slice(eq + 1), name); // validate now, not at the first connection
    out[name] = opt.slice(eq + 1);
  }
  if (Object.keys(out).length > MAX_SERVICES) {
    throw new UsageError(`a device exposes at most ${MAX_SERVICES} services`);
  }
  return out;
}

/** Connects to a service's target, with a timeout. */
export async function dialService(target: ServiceTarget): Promise<Deno.Conn> {
  const connect: Promise<Deno.Conn> = target.transport === "unix"
    ? Deno.connect({ transport: "unix", path: target.path })
    : Deno.connect({ hostname: target.hostname, port: target.port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new Error("timed out"));
    }, DIAL_TIMEOUT_MS);
  });
  // A connection that completes after the timeout is closed, not leaked.
  connect.then((c) => timedOut && c.close(), () => {});
  try {
    const conn = await Promise.race([connect, timeout]);
    if (target.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    return conn;
  } finally {
    clearTimeout(timer);
  }
}

/** `127.0.0.1:22` or `unix:/run/x.sock`, for messages. */
export function describeTarget(target: ServiceTarget): string {
  return target.transport === "unix" ? `unix:${target.path}` : `${target.hostname}:${target.port}`;
}
