import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { Counter, formatValue, Gauge, Histogram, Registry } from "./metrics.ts";

Deno.test("Registry.render() prints HELP, TYPE and samples in the 0.0.4 text format", () => {
  const r = new Registry();
  const c = r.add(
    new Counter("od_x_total", "Things.\nDone \\ here.", {
      name: "result",
      values: ["ok", 'b"ad'],
    }),
  );
  const g = r.add(new Gauge("od_g", "A gauge."));
  r.add(new Gauge("od_live", "Read at scrape time.", () => 7));
  c.inc("ok");
  c.inc("ok", 2);
  g.set(-1.5);
  assertEquals(
    r.render(),
    [
      "# HELP od_x_total Things.\\nDone \\\\ here.",
      "# TYPE od_x_total counter",
      'od_x_total{result="ok"} 3',
      'od_x_total{result="b\\"ad"} 0',
      "# HELP od_g A gauge.",
      "# TYPE od_g gauge",
      "od_g -1.5",
      "# HELP od_live Read at scrape time.",
      "# TYPE od_live gauge",
      "od_live 7",
      "",
    ].join("\n"),
  );
});

Deno.test("Histogram buckets are cumulative and end with +Inf, _sum and _count", () => {
  const r = new Registry();
  const h = r.add(new Histogram("od_h_seconds", "Latency.", [0.1, 1]));
  for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v);
  assertEquals(r.render().split("\n").slice(2), [
    'od_h_seconds_bucket{le="0.1"} 2',
    'od_h_seconds_bucket{le="1"} 3',
    'od_h_seconds_bucket{le="+Inf"} 4',
    "od_h_seconds_sum 3.65",
    "od_h_seconds_count 4",
    "",
  ]);
});

Deno.test("labels are a fixed set: an undeclared value throws instead of adding a series", () => {
  const c = new Counter("od_c_total", "C.", { name: "reason", values: ["a"] });
  throws(() => c.inc("device-42"), /undeclared label/);
});

Deno.test("Registry refuses duplicate and invalid names", () => {
  const r = new Registry();
  r.add(new Gauge("od_a", "A."));
  throws(() => r.add(new Gauge("od_a", "A again.")), /twice/);
  throws(() => r.add(new Gauge("od-bad", "Bad.")), /invalid metric name/);
  throws(() => new Histogram("od_h", "H.", [1, 1]), /increase/);
});

Deno.test("formatValue() spells infinities and NaN as Prometheus does", () => {
  assertEquals([Infinity, -Infinity, NaN, 0.25].map(formatValue), ["+Inf", "-Inf", "NaN", "0.25"]);
});
