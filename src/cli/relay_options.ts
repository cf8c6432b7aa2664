/** Options the daemon and the client share: the relay URL and a CA file to trust. */
import { OdError } from "../shared/errors.ts";

/** Reads a CA certificate file given with --ca or OD_CA. */
export function readCa(path: string): string {
  try {
    const pem = Deno.readTextFileSync(path);
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new OdError(`${path} is not a PEM certificate`);
    }
    return pem;
  } catch (err) {
    if (err instanceof OdError) throw err;
    throw new OdError(`cannot read CA file ${path}: ${(err as Error).message}`);
  }
}

/** Checks a relay URL and returns it without a trailing slash. */
export function normalizeRelayUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OdError(`relay URL "${url}" is not a URL; use https://relay.example.com`, {
      exitCode: 2,
    });
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new OdError(`relay URL "${url}" must start with https:// or http://`, { exitCode: 2 });
  }
  return parsed.origin + parsed.pathname.replace(/\/+$/, "");
}
