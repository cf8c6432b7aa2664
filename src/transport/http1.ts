/**
 * HTTP/1.1 message heads and chunked bodies as pure functions (RFC 9112): what the relay's own
 * server reads from clients and what od's WebSocket client and CONNECT code read from relays and
 * proxies. Everything a peer sends is bounded: the caller stops reading a head at MAX_HEAD bytes,
 * and parsing refuses more than MAX_HEADERS fields, bare line feeds in the start line, folded
 * lines, and a Content-Length next to Transfer-Encoding (the request-smuggling shape).
 */

/** Largest message head (start line and fields) read from a peer. */
export const MAX_HEAD = 16 * 1024;
/** Most header fields in one head. */
export const MAX_HEADERS = 100;

/** A head that cannot be accepted; `status` is the HTTP answer a server gives it. */
export class HttpParseError extends Error {
  override name = "HttpParseError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The request target as sent: `/path?query` (origin form) or `*`. */
  target: string;
  version: "1.0" | "1.1";
  headers: Headers;
}

/** A parsed response head. */
export interface ResponseHead {
  status: number;
  reason: string;
  version: "1.0" | "1.1";
  headers: Headers;
}

/** Index just past the blank line ending a head that starts at `from`, or -1. */
export function headEnd(buf: Uint8Array, from = 0): number {
  for (let i = Math.max(from, 3); i < buf.length; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Bytes to a string of the same octets (ISO-8859-1), which is what Headers accepts. */
function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

function parseFields(lines: string[], status: number): Headers {
  if (lines.length > MAX_HEADERS) {
    throw new HttpParseError(431, `more than ${MAX_HEADERS} header fields`);
  }
  const headers = new Headers();
  for (const line of lines) {
    if (line.startsWith(" ") || line.startsWith("\t")) {
      throw new HttpParseError(status, "folded header lines are not accepted");
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new HttpParseError(status, `malformed header line "${line.slice(0, 40)}"`);
    }
    headers.append(name, value);
  }
  return headers;
}

function splitHead(head: Uint8Array, status: number): [string, string[]] {
  const text = latin1(head).replace(/\r\n\r\n$/, "");
  const lines = text.split("\r\n");
  if (lines.some((l) => l.includes("\n") || l.includes("\r"))) {
    throw new HttpParseError(status, "bare CR or LF in the message head");
  }
  return [lines[0], lines.slice(1)];
}

/** Parses a request head (including its final blank line). */
export function parseRequestHead(head: Uint8Array): RequestHead {
  const [start, fields] = splitHead(head, 400);
  const m = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(start);
  if (!m || !TOKEN.test(m[1])) throw new HttpParseError(400, "malformed request line");
  const version = `${m[3]}.${m[4]}`;
  if (version !== "1.1" && version !== "1.0") {
    throw new HttpParseError(505, `HTTP/${version} is not supported`);
  }
  const target = m[2];
  if (!(target.startsWith("/") || (target === "*" && m[1] === "OPTIONS"))) {
    throw new HttpParseError(400, "the request target must be a path");
  }
  if (!/^[\x21-\x7e]+$/.test(target)) throw new HttpParseError(400, "malformed request target");
  const headers = parseFields(fields, 400);
  checkFraming(headers);
  if (version === "1.1" && headers.get("host") === null) {
    throw new HttpParseError(400, "an HTTP/1.1 request needs a Host header");
  }
  if ((headers.get("host") ?? "").includes(",")) {
    throw new HttpParseError(400, "more than one Host header");
  }
  return { method: m[1], target, version, headers };
}

/** Parses a response head (including its final blank line). */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  const [start, fields] = splitHead(head, 502);
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(start);
  if (!m) throw new HttpParseError(502, "the answer is not an HTTP/1.x status line");
  return {
    status: Number(m[2]),
    reason: m[3] ?? "",
    version: m[1] === "1" ? "1.1" : "1.0",
    headers: parseFields(fields, 502),
  };
}

/** How a request body is framed. */
export type Framing = { kind: "none" } | { kind: "length"; length: number } | {
  kind: "chunked";
};

function checkFraming(headers: Headers): void {
  const te = headers.get("transfer-encoding");
  const cl = headers.get("content-length");
  if (te !== null && cl !== null) {
    throw new HttpParseError(400, "both Content-Length and Transfer-Encoding were sent");
  }
  if (te !== null && te.trim().toLowerCase() !== "chunked") {
    throw new HttpParseError(501, `transfer coding "${te.slice(0, 40)}" is not supported`);
  }
  if (cl !== null && !/^\d{1,15}$/.test(cl.trim())) {
    throw new HttpParseError(400, "malformed Content-Length");
  }
}

/** The body framing of a parsed request. */
export function requestFraming(headers: Headers): Framing {
  if (headers.get("transfer-encoding") !== null) return { kind: "chunked" };
  const cl = headers.get("content-length");
  if (cl === null || Number(cl) === 0) return { kind: "none" };
  return { kind: "length", length: Number(cl) };
}

const encoder = new TextEncoder();

/** Serializes a response head. Header values must not contain CR or LF (Headers ensures it). */
export function responseHead(status: number, reason: string, headers: Headers): Uint8Array {
  let text = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
  return encoder.encode(text + "\r\n");
}

/** Standard reason phrases for the statuses od answers with. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "Status";
}

const REASONS: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const MAX_CHUNK_LINE = 64; // a size in hex plus any chunk extension a sane client sends

/**
 * Decodes a chunked body incrementally. `push` takes the next bytes and returns the body bytes
 * they complete; once `done`, `rest` holds whatever followed the body (the next request).
 */
export class ChunkedDecoder {
  done = false;
  rest: Uint8Array = new Uint8Array(0);
  #state: "size" | "data" | "data-end" | "trailer" = "size";
  #left = 0;
  #line = "";

  /** Feeds bytes; returns body data found in them. Throws HttpParseError when malformed. */
  push(input: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    while (i < input.length && !this.done) {
      if (this.#state === "data") {
        const n = Math.min(this.#left, input.length - i);
        out.push(input.subarray(i, i + n));
        i += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = "data-end";
        continue;
      }
      const b = input[i++];
      if (b !== 10) {
        this.#line += String.fromCharCode(b);
        if (this.#line.length > MAX_CHUNK_LINE) {
          throw new HttpParseError(400, "a chunk line is too long");
        }
        continue;
      }
      const line = this.#line.replace(/\r$/, "");
      this.#line = "";
      this.#onLine(line);
    }
    if (this.done) this.rest = input.slice(i);
    return out;
  }

  #onLine(line: string): void {
    if (this.#state === "data-end") {
      if (line !== "") throw new HttpParseError(400, "a chunk is longer than its size");
      this.#state = "size";
    } else if (this.#state === "size") {
      const m = /^([0-9a-fA-F]{1,8})(;.*)?$/.exec(line);
      if (!m) throw new HttpParseError(400, "malformed chunk size");
      this.#left = parseInt(m[1], 16);
      this.#state = this.#left === 0 ? "trailer" : "data";
    } else if (line === "") this.done = true; // end of trailers
  }
}
