/**
 * Secrets od hands out: account keys (`od_client_…`, `od_device_…`, `od_full_…`) and device
 * credentials (`od_cred_…`). The prefix names the role so a leaked key is easy to recognise and
 * to grep for; the rest is 256 random bits. Only the SHA-256 of a secret is ever stored: the
 * secrets are random, so a slow password hash would add nothing (see src/store/hash.ts).
 *
 * Only Web Crypto is used here: this module loads on every `od pipe`, and node:crypto would
 * add some 30 ms to its start-up.
 */

/** Roles an account key can have. */
export type KeyRole = "client" | "device" | "full";
/** All key roles, for validation and help texts. */
export const KEY_ROLES: readonly KeyRole[] = ["client", "device", "full"];

const SECRET_RE = /^od_(client|device|full|cred)_([A-Za-z0-9_-]{43})$/;

function random(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  // base64url without padding: 43 characters
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** A new account key for `role`. */
export function generateKey(role: KeyRole): string {
  return `od_${role}_${random()}`;
}

/** A new device credential; the daemon makes it itself and sends it once when enrolling. */
export function generateCredential(): string {
  return `od_cred_${random()}`;
}

/** A short public id for a stored key, shown in listings and audit rows. */
export function generateKeyId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return `key-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** What kind of secret a string is, judged by its shape only; null if it is not one. */
export function secretKind(secret: string): KeyRole | "cred" | null {
  const m = SECRET_RE.exec(secret);
  return m ? (m[1] as KeyRole | "cred") : null;
}
