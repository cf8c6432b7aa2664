import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { bypassed, parseIp, proxyFor, redactProxy } from "./proxy.ts";

Deno.test("bypassed() reads NO_PROXY like curl: names, suffixes, addresses, CIDRs, ports, *", () => {
  const cases: [string, string, number, boolean][] = [
    ["*", "relay.example.com", 443, true],
    ["example.com", "example.com", 443, true],
    ["example.com", "relay.example.com", 443, true],
    ["example.com", "notexample.com", 443, false],
    [".example.com", "relay.example.com", 443, true],
    ["*.example.com", "relay.example.com", 443, true],
    ["relay.example.com:8443", "relay.example.com", 443, false],
    ["relay.example.com:443", "relay.example.com", 443, true],
    ["10.0.0.0/8", "10.1.2.3", 443, true],
    ["10.0.0.0/8", "11.1.2.3", 443, false],
    ["192.168.1.0/24", "192.168.1.77", 80, true],
    ["192.168.1.0/24", "192.168.2.77", 80, false],
    ["10.0.0.0/8", "ten.example.com", 443, false], // names are not resolved to match a range
    ["192.0.2.7", "192.0.2.7", 443, true],
    ["192.0.2.7", "192.0.2.8", 443, false],
    ["::1", "[::1]", 443, true],
    ["[::1]:443", "[::1]", 443, true],
    ["fd00::/8", "[fd12:3456::1]", 443, true],
    ["fd00::/8", "[fe80::1]", 443, false],
    ["0.0.0.0/0", "203.0.113.5", 443, true],
    [" foo.test , example.com ", "a.example.com", 443, true],
    ["", "example.com", 443, false],
  ];
  for (const [list, host, port, want] of cases) {
    assertEquals(bypassed(host, port, list), want, `${list} vs ${host}:${port}`);
  }
});

Deno.test("parseIp() reads IPv4, IPv6 with :: and embedded IPv4, and refuses the rest", () => {
  assertEquals([...parseIp("192.0.2.1")!], [192, 0, 2, 1]);
  assertEquals(parseIp("256.0.0.1"), null);
  assertEquals(parseIp("::1")![15], 1);
  assertEquals([...parseIp("::ffff:192.0.2.1")!.subarray(10)], [255, 255, 192, 0, 2, 1]);
  assertEquals(parseIp("1:2:3:4:5:6:7:8:9"), null);
  assertEquals(parseIp("example.com"), null);
});

Deno.test("proxyFor() follows curl: HTTPS_PROXY for https, HTTP_PROXY for http, explicit wins", () => {
  const saved = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"]
    .map((k) => [k, Deno.env.get(k)] as const);
  try {
    for (const [k] of saved) Deno.env.delete(k);
    Deno.env.set("HTTPS_PROXY", "http://secure.proxy:3128");
    Deno.env.set("http_proxy", "plain.proxy:8080");
    assertEquals(proxyFor(new URL("https://relay.test"))?.host, "secure.proxy:3128");
    assertEquals(proxyFor(new URL("wss://relay.test"))?.host, "secure.proxy:3128");
    assertEquals(proxyFor(new URL("http://relay.test"))?.host, "plain.proxy:8080");
    assertEquals(
      proxyFor(new URL("https://relay.test"), "http://cli.proxy:1")?.host,
      "cli.proxy:1",
    );
    assertEquals(proxyFor(new URL("https://relay.test"), "none"), null);
    Deno.env.set("NO_PROXY", "relay.test");
    assertEquals(proxyFor(new URL("https://relay.test")), null);
    assertEquals(proxyFor(new URL("https://relay.test"), "http://cli.proxy:1"), null);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
});

Deno.test("redactProxy() keeps the user and never the password", () => {
  assertEquals(
    redactProxy(new URL("http://corp:s%40cret@proxy.test:3128")),
    "http://corp:***@proxy.test:3128",
  );
  assertEquals(redactProxy(new URL("http://proxy.test")), "http://proxy.test:80");
});
