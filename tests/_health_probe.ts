/**
 * Probes a relay's /v1/health from its own process (so the test's own work does not delay it)
 * every 50 ms until stdin closes, then prints one JSON line: how many probes, the slowest, the
 * 99th percentile, and how many failed.
 *
 *   deno run --allow-net tests/_health_probe.ts URL
 */
const url = new URL("/v1/health", Deno.args[0]);
const times: number[] = [];
let failed = 0;
let stop = false;
(async () => {
  for await (const _ of Deno.stdin.readable) { /* until closed */ }
  stop = true;
})();
console.log(JSON.stringify({ ready: true }));
while (!stop) {
  const started = performance.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    if (!res.ok) failed++;
  } catch {
    failed++;
  }
  const took = performance.now() - started;
  times.push(took);
  if (took > 100) {
    console.error(`slow probe: ${Math.round(took)} ms at ${new Date().toISOString()}`);
  }
  await new Promise((r) => setTimeout(r, 50));
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({
  probes: times.length,
  max: times.at(-1) ?? 0,
  p99: times[Math.floor(times.length * 0.99)] ?? 0,
  failed,
}));
