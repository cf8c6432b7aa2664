/**
 * Benchmark helper process, plain Deno WebSockets without od, in one of three roles:
 *
 *   deno run --allow-net --allow-read scripts/bench/ws_peer.ts sink CERT KEY
 *     A Deno.serve TLS server counting the bytes of binary messages and acknowledging them, so
 *     a sender can keep a bounded window in flight. An ack is a text message holding the total
 *     counted so far, sent every ACK_EVERY bytes and whenever the sender asks with a text
 *     message. Prints `{"port":N}` once listening and, when a socket closes,
 *     `{"bytes":B,"ms":T}` with T from the first message to the last. Runs until killed.
 *
 *   deno run --allow-net --allow-read scripts/bench/ws_peer.ts send URL CA_FILE BYTES
 *     Sends BYTES bytes as 64 KiB binary messages over one WebSocket to a sink, at most WINDOW
 *     unacknowledged, asks for a final ack, waits for it and closes: the raw single wss hop an
 *     od tunnel is compared with.
 *
 *   deno run --allow-net --allow-read scripts/bench/ws_peer.ts hold [CERT KEY]
 *     A Deno.serve server (TLS when given a certificate) accepting every WebSocket (choosing
 *     od.1 when offered), discarding what arrives and holding the sockets idle: what an idle
 *     WebSocket costs a Deno server. Prints `{"port":N}` once listening; runs until killed.
 */

const ACK_EVERY = 256 * 1024; // a quarter window, as od batches CREDIT frames
const MESSAGE = 64 * 1024; // od's MAX_DATA: the message size a tunnel uses
const WINDOW = 1024 * 1024; // od's STREAM_WINDOW: the bytes in flight a tunnel allows
const IDLE_TIMEOUT_S = 30; // the relay's WebSocket ping interval, so hold does the same upkeep

function serve(tls: string[], handler: (req: Request) => Response): void {
  const [certFile, keyFile] = tls;
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(certFile && keyFile
      ? { cert: Deno.readTextFileSync(certFile), key: Deno.readTextFileSync(keyFile) }
      : {}),
    onListen: (addr) => console.log(JSON.stringify({ port: addr.port })),
  }, handler);
}

function count(socket: WebSocket): void {
  socket.binaryType = "arraybuffer";
  let bytes = 0;
  let acked = 0;
  let first = 0;
  let last = 0;
  socket.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      last = performance.now();
      if (bytes === 0) first = last;
      bytes += (ev.data as ArrayBuffer).byteLength;
      if (bytes - acked < ACK_EVERY) return;
    }
    socket.send(String(bytes)); // every ACK_EVERY bytes, and on the sender's flush request
    acked = bytes;
  };
  socket.onclose = () => console.log(JSON.stringify({ bytes, ms: last - first }));
}

async function send(url: string, caFile: string, total: number): Promise<void> {
  using client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(caFile)] });
  const ws = new WebSocket(url, { client });
  ws.binaryType = "arraybuffer";
  let acked = 0;
  let wake: (() => void) | null = null;
  ws.onmessage = (ev) => {
    acked = Number(ev.data);
    wake?.();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot open ${url}`));
  });
  const until = async (ok: () => boolean) => {
    while (!ok()) await new Promise<void>((r) => (wake = r));
  };
  const data = crypto.getRandomValues(new Uint8Array(MESSAGE));
  for (let sent = 0; sent < total;) {
    await until(() => sent - acked < WINDOW);
    const size = Math.min(MESSAGE, total - sent);
    ws.send(data.subarray(0, size));
    sent += size;
  }
  ws.send("flush");
  await until(() => acked >= total);
  const closed = new Promise((r) => (ws.onclose = r));
  ws.close();
  await closed;
}

const held = new Set<WebSocket>(); // as the relay keeps its device sessions in a map

function hold(req: Request): Response {
  const offered = req.headers.get("sec-websocket-protocol")?.split(",").map((p) => p.trim());
  const { socket, response } = Deno.upgradeWebSocket(req, {
    protocol: offered?.includes("od.1") ? "od.1" : undefined,
    idleTimeout: IDLE_TIMEOUT_S,
  });
  held.add(socket);
  socket.onmessage = () => {};
  socket.onclose = () => held.delete(socket);
  return response;
}

if (import.meta.main) {
  const [role, ...args] = Deno.args;
  if (role === "sink" && args.length === 2) {
    serve(args, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      count(socket);
      return response;
    });
  } else if (role === "send" && args.length === 3 && Number(args[2]) > 0) {
    await send(args[0], args[1], Number(args[2]));
  } else if (role === "hold") serve(args, hold);
  else throw new Error("usage: ws_peer.ts sink CERT KEY | send URL CA BYTES | hold [CERT KEY]");
}
