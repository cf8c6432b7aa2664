/**
 * Frame generators for the fuzz test: well-formed frames for streams that were never opened,
 * well-formed headers with payloads of the wrong size, unknown types, bit-flipped and truncated
 * copies of valid frames, random bytes, and OPEN floods.
 */
import {
  CLIENT_STREAM,
  dataFrame,
  encodeControl,
  encodeCredit,
  encodeEof,
  encodeOpen,
  encodePing,
  encodeReset,
  FrameType,
  HEADER_SIZE,
} from "../src/protocol/frame.ts";
import { randomBytes } from "./_harness.ts";

const rand = (n: number) => Math.floor(Math.random() * n);
const pick = <T>(items: T[]): T => items[rand(items.length)];

/** A valid frame that never breaks the protocol on a link whose streams are `streams`. */
export function benignFrame(stream: () => number): Uint8Array {
  switch (rand(5)) {
    case 0: {
      const f = dataFrame(stream(), 1 + rand(256));
      f.set(randomBytes(f.length - HEADER_SIZE), HEADER_SIZE);
      return f;
    }
    case 1:
      return encodeCredit(stream(), 1 + rand(65536));
    case 2:
      return encodeEof(stream());
    case 3:
      return encodeReset(stream(), rand(8), "fuzz");
    default:
      return encodePing(FrameType.PING, randomBytes(8));
  }
}

/** A frame the relay must refuse (and close the link for). */
export function hostileFrame(): Uint8Array {
  const stream = 1 + rand(1_000_000);
  const header = (type: number, payload: number) => {
    const f = new Uint8Array(HEADER_SIZE + payload);
    f[0] = type;
    new DataView(f.buffer).setUint32(1, stream);
    f.set(randomBytes(payload), HEADER_SIZE);
    return f;
  };
  switch (rand(8)) {
    case 0: // valid header, bad length
      return header(
        pick([FrameType.CREDIT, FrameType.PING, FrameType.PONG]),
        pick([0, 3, 7, 9, 100]),
      );
    case 1:
      return header(FrameType.OPENED, 1 + rand(50));
    case 2: // unknown types
      return header(pick([0, 0x0a, 0x20, 0x7f, 0xff]), rand(64));
    case 3: // bit flips of a valid frame
      return flip(
        pick([encodeCredit(stream, 1000), encodeEof(stream), encodeControl({ t: "info" })]),
      );
    case 4: // truncated
      return encodeCredit(stream, 5).subarray(0, rand(HEADER_SIZE));
    case 5: // floods of opens, which only the relay may send
      return encodeOpen(stream, "ssh", "fuzz");
    case 6: // CONTROL that is not JSON
      return header(FrameType.CONTROL, 1 + rand(100)).map((b, i) => (i < 5 ? b : b | 0x80));
    default: { // random bytes behind a type byte no version knows (a random one is valid 1 in 26)
      const f = randomBytes(1 + rand(200));
      f[0] = 0xee;
      return f;
    }
  }
}

function flip(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  for (let i = 0; i < 1 + rand(3); i++) f[rand(f.length)] ^= 1 << rand(8);
  // Keep it hostile: a flip that happens to yield a benign frame is made unknown-typed.
  if (f[0] >= FrameType.DATA && f[0] <= FrameType.PONG) f[0] = 0x66;
  return f;
}

/** DATA on the client link's stream, within any window if kept under 1 MiB per link. */
export function clientData(size = 256): Uint8Array {
  const f = dataFrame(CLIENT_STREAM, size);
  f.set(randomBytes(size), HEADER_SIZE);
  return f;
}

/** A PING, which the relay answers on any link. */
export function pingFrame(): Uint8Array {
  return encodePing(FrameType.PING, randomBytes(8));
}
