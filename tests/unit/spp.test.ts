// SPP header: byte layout against slirpnetstack's own test vector, malformed inputs,
// address text both ways, and the per-flow strip/prefix rules of -L udpspp.

import assert from "node:assert/strict";
import {
  encodeSpp,
  formatIp16,
  parseIp16,
  SPP_HEADER_LEN,
  SPP_MAGIC,
  SppFlow,
  SppView,
} from "../../stack/forwards/spp.ts";

// tests/test_basic.py test_udp_spp_local_fwd packs ("!HIIIIIIIIHH", 0x56ec,
// 0,0,0xffff,0x01020304, 0,0,0xffff,0x04030201, 1,2): client 1.2.3.4:1, proxy 4.3.2.1:2.
const UPSTREAM_VECTOR = Uint8Array.from([
  0x56,
  0xec,
  ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4],
  ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 4, 3, 2, 1],
  0,
  1,
  0,
  2,
]);

Deno.test("spp: encode matches the upstream test vector byte for byte", () => {
  const b = new Uint8Array(40).fill(0xaa);
  const n = encodeSpp(b, 1, { ip: "1.2.3.4", port: 1 }, { ip: "4.3.2.1", port: 2 });
  assert.equal(n, SPP_HEADER_LEN);
  assert.equal(SPP_MAGIC, 0x56ec);
  assert.deepEqual(b.subarray(1, 39), UPSTREAM_VECTOR);
  assert.equal(b[0], 0xaa); // nothing written outside [o, o+38)
  assert.equal(b[39], 0xaa);
});

Deno.test("spp: parse reads addresses, ports and payload offset", () => {
  const d = new Uint8Array(3 + 38 + 9);
  d.set(UPSTREAM_VECTOR, 3);
  d.set(new TextEncoder().encode("alamakota"), 41);
  const v = new SppView();
  assert.ok(v.parse(d, 3, d.length - 3));
  assert.equal(v.reason, "");
  assert.equal(v.clientAddr(), "1.2.3.4");
  assert.equal(v.proxyAddr(), "4.3.2.1");
  assert.equal(v.clientPort, 1);
  assert.equal(v.proxyPort, 2);
  assert.ok(v.clientIsV4 && v.proxyIsV4);
  assert.equal(v.payloadOffset, 41);
  assert.equal(new TextDecoder().decode(d.subarray(v.payloadOffset)), "alamakota");
});

Deno.test("spp: IPv6 endpoints and high ports", () => {
  const b = new Uint8Array(38);
  encodeSpp(b, 0, { ip: "2001:db8::1", port: 65535 }, { ip: "::1", port: 443 });
  const v = new SppView();
  assert.ok(v.parse(b, 0, 38)); // a header with no payload is still a header
  assert.equal(v.clientAddr(), "2001:db8::1");
  assert.equal(v.proxyAddr(), "::1");
  assert.equal(v.clientPort, 65535);
  assert.equal(v.proxyPort, 443);
  assert.equal(v.clientIsV4, false);
});

Deno.test("spp: malformed datagrams return false with a reason", () => {
  const v = new SppView();
  assert.equal(v.parse(UPSTREAM_VECTOR, 0, 37), false);
  assert.match(v.reason, /37 bytes is shorter than the 38-byte header/);
  const bad = UPSTREAM_VECTOR.slice();
  bad[1] = 0xed;
  assert.equal(v.parse(bad, 0, 38), false);
  assert.equal(v.reason, "spp: bad magic 0x56ed");
  assert.equal(v.parse(new Uint8Array(38), 0, 38), false);
  assert.equal(v.reason, "spp: bad magic 0x0000");
  assert.equal(v.parse(UPSTREAM_VECTOR, 10, 38), false);
  assert.match(v.reason, /out of buffer bounds/);
  // A good parse clears the previous reason.
  assert.ok(v.parse(UPSTREAM_VECTOR, 0, 38));
  assert.equal(v.reason, "");
});

Deno.test("spp: encode rejects bad input", () => {
  const b = new Uint8Array(38);
  const ok = { ip: "1.2.3.4", port: 1 };
  assert.throws(() => encodeSpp(b, 1, ok, ok), RangeError);
  assert.throws(() => encodeSpp(b, 0, { ip: "1.2.3", port: 1 }, ok), RangeError);
  assert.throws(() => encodeSpp(b, 0, ok, { ip: "fe80::1%eth0", port: 1 }), RangeError);
  assert.throws(() => encodeSpp(b, 0, ok, { ip: "1.2.3.4", port: 65536 }), RangeError);
  assert.throws(() => encodeSpp(b, 0, { ip: "1.2.3.4", port: -1 }, ok), RangeError);
});

Deno.test("spp: address text round trips (RFC 5952 output)", () => {
  const cases: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first longest run wins
    ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group stays
    ["fd00::100", "fd00::100"],
    ["::ffff:10.0.2.100", "10.0.2.100"],
    ["64:ff9b::1.2.3.4", "64:ff9b::102:304"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["255.255.255.255", "255.255.255.255"],
  ];
  const b = new Uint8Array(16);
  for (const [inp, out] of cases) {
    assert.ok(parseIp16(inp, b, 0), inp);
    assert.equal(formatIp16(b, 0), out, inp);
  }
  for (
    const bad of [
      "",
      "1.2.3.4.5",
      "01.2.3.4",
      "256.1.1.1",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7::8",
      "12345::",
      "1.2.3.4::",
      "g::1",
    ]
  ) assert.equal(parseIp16(bad, b, 0), false, bad);
});

Deno.test("spp: flow strips later headers blindly and prefixes the saved one to replies", () => {
  const v = new SppView();
  const rx = new Uint8Array(64 * 1024);
  rx.set(UPSTREAM_VECTOR);
  const flow = SppFlow.first(v, rx, 0, 38 + 5);
  assert.ok(flow);
  rx.fill(0); // the receive buffer is reused: the flow must have copied its header
  assert.deepEqual(flow.header, UPSTREAM_VECTOR);
  // Later datagrams: 38 zero bytes + payload is accepted (the upstream test does exactly
  // this), anything under 38 bytes is swallowed.
  assert.equal(flow.inboundPayloadLen(38 + 10), 10);
  assert.equal(flow.inboundPayloadLen(38), 0);
  assert.equal(flow.inboundPayloadLen(37), -1);
  // Replies carry the original header unchanged (client/proxy not swapped).
  const tx = new Uint8Array(38 + 9);
  const o = flow.prefixReply(tx, 0);
  tx.set(new TextEncoder().encode("alamakota"), o);
  assert.ok(v.parse(tx, 0, tx.length));
  assert.equal(v.clientAddr(), "1.2.3.4");
  assert.equal(v.proxyPort, 2);
  assert.equal(SppFlow.first(v, new Uint8Array(20), 0, 20), null);
  assert.match(v.reason, /shorter/);
});
