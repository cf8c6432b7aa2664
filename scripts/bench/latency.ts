/**
 * Tunnel open latency, in this process: `openTunnel` against a running relay and daemon (from
 * the call until the device's OPENED has come back), next to a plain TCP connect to the same
 * echo service the daemon dials, and a raw WebSocket open against a plain Deno TLS server (to
 * tell what TLS and Deno's WebSocket client cost without od).
 */
import { openTunnel } from "../../src/client/pipe.ts";
import { SUBPROTOCOL } from "../../src/protocol/frame.ts";
import { DEVICE, type Fleet } from "./fleet.ts";

const WARMUP = 10; // opens not counted: the first ones pay for JIT and connection-pool set-up

/** Milliseconds each of `count` sequential calls of `once` took, after the warm-up ones. */
async function timeEach(count: number, once: () => Promise<() => Promise<void>>) {
  const times: number[] = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const started = performance.now();
    const close = await once();
    const ms = performance.now() - started;
    await close(); // outside the timing, so each open starts on a quiet relay
    if (i >= WARMUP) times.push(ms);
  }
  return times;
}

/** Open times of `count` tunnels to the fleet's echo service, each closed once it is open. */
export function tunnelOpens(fleet: Fleet, count: number): Promise<number[]> {
  return timeEach(count, async () => {
    const { link } = await openTunnel(fleet.target, DEVICE, "echo");
    return async () => {
      link.close();
      await link.flushed();
    };
  });
}

/** Connect times of `count` plain TCP connections to `port`, each closed once connected. */
export function tcpConnects(port: number, count: number): Promise<number[]> {
  return timeEach(count, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return () => Promise.resolve(conn.close());
  });
}

/** Open times of `count` raw WebSockets to `url`, trusting `caPem`, each closed once open. */
export async function webSocketOpens(url: string, caPem: string, count: number) {
  using client = Deno.createHttpClient({ caCerts: [caPem] });
  return await timeEach(count, async () => {
    const ws = new WebSocket(url, { protocols: [SUBPROTOCOL], client });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
    return async () => {
      const closed = new Promise((resolve) => (ws.onclose = resolve));
      ws.close();
      await closed;
    };
  });
}
