/**
 * The machine fingerprint that tells a device restarting from its own state apart from a copy
 * of that state running elsewhere (a cloned disk image, a copied state directory).
 *
 * It hashes facts that stay the same across restarts, crashes and power loss of one machine,
 * and that differ for a copy:
 *   - the state directory's real path and the inode of `anchor`, a file written once at the
 *     first run and never rewritten (a copied directory gets new inodes);
 *   - /etc/machine-id (regenerated on the first boot of a prepared image);
 *   - the DMI product UUID (VMs cloned by hypervisors get a new one) and, on Raspberry Pis, the
 *     CPU serial number (a card moved to another Pi), when readable.
 * Failure cases are in the README: a state directory restored from a file-level backup, or a
 * machine-id regenerated on purpose, make a device look like a copy of itself (it then
 * re-enrols as a child); a block-level copy booted on identical hardware with the same
 * machine-id looks like the original.
 */

const ANCHOR = "anchor";

function read(path: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "";
  }
}

function piSerial(): string {
  return /^Serial\s*:\s*(\S+)/m.exec(read("/proc/cpuinfo"))?.[1] ?? "";
}

/** Creates the anchor file if it is missing (durably), and returns its inode. */
function anchorInode(stateDir: string): number {
  const path = `${stateDir}/${ANCHOR}`;
  try {
    return Deno.statSync(path).ino ?? 0;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
  try {
    file.writeSync(new TextEncoder().encode(`${crypto.randomUUID()}\n`));
    file.syncSync();
  } finally {
    file.close();
  }
  return Deno.statSync(path).ino ?? 0;
}

/** The fingerprint of this machine and state directory, as base64url of a SHA-256. */
export async function machineFingerprint(stateDir: string): Promise<string> {
  Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const facts = [
    `dir=${Deno.realPathSync(stateDir)}`,
    `anchor=${anchorInode(stateDir)}`,
    `machine-id=${read("/etc/machine-id")}`,
    `product=${read("/sys/class/dmi/id/product_uuid")}`,
    `serial=${piSerial()}`,
  ].join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(facts));
  return btoa(String.fromCharCode(...new Uint8Array(digest)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
