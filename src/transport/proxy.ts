/**
 * Which HTTP CONNECT proxy to use for a URL, the way curl reads the environment: HTTPS_PROXY /
 * https_proxy for https and wss, HTTP_PROXY / http_proxy for http and ws, and NO_PROXY /
 * no_proxy for the hosts reached directly. An explicit proxy (`--proxy URL`, OD_PROXY, a stored
 * one) replaces the environment's; `none` means never a proxy. NO_PROXY applies to both, as in
 * curl. Its entries, comma-separated:
 *   `*`                      every host
 *   `example.com`            that name and every name under it (`.example.com`, `*.example.com`
 *                            alike)
 *   `192.0.2.7`, `::1`       that address, when the URL names the host by address
 *   `192.0.2.0/24`, `fd00::/8`  every address in that range (names are not resolved to match)
 *   any of these with `:PORT`  only that port
 */

/** The explicit proxy setting that means "connect directly, whatever the environment says". */
export const NO_PROXY_SETTING = "none";

function env(...names: string[]): string | undefined {
  for (const n of names) {
    const v = Deno.env.get(n);
    if (v) return v;
  }
  return undefined;
}

/** An IPv4 or IPv6 address as 4 or 16 bytes, or null if `text` is not one. */
export function parseIp(text: string): Uint8Array | null {
  const s = text.replace(/^\[|\]$/g, "");
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const bytes = v4.slice(1).map(Number);
    return bytes.every((b) => b <= 255) ? new Uint8Array(bytes) : null;
  }
  if (!s.includes(":") || !/^[0-9a-f:.]+$/i.test(s)) return null;
  let head = s;
  let tail4: number[] = [];
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s); // ::ffff:192.0.2.1
  if (dotted) {
    const v4part = parseIp(dotted[2]);
    if (!v4part) return null;
    head = dotted[1] + "0:0";
    tail4 = [...v4part];
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return null;
  const all = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  if (all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return null;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 255;
  });
  if (tail4.length) out.set(tail4, 12);
  return out;
}

/** True if address `ip` lies in `net`/`bits` (both of the same family). */
function inRange(ip: Uint8Array, net: Uint8Array, bits: number): boolean {
  if (ip.length !== net.length || bits > ip.length * 8) return false;
  for (let i = 0; i < ip.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i] & mask) !== (net[i] & mask)) return false;
  }
  return true;
}

/** Splits a NO_PROXY entry into host and optional port; null if it is malformed. */
function splitEntry(entry: string): { host: string; port?: number } | null {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry); // [v6] or [v6]:port
  if (bracketed) {
    return { host: bracketed[1], port: bracketed[2] ? Number(bracketed[2]) : undefined };
  }
  if ((entry.match(/:/g) ?? []).length > 1) return { host: entry }; // a bare IPv6 address or range
  const m = /^([^:]+)(?::(\d+))?$/.exec(entry);
  return m ? { host: m[1], port: m[2] ? Number(m[2]) : undefined } : null;
}

/** True if `host:port` is excluded from proxying by a NO_PROXY list. */
export function bypassed(host: string, port: number, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const h = host.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  const ip = parseIp(h);
  for (const raw of noProxy.split(",")) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    const parts = splitEntry(entry);
    if (!parts || (parts.port !== undefined && parts.port !== port)) continue;
    const slash = parts.host.indexOf("/");
    if (slash >= 0) {
      const net = parseIp(parts.host.slice(0, slash));
      const bits = Number(parts.host.slice(slash + 1));
      if (ip && net && Number.isInteger(bits) && inRange(ip, net, bits)) return true;
      continue;
    }
    const entryIp = parseIp(parts.host);
    if (entryIp) {
      if (ip && inRange(ip, entryIp, entryIp.length * 8)) return true;
      continue;
    }
    const name = parts.host.replace(/^\*?\./, "").replace(/\.$/, "");
    if (name !== "" && (h === name || h.endsWith(`.${name}`))) return true;
  }
  return false;
}

/** Parses a proxy setting (`http://[USER:PASSWORD@]HOST[:PORT]`, or HOST:PORT); null if bad. */
export function parseProxyUrl(value: string): URL | null {
  try {
    const url = new URL(value.includes("://") ? value : `http://${value}`);
    return url.protocol === "http:" && url.hostname !== "" ? url : null;
  } catch {
    return null;
  }
}

/**
 * The proxy URL for `url`, or null to connect directly. `explicit` is a proxy given on the
 * command line or stored (`none` for never); without it the environment decides.
 */
export function proxyFor(url: URL, explicit?: string): URL | null {
  const secure = url.protocol === "https:" || url.protocol === "wss:";
  const port = Number(url.port || (secure ? 443 : 80));
  if (explicit === NO_PROXY_SETTING) return null;
  if (bypassed(url.hostname, port, env("NO_PROXY", "no_proxy"))) return null;
  const value = explicit ||
    (secure ? env("HTTPS_PROXY", "https_proxy") : env("HTTP_PROXY", "http_proxy"));
  return value ? parseProxyUrl(value) : null;
}

/** `host:port` of a proxy URL, the port always shown (80 when the URL leaves it out). */
export function proxyAddress(proxy: URL): string {
  return `${proxy.hostname}:${proxy.port || 80}`;
}

/** A proxy URL for messages and status output: the user name stays, the password never does. */
export function redactProxy(proxy: URL): string {
  return `http://${proxy.username ? `${decodeURIComponent(proxy.username)}:***@` : ""}${
    proxyAddress(proxy)
  }`;
}
