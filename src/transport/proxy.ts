/**
 * Which HTTP CONNECT proxy to use for a URL, the way curl and Deno read the environment:
 * HTTPS_PROXY/https_proxy for https and wss, HTTP_PROXY/http_proxy for http and ws, and
 * NO_PROXY/no_proxy (comma-separated; `*` for all; a name matches itself and its subdomains;
 * an optional `:port` narrows an entry) for the hosts to reach directly.
 */

function env(...names: string[]): string | undefined {
  for (const n of names) {
    const v = Deno.env.get(n);
    if (v) return v;
  }
  return undefined;
}

/** True if `host:port` is excluded from proxying by a NO_PROXY list. */
export function bypassed(host: string, port: number, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  for (const raw of noProxy.split(",")) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    if (!m) continue;
    if (m[2] && Number(m[2]) !== port) continue;
    const name = m[1].replace(/^\[|\]$/g, "").replace(/^\*?\./, "");
    if (h === name || h.endsWith(`.${name}`)) return true;
  }
  return false;
}

/** The proxy URL for `url`, or null to connect directly. */
export function proxyFor(url: URL): URL | null {
  const secure = url.protocol === "https:" || url.protocol === "wss:";
  const port = Number(url.port || (secure ? 443 : 80));
  if (bypassed(url.hostname, port, env("NO_PROXY", "no_proxy"))) return null;
  const value = secure ? env("HTTPS_PROXY", "https_proxy") : env("HTTP_PROXY", "http_proxy");
  if (!value) return null;
  try {
    return new URL(value.includes("://") ? value : `http://${value}`);
  } catch {
    return null;
  }
}
