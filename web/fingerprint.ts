/**
 * SSH host key fingerprints as `ssh-keygen -l` prints them for a public key line:
 * `256 SHA256:… no comment (ED25519)`. The SHA-256 is computed here rather than with Web
 * Crypto, which browsers offer only on secure contexts (a relay reached over plain HTTP on a
 * LAN is not one).
 */

const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

/** SHA-256 of `data` (FIPS 180-4). */
export function sha256(data: Uint8Array): Uint8Array {
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(data.length / 0x20000000)); // bits, high word
  view.setUint32(padded.length - 4, data.length * 8); // bits, low word (wraps as it should)
  const hash = new Uint32Array([
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = hash;
    for (let i = 0; i < 64; i++) {
      const t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      [hh, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    const next = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) hash[i] = (hash[i] + next[i]) >>> 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, hash[i]);
  return out;
}

/** Reads the SSH wire strings (uint32 length, bytes) of a key blob; stops at the first bad one. */
function strings(blob: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  for (let off = 0; off + 4 <= blob.length;) {
    const n = view.getUint32(off);
    if (off + 4 + n > blob.length) break;
    out.push(blob.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}

/** Bit length of an SSH mpint (big-endian, maybe with a leading zero byte). */
function mpintBits(n: Uint8Array | undefined): number {
  if (!n) return 0;
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  if (i === n.length) return 0;
  return (n.length - i - 1) * 8 + (32 - Math.clz32(n[i]));
}

const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : "");

/** ssh-keygen's bits and type label for a key blob. */
function sizeAndType(type: string, blob: Uint8Array): [number, string] {
  const parts = strings(blob);
  if (type === "ssh-ed25519") return [256, "ED25519"];
  if (type === "sk-ssh-ed25519@openssh.com") return [256, "ED25519-SK"];
  if (type === "ssh-rsa") return [mpintBits(parts[2]), "RSA"];
  if (type === "ssh-dss") return [mpintBits(parts[1]), "DSA"];
  const curve = text(parts[1]); // nistp256, nistp384, nistp521
  const bits = Number(curve.replace("nistp", "")) || 0;
  if (type.startsWith("sk-ecdsa-")) return [bits, "ECDSA-SK"];
  if (type.startsWith("ecdsa-")) return [bits, "ECDSA"];
  return [0, type.toUpperCase()];
}

function decodeBase64(b64: string): Uint8Array | null {
  try {
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** The `ssh-keygen -l` line of a public key `type base64 [comment]`, or null if malformed. */
export function fingerprintLine(publicKey: string): string | null {
  const [type, b64, ...comment] = publicKey.trim().split(/\s+/);
  const blob = b64 ? decodeBase64(b64) : null;
  if (!type || !blob || text(strings(blob)[0]) !== type) return null;
  const digest = btoa(String.fromCharCode(...sha256(blob))).replace(/=+$/, "");
  const [bits, label] = sizeAndType(type, blob);
  return `${bits} SHA256:${digest} ${comment.join(" ") || "no comment"} (${label})`;
}
