/**
 * Durable writes for the files a device keeps in its state directory. A write is on disk when
 * the call returns: data and (for new names) the directory entry are fsynced, so a process
 * killed with -9 or a machine losing power leaves the old content or the new, never a torn file.
 */

const encoder = new TextEncoder();

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
}

/** fsyncs a directory, so a file created or renamed in it survives power loss. */
export function syncDir(dir: string): void {
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // some filesystems cannot fsync a directory; the rename is still atomic
  }
}

/** Replaces `path` with `text` atomically and durably (temporary file, fsync, rename), 0600. */
export function writeAtomic(path: string, text: string): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const tmp = `${dir}/.${path.slice(slash + 1)}.${crypto.randomUUID()}.tmp`;
  const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    writeAll(file, encoder.encode(text));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.renameSync(tmp, path);
  syncDir(dir);
}

/** Appends `text` to `path` (created 0600 if missing) and fsyncs it before returning. */
export function appendDurably(path: string, text: string): void {
  let created = false;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { append: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
    created = true;
  }
  try {
    writeAll(file, encoder.encode(text));
    file.syncDataSync();
  } finally {
    file.close();
  }
  if (created) syncDir(path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".");
}
