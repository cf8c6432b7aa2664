/**
 * Proofs that a mesh peer holds the mesh key (src/protocol/mesh.ts says what is proved over):
 * HMAC-SHA256 under the key, compared in constant time, with each dial's nonce accepted once
 * within the clock window so a recorded handshake cannot be replayed.
 */
import { answerText, dialText, MAX_SKEW_MS, type MeshDial, MeshHeader } from "../protocol/mesh.ts";

const encoder = new TextEncoder();
const MAX_NONCES = 100_000; // dials remembered within the window; far above any real mesh

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The mesh key of this relay, and what it proves and checks with it. */
export class MeshKey {
  #key: Promise<CryptoKey>;
  #nonces = new Map<string, number>(); // nonce → when it may be forgotten

  constructor(secret: string) {
    this.#key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
  }

  async #sign(text: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(text));
    return base64url(new Uint8Array(mac));
  }

  /** The headers of a dial from relay `from` to relay `to`, and the nonce the answer binds. */
  async dialHeaders(from: string, to: string): Promise<{
    headers: Record<string, string>;
    nonce: string;
  }> {
    const time = Date.now();
    const nonce = Array.from(
      crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    return {
      nonce,
      headers: {
        [MeshHeader.RELAY]: from,
        [MeshHeader.PEER]: to,
        [MeshHeader.TIME]: String(time),
        [MeshHeader.NONCE]: nonce,
        [MeshHeader.PROOF]: await this.#sign(dialText(from, to, time, nonce)),
      },
    };
  }

  /** Checks a dial meant for relay `self`: null if it proves the key, else why not. */
  async checkDial(dial: MeshDial, self: string): Promise<string | null> {
    if (dial.peer !== self) return `this is relay ${self}, not ${dial.peer}`;
    const now = Date.now();
    if (Math.abs(now - dial.time) > MAX_SKEW_MS) {
      return "the mesh handshake's time is more than 5 minutes off this relay's clock";
    }
    const expected = await this.#sign(dialText(dial.relay, dial.peer, dial.time, dial.nonce));
    if (!sameText(expected, dial.proof)) return "the mesh key does not match this relay's";
    if (this.#nonces.has(dial.nonce)) return "the mesh handshake was replayed";
    if (this.#nonces.size >= MAX_NONCES) {
      for (const [n, until] of this.#nonces) if (until < now) this.#nonces.delete(n);
      if (this.#nonces.size >= MAX_NONCES) return "too many mesh handshakes; try again later";
    }
    this.#nonces.set(dial.nonce, dial.time + 2 * MAX_SKEW_MS);
    return null;
  }

  /** The acceptor's proof for a dial from `dialer` with `nonce`. */
  answer(self: string, dialer: string, nonce: string): Promise<string> {
    return this.#sign(answerText(self, dialer, nonce));
  }

  /** True if `proof` is relay `peer`'s answer to our dial with `nonce`. */
  async checkAnswer(peer: string, self: string, nonce: string, proof: string): Promise<boolean> {
    return sameText(await this.#sign(answerText(peer, self, nonce)), proof);
  }
}
