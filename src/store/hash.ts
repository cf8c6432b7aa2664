/** The stored form of a secret: its SHA-256. Relay-side only (node:crypto hashes synchronously). */
import { createHash } from "node:crypto";

/** SHA-256 of a secret, as stored in place of the secret. */
export function hashSecret(secret: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(secret).digest());
}
