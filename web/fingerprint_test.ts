import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { fingerprintLine, sha256 } from "./fingerprint.ts";

Deno.test("sha256() matches Web Crypto at every padding boundary", async () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70_000]) {
    const data = new Uint8Array(n).map((_, i) => (i * 31 + n) & 255);
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    assertEquals(sha256(data), expected, `length ${n}`);
  }
});

Deno.test("fingerprintLine() prints what ssh-keygen -l prints for each key type", async () => {
  const dir = await Deno.makeTempDir({ prefix: "od-fp-" });
  try {
    const kinds: [string, string[]][] = [
      ["ed25519", []],
      ["rsa", ["-b", "3072"]],
      ["ecdsa", ["-b", "384"]],
      ["ecdsa", ["-b", "521"]],
    ];
    for (const [i, [type, extra]] of kinds.entries()) {
      const file = `${dir}/k${i}`;
      const gen = await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", type, ...extra, "-N", "", "-C", "", "-f", file],
      }).output();
      assertEquals(gen.code, 0);
      // The relay keeps `type base64` without the comment, as the daemon reports it.
      const [t, b64] = (await Deno.readTextFile(`${file}.pub`)).trim().split(/\s+/);
      await Deno.writeTextFile(`${file}.line`, `${t} ${b64}\n`);
      const out = await new Deno.Command("ssh-keygen", { args: ["-l", "-f", `${file}.line`] })
        .output();
      const expected = new TextDecoder().decode(out.stdout).trim();
      assertEquals(fingerprintLine(`${t} ${b64}`), expected);
      assertEquals(
        fingerprintLine(`${t} ${b64} root@pi`),
        expected.replace("no comment", "root@pi"),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fingerprintLine() refuses lines that are not keys", () => {
  for (
    const bad of ["", "ssh-ed25519", "ssh-ed25519 !!!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA=="]
  ) {
    assertEquals(fingerprintLine(bad), null, bad);
  }
});
