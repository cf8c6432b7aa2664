/**
 * How `od serve` ends, as systemd sees it: SIGTERM and SIGINT stop it cleanly with exit 0, and
 * a relay that cannot start says why in one sentence and exits non-zero, so `Restart=on-failure`
 * and an operator reading the journal both do the right thing.
 */
import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import { assertOneSentence } from "./_fleet.ts";

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${sig} stops the relay with exit code 0`, async () => {
    await using dir = await tempDir();
    await using relay = new Proc("relay", ["serve", "--listen", "127.0.0.1:0", "--data", dir]);
    await relay.waitFor(/relay listening url=(\S+)/);
    relay.signal(sig);
    const { code } = await relay.output(); // all of stderr, not only the exit status
    assertEquals(code, 0, relay.stderr);
    match(relay.stderr, new RegExp(`relay stopped signal=${sig}`));
  });
}

Deno.test("a store that cannot be opened: one sentence, non-zero exit", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir}/od.db`, "this is not an SQLite file, just text\n".repeat(100));
  const out = await od(["serve", "--listen", "127.0.0.1:0", "--data", dir]);
  assertOneSentence(out, /store .*od\.db.*(not a database|file is not)/i, 1);
});

Deno.test("an address in use: one sentence, non-zero exit", async () => {
  await using dir = await tempDir();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const out = await od(["serve", "--listen", `127.0.0.1:${port}`, "--data", dir]);
  assertOneSentence(out, new RegExp(`cannot listen on 127.0.0.1:${port}: .*in use`), 1);
});

Deno.test("a certificate that cannot serve TLS: one sentence, non-zero exit", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir}/cert.pem`, "not a certificate\n");
  const out = await od([
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data",
    dir,
    "--tls-cert",
    `${dir}/cert.pem`,
    "--tls-key",
    `${dir}/cert.pem`,
  ]);
  assertOneSentence(out, /cannot start TLS: .*certificate/, 1);
});
