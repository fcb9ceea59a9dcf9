// Big-endian helpers and address text conversion (RFC 4291 §2.2 input, RFC 5952 output).

import assert from "node:assert/strict";
import {
  bytesEqual,
  copyBytes,
  formatIp,
  formatMac,
  isZero,
  macEquals,
  parseIp,
  parseMac,
  setU16,
  setU32,
  u16,
  u32,
} from "../../stack/wire/bytes.ts";

Deno.test("bytes: big-endian reads and writes, u32 unsigned", () => {
  const b = new Uint8Array(8);
  setU16(b, 1, 0xabcd);
  assert.deepEqual([...b.subarray(0, 4)], [0, 0xab, 0xcd, 0]);
  assert.equal(u16(b, 1), 0xabcd);
  setU32(b, 4, 0xfedcba98);
  assert.equal(u32(b, 4), 0xfedcba98, "no sign bit");
  setU32(b, 4, -1); // int32 arithmetic results are accepted
  assert.equal(u32(b, 4), 0xffffffff);
  setU32(b, 4, 0x1_0000_0005); // and wrap modulo 2^32
  assert.equal(u32(b, 4), 5);
  setU16(b, 0, 0x12345);
  assert.equal(u16(b, 0), 0x2345);
});

Deno.test("bytes: comparisons and copies in place", () => {
  const a = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const b = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 9]);
  assert.ok(bytesEqual(a, 0, b, 1, 6));
  assert.ok(!bytesEqual(a, 0, b, 1, 7));
  assert.ok(macEquals(a, 0, b, 1));
  assert.ok(!macEquals(a, 1, b, 1));
  assert.ok(isZero(new Uint8Array(16), 0, 16));
  assert.ok(!isZero(b, 0, 2));
  // Overlapping copies inside one buffer behave like memmove.
  const m = new Uint8Array([1, 2, 3, 4, 5, 6]);
  copyBytes(m, 2, m, 0, 4);
  assert.deepEqual([...m], [1, 2, 1, 2, 3, 4]);
  const m2 = new Uint8Array([1, 2, 3, 4, 5, 6]);
  copyBytes(m2.subarray(0), 0, m2, 2, 4);
  assert.deepEqual([...m2], [3, 4, 5, 6, 5, 6]);
  // Views with different byteOffsets over one buffer: overlap is judged by address.
  const m3 = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  copyBytes(m3.subarray(3), 0, m3, 1, 4); // dst address 3 > src address 1: backwards
  assert.deepEqual([...m3], [1, 2, 3, 2, 3, 4, 5, 8]);
  // Long copies (the set() path) overlap the same way, both directions.
  const ref = (b: number[], d: number, s: number, n: number) => {
    const c = b.slice(s, s + n);
    for (let i = 0; i < n; i++) b[d + i] = c[i];
    return b;
  };
  for (const [d, s] of [[10, 0], [0, 10], [7, 3], [3, 7]]) {
    const big = new Uint8Array(300).map((_, i) => i & 0xff);
    const want = ref([...big], d, s, 200);
    copyBytes(big, d, big, s, 200);
    assert.deepEqual([...big], want, `overlap d=${d} s=${s}`);
    const big2 = new Uint8Array(300).map((_, i) => i & 0xff);
    copyBytes(big2.subarray(d), 0, big2.subarray(s), 0, 200);
    assert.deepEqual([...big2], want, `overlapping views d=${d} s=${s}`);
  }
});

Deno.test("bytes: formatIp and formatMac", () => {
  const t = (s: string) => formatIp(parseIp(s)!);
  assert.equal(t("10.0.2.2"), "10.0.2.2");
  assert.equal(t("0.0.0.0"), "0.0.0.0");
  assert.equal(t("fd00::2"), "fd00::2");
  assert.equal(t("::"), "::");
  assert.equal(t("::1"), "::1");
  assert.equal(t("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
  // RFC 5952 §4.2.2: one zero group is not shortened; §4.2.3: the longest run, first on a tie.
  assert.equal(t("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(t("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
  assert.equal(t("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(t("fe80::ff:fe00:a"), "fe80::ff:fe00:a");
  assert.equal(t("1:2:3:4:5:6:7:0"), "1:2:3:4:5:6:7:0");
  assert.equal(t("1:0:0:0:0:0:0:0"), "1::");
  assert.equal(t("::ffff:192.0.2.1"), "::ffff:192.0.2.1", "RFC 5952 §5 mixed notation");
  const pkt = new Uint8Array(30);
  pkt.set([192, 0, 2, 7], 9);
  assert.equal(formatIp(pkt, 9, 4), "192.0.2.7");
  assert.equal(formatMac(new Uint8Array([2, 0, 0, 0, 0, 0xa])), "02:00:00:00:00:0a");
  assert.deepEqual([...parseMac("02:00:00:00:00:0A")!], [2, 0, 0, 0, 0, 10]);
  assert.equal(parseMac("02:00:00:00:00"), null);
});

Deno.test("bytes: parseIp accepts RFC 4291 forms and rejects the rest", () => {
  assert.deepEqual([...parseIp("192.0.2.255")!], [192, 0, 2, 255]);
  assert.deepEqual(
    [...parseIp("2001:db8::1")!],
    [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  );
  assert.deepEqual([...parseIp("::ffff:1.2.3.4")!].slice(10), [0xff, 0xff, 1, 2, 3, 4]);
  assert.deepEqual([...parseIp("::1.2.3.4")!].slice(10), [0, 0, 1, 2, 3, 4]);
  assert.deepEqual([...parseIp("64:ff9b::192.0.2.1")!].slice(0, 2), [0, 0x64]);
  assert.equal(parseIp("1:2:3:4:5:6:1.2.3.4")!.length, 16);
  assert.equal(parseIp("1:2:3:4:5:6:7:8")!.length, 16);
  assert.equal(parseIp("1::2:3:4:5:6:7")!.length, 16);
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.-4",
      " 1.2.3.4",
      "1.2.3.4 ",
      "a.b.c.d",
      ":",
      ":::",
      "1:::2",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7::8",
      "12345::1",
      "g::1",
      "[::1]",
      "fe80::1%eth0",
      "2001:db8::/64",
      ":1::2",
      "1::2:",
      "1:2:3:4:5:6:7:1.2.3.4",
      "::1.2.3",
      "1.2.3.4::",
    ]
  ) {
    assert.equal(parseIp(bad), null, JSON.stringify(bad));
  }
});
