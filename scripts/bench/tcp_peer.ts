/**
 * Benchmark helper process, plain TCP on 127.0.0.1, in one of two roles:
 *
 *   deno run --allow-net scripts/bench/tcp_peer.ts sink
 *     A sink that discards and counts what it reads. Prints `{"port":N}` once listening, then
 *     for every connection, when the peer half-closes, `{"bytes":B,"ms":T}` where T runs from
 *     the first byte read to the last; then closes it. Runs until killed. The daemon's `sink`
 *     service, and the far end of the direct copy.
 *
 *   deno run --allow-net scripts/bench/tcp_peer.ts send PORT BYTES
 *     Connects straight to PORT, writes BYTES bytes of a random 1 MiB block, half-closes and
 *     waits for the peer to close: the direct-copy baseline for what moving bytes between two
 *     processes costs on this machine.
 */

/** What the sink saw on one connection. */
export interface SinkReport {
  bytes: number;
  ms: number;
}

const READ_SIZE = 256 * 1024; // larger than a socket's usual read, so reads are never the limit
const BLOCK = 1024 * 1024; // write size: the same the bench uses to feed `od pipe`'s stdin
const RANDOM_LIMIT = 65536; // the most crypto.getRandomValues fills at once

async function drain(conn: Deno.Conn): Promise<SinkReport> {
  const buf = new Uint8Array(READ_SIZE);
  let bytes = 0;
  let first = 0;
  let last = 0;
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    last = performance.now();
    if (bytes === 0) first = last;
    bytes += n;
  }
  return { bytes, ms: last - first };
}

async function sink(): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ port: (listener.addr as Deno.NetAddr).port }));
  for await (const conn of listener) {
    drain(conn)
      .then((report) => console.log(JSON.stringify(report)))
      .catch((err) => console.error(`sink: ${err}`))
      .finally(() => conn.close());
  }
}

/** A block of random bytes, filled in the pieces getRandomValues allows. */
export function randomBlock(size: number): Uint8Array {
  const block = new Uint8Array(size);
  for (let off = 0; off < size; off += RANDOM_LIMIT) {
    crypto.getRandomValues(block.subarray(off, off + RANDOM_LIMIT));
  }
  return block;
}

async function send(port: number, total: number): Promise<void> {
  const data = randomBlock(BLOCK);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true); // as the daemon dials its services
  let sent = 0;
  while (sent < total) {
    let chunk = data.subarray(0, Math.min(BLOCK, total - sent));
    sent += chunk.length;
    while (chunk.length > 0) chunk = chunk.subarray(await conn.write(chunk));
  }
  await conn.closeWrite();
  await conn.read(new Uint8Array(1)); // the sink closes after counting everything
  conn.close();
}

if (import.meta.main) {
  const [role, port, bytes] = Deno.args;
  if (role === "sink") await sink();
  else if (role === "send" && Number(port) > 0 && Number(bytes) > 0) {
    await send(Number(port), Number(bytes));
  } else throw new Error("usage: tcp_peer.ts sink | send PORT BYTES");
}
