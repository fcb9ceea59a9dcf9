// prom: exact exposition text, escaping, special values, rejection of bad names, and the
// registry; every output is also checked line by line against the 0.0.4 text grammar.

import assert from "node:assert/strict";
import { formatMetrics, formatValue, PROM_CONTENT_TYPE, Registry } from "../../daemon/prom.ts";

// One line of the text format: comment (HELP/TYPE) or sample with optional labels.
const LINE = new RegExp(
  "^(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*" +
    "|# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)" +
    '|[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*="(\\\\[\\\\"n]|[^\\\\"\\n])*"' +
    '(,[a-zA-Z_][a-zA-Z0-9_]*="(\\\\[\\\\"n]|[^\\\\"\\n])*")*\\})? ' +
    "(NaN|[+-]Inf|-?\\d+(\\.\\d+)?(e[+-]?\\d+)?))$",
);

function assertGrammar(text: string): void {
  assert.ok(text === "" || text.endsWith("\n"));
  for (const l of text.split("\n").slice(0, -1)) assert.match(l, LINE);
}

Deno.test("prom: counters and gauges with labels", () => {
  const text = formatMetrics([
    {
      name: "slirpd_packets_total",
      help: "Frames seen on the guest link.",
      type: "counter",
      samples: [
        { labels: { dir: "rx" }, value: 1027 },
        { labels: { dir: "tx" }, value: 998 },
      ],
    },
    {
      name: "slirpd_flows",
      help: "Open flows.",
      type: "gauge",
      samples: [{ labels: { proto: "tcp", kind: "local-fwd" }, value: 3 }, { value: 0.5 }],
    },
  ]);
  assert.equal(
    text,
    [
      "# HELP slirpd_packets_total Frames seen on the guest link.",
      "# TYPE slirpd_packets_total counter",
      'slirpd_packets_total{dir="rx"} 1027',
      'slirpd_packets_total{dir="tx"} 998',
      "# HELP slirpd_flows Open flows.",
      "# TYPE slirpd_flows gauge",
      'slirpd_flows{proto="tcp",kind="local-fwd"} 3',
      "slirpd_flows 0.5",
      "",
    ].join("\n"),
  );
  assertGrammar(text);
  assert.equal(PROM_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("prom: escaping in HELP and label values", () => {
  const text = formatMetrics([{
    name: "x",
    help: 'back\\slash "quotes" stay\nnewline',
    type: "gauge",
    samples: [{ labels: { path: 'C:\\tmp\\"a"\nb' }, value: 1 }],
  }]);
  assert.equal(
    text,
    '# HELP x back\\\\slash "quotes" stay\\nnewline\n# TYPE x gauge\nx{path="C:\\\\tmp\\\\\\"a\\"\\nb"} 1\n',
  );
  assertGrammar(text);
});

Deno.test("prom: special and large values", () => {
  assert.deepEqual(
    [NaN, Infinity, -Infinity, 0, -0, 42, -3.25, 1e21, 2 ** 53].map(formatValue),
    ["NaN", "+Inf", "-Inf", "0", "-0", "42", "-3.25", "1e+21", "9007199254740992"],
  );
  assertGrammar(formatMetrics([{
    name: "g",
    help: "",
    type: "gauge",
    samples: [NaN, Infinity, -Infinity, 1e21, 1e-7].map((value) => ({ value })),
  }]));
  assert.equal(formatMetrics([]), "");
});

Deno.test("prom: bad names and values throw", () => {
  const fam = (name: string, labels?: Record<string, string>, value = 1) => [{
    name,
    help: "h",
    type: "counter" as const,
    samples: [{ labels, value }],
  }];
  assert.throws(() => formatMetrics(fam("1abc")), /bad metric name/);
  assert.throws(() => formatMetrics(fam("a-b")), /bad metric name/);
  assert.throws(() => formatMetrics(fam("ok", { "bad-label": "v" })), /bad label name/);
  assert.throws(() => formatMetrics(fam("ok", { __reserved: "v" })), /bad label name/);
  assert.throws(() => formatMetrics(fam("ok", undefined, -1)), /counter ok has value -1/);
  assert.throws(() => formatMetrics(fam("ok", undefined, NaN)), /counter/);
  assert.throws(() => formatMetrics([...fam("dup"), ...fam("dup")]), /duplicate/);
  assert.doesNotThrow(() => formatMetrics(fam("ns:sub_total")));
});

Deno.test("prom: registry keeps one series per label set, in registration order", () => {
  const r = new Registry();
  const rx = r.counter("slirpd_bytes_total", "Bytes.");
  const open = r.gauge("slirpd_open_fds", "Open fds.");
  rx.inc({ dir: "rx", proto: "udp" }, 100);
  rx.inc({ proto: "udp", dir: "rx" }, 28); // same series, other key order
  rx.inc({ dir: "tx", proto: "udp" });
  open.set(undefined, 17);
  open.inc(undefined, -2);
  // A second handle to the same family adds to the same series.
  r.counter("slirpd_bytes_total", "ignored").inc({ dir: "tx", proto: "udp" }, 0);
  const text = r.render();
  assert.equal(
    text,
    [
      "# HELP slirpd_bytes_total Bytes.",
      "# TYPE slirpd_bytes_total counter",
      'slirpd_bytes_total{dir="rx",proto="udp"} 128',
      'slirpd_bytes_total{dir="tx",proto="udp"} 1',
      "# HELP slirpd_open_fds Open fds.",
      "# TYPE slirpd_open_fds gauge",
      "slirpd_open_fds 15",
      "",
    ].join("\n"),
  );
  assertGrammar(text);
  assert.throws(() => rx.inc(undefined, -1), /counter step/);
  assert.throws(() => rx.set(undefined, 3), /set\(\) on a counter/);
  assert.throws(() => r.gauge("slirpd_bytes_total", ""), /already a counter/);
});
