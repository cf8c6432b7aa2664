/**
 * Serves the dashboard's embedded files with the headers that keep it strict: a
 * Content-Security-Policy that allows only the relay's own script, style and connections (no
 * inline script or style, no framing, no plugins), no MIME sniffing, no referrer. The shell
 * names its assets with a content hash (`app.js?v=…`), so they are cached for good and a new
 * relay version is fetched at once.
 */
import { ASSETS, INDEX_HTML } from "./assets.ts";

/** The dashboard's Content-Security-Policy. */
export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers every dashboard response carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

const encoder = new TextEncoder();
const shell = encoder.encode(INDEX_HTML);

/** The HTML shell every page is, with `status` (403 for a page the session's key may not see). */
export function pageResponse(status: number): Response {
  return new Response(shell, {
    status,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": "text/html; charset=utf-8",
      "content-length": String(shell.length),
      "cache-control": "no-store",
    },
  });
}

const bodies = new Map(Object.entries(ASSETS).map(([name, a]) => [name, encoder.encode(a.body)]));

/** One embedded asset; cached for a year when asked for by its current hash. */
export function assetResponse(name: string, req: Request): Response {
  const asset = ASSETS[name];
  const body = bodies.get(name)!;
  const current = new URL(req.url).searchParams.get("v") === asset.hash;
  const etag = `"${asset.hash}"`;
  const headers = {
    ...SECURITY_HEADERS,
    "content-type": asset.type,
    "cache-control": current ? "public, max-age=31536000, immutable" : "no-cache",
    etag,
  };
  if (req.headers.get("if-none-match") === etag) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(body, {
    headers: { ...headers, "content-length": String(body.length) },
  });
}
