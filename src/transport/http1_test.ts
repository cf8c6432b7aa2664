import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  ChunkedDecoder,
  headEnd,
  HttpParseError,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
} from "./http1.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (parts: Uint8Array[]) =>
  new TextDecoder().decode(new Uint8Array(parts.flatMap((p) => [...p])));

function refuses(status: number, head: string, re: RegExp) {
  throws(() => parseRequestHead(enc(head)), (err: unknown) => {
    ok(err instanceof HttpParseError, String(err));
    assertEquals(err.status, status, err.message);
    ok(re.test(err.message), err.message);
    return true;
  });
}

Deno.test("headEnd() finds the blank line, also across a partial buffer", () => {
  assertEquals(headEnd(enc("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest")), 27);
  assertEquals(headEnd(enc("GET / HTTP/1.1\r\nHost: a\r\n")), -1);
  assertEquals(headEnd(enc("\r\n\r\n")), 4);
});

Deno.test("parseRequestHead() reads method, target, version and fields", () => {
  const head = parseRequestHead(
    enc("PATCH /v1/devices/pi/props?x=1 HTTP/1.1\r\nHost: relay:8080\r\nX-A:  b c \r\n\r\n"),
  );
  assertEquals(head.method, "PATCH");
  assertEquals(head.target, "/v1/devices/pi/props?x=1");
  assertEquals(head.version, "1.1");
  assertEquals(head.headers.get("x-a"), "b c");
  assertEquals(parseRequestHead(enc("GET / HTTP/1.0\r\n\r\n")).version, "1.0"); // no Host needed
});

Deno.test("parseRequestHead() refuses malformed and smuggling-shaped heads", () => {
  const table: [number, string, RegExp][] = [
    [400, "GET /\r\n\r\n", /request line/],
    [400, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", /request line/],
    [505, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", /HTTP\/2.0/],
    [400, "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", /must be a path/],
    [400, "GET / HTTP/1.1\r\n\r\n", /needs a Host/],
    [400, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /more than one Host/],
    [400, "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /folded/],
    [400, "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", /malformed header/],
    [400, "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", /malformed header/],
    [400, "GET / HTTP/1.1\nHost: a\r\n\r\n", /bare CR or LF/],
    [
      400,
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      /both Content-Length and Transfer-Encoding/,
    ],
    [501, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", /not supported/],
    [400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", /Content-Length/],
    [400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", /Content-Length/],
    [431, `GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(101)}\r\n`, /more than 100/],
  ];
  for (const [status, head, re] of table) refuses(status, head, re);
});

Deno.test("requestFraming() and parseResponseHead()", () => {
  const h = (s: string) => parseRequestHead(enc(`POST / HTTP/1.1\r\nHost: a\r\n${s}\r\n`)).headers;
  assertEquals(requestFraming(h("")), { kind: "none" });
  assertEquals(requestFraming(h("Content-Length: 0\r\n")), { kind: "none" });
  assertEquals(requestFraming(h("Content-Length: 12\r\n")), { kind: "length", length: 12 });
  assertEquals(requestFraming(h("Transfer-Encoding: chunked\r\n")), { kind: "chunked" });
  const res = parseResponseHead(enc("HTTP/1.1 407 Proxy Authentication Required\r\nA: b\r\n\r\n"));
  assertEquals([res.status, res.reason, res.headers.get("a")], [
    407,
    "Proxy Authentication Required",
    "b",
  ]);
  throws(() => parseResponseHead(enc("SSH-2.0-OpenSSH\r\n\r\n")), /not an HTTP\/1.x status line/);
});

Deno.test("ChunkedDecoder decodes across any split, keeps what follows, refuses garbage", () => {
  const body =
    "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  const bytes = enc(body);
  for (let split = 0; split <= bytes.length; split++) {
    const d = new ChunkedDecoder();
    const parts = [...d.push(bytes.subarray(0, split))];
    if (!d.done) parts.push(...d.push(bytes.subarray(split)));
    assertEquals(dec(parts), "Wikipedia in\r\n\r\nchunks.");
    ok(d.done);
  }
  const d = new ChunkedDecoder();
  d.push(bytes);
  assertEquals(new TextDecoder().decode(d.rest), "NEXT");
  throws(() => new ChunkedDecoder().push(enc("zz\r\n")), /malformed chunk size/);
  throws(() => new ChunkedDecoder().push(enc("2\r\nabc\r\n")), /longer than its size/);
  throws(() => new ChunkedDecoder().push(enc("1".repeat(100))), /too long/);
});
