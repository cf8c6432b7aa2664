/** Host keys of the sshd a device exposes, reported to the relay so clients can pin them. */
import { log } from "../shared/log.ts";

const SSH_DIR = "/etc/ssh";
const DEFAULT_RE = /^ssh_host_[a-z0-9]+_key\.pub$/;

/** The default host key files: /etc/ssh/ssh_host_*_key.pub, sorted. */
export function defaultHostKeyFiles(): string[] {
  try {
    return [...Deno.readDirSync(SSH_DIR)]
      .filter((e) => e.isFile && DEFAULT_RE.test(e.name))
      .map((e) => `${SSH_DIR}/${e.name}`)
      .sort();
  } catch {
    return [];
  }
}

/** Reads `type base64` from each file (the default files when none are given). */
export function readHostKeys(files?: string[]): string[] {
  const keys: string[] = [];
  for (const file of files && files.length > 0 ? files : defaultHostKeyFiles()) {
    try {
      const line = Deno.readTextFileSync(file).trim().split("\n")[0];
      const [type, data] = line.split(/\s+/);
      if (type && data) keys.push(`${type} ${data}`);
    } catch (err) {
      log.warn("cannot read host key", { file, error: err });
    }
  }
  return keys;
}
