// The fast Internet checksum against a plain RFC 1071 reference on random data: odd
// lengths, unaligned offsets, subarrays with odd byteOffset, 64 KiB and larger, chaining,
// pseudo headers, incremental update. Speed is printed, never asserted.

import assert from "node:assert/strict";
import {
  completePartial,
  finish,
  fold,
  pseudoSum,
  pseudoSum2,
  sum,
  update16,
} from "../../stack/wire/checksum.ts";

/** RFC 1071 straight from the text: big-endian 16-bit words, odd byte padded with zero. */
function reference(b: Uint8Array, o: number, n: number): number {
  let s = 0;
  for (let i = 0; i + 1 < n; i += 2) s += (b[o + i] << 8) | b[o + i + 1];
  if (n & 1) s += b[o + n - 1] << 8;
  while (s > 0xffff) s = (s % 65536) + Math.floor(s / 65536);
  return s;
}

/** Seeded xorshift so a failure reproduces. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function randomBytes(n: number, r: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r() & 0xff;
  return b;
}

Deno.test("checksum: matches the reference for every small offset/length", () => {
  const r = rng(1);
  const b = randomBytes(300, r);
  for (let o = 0; o < 9; o++) {
    for (let n = 0; n <= 200; n++) {
      assert.equal(fold(sum(b, o, n)), reference(b, o, n), `o=${o} n=${n}`);
    }
  }
});

Deno.test("checksum: random offsets and lengths up to 200 KiB, odd byteOffset views", () => {
  const r = rng(2);
  const base = randomBytes(210_011, r); // length not a multiple of 4
  for (let t = 0; t < 400; t++) {
    const shift = r() % 8;
    const view = base.subarray(shift); // byteOffset 0..7 into the same ArrayBuffer
    const o = r() % 1000;
    const n = t < 50 ? 65536 + (r() % 3) : r() % (view.length - o);
    assert.equal(fold(sum(view, o, n)), reference(view, o, n), `shift=${shift} o=${o} n=${n}`);
  }
  // The very last bytes of a buffer whose length is not a multiple of 4.
  assert.equal(fold(sum(base, base.length - 7, 7)), reference(base, base.length - 7, 7));
  assert.equal(fold(sum(base, 1, base.length - 1)), reference(base, 1, base.length - 1));
});

Deno.test("checksum: worst case all-ones data does not overflow (64 KiB .. 1 MiB)", () => {
  for (const n of [65535, 65536, 131072, 1 << 20]) {
    const b = new Uint8Array(n + 3).fill(0xff);
    assert.equal(fold(sum(b, 3, n)), reference(b, 3, n), `n=${n}`);
    if (n % 2 === 0) assert.equal(fold(sum(b, 0, n)), 0xffff);
  }
});

Deno.test("checksum: the view cache stays right when alternating between buffers", () => {
  const r = rng(3);
  const bufs = [
    randomBytes(5000, r),
    randomBytes(7001, r),
    randomBytes(64, r),
    randomBytes(9000, r),
  ];
  for (let i = 0; i < 200; i++) {
    const b = bufs[r() % bufs.length];
    const o = r() % 32, n = r() % (b.length - 32);
    assert.equal(fold(sum(b, o, n)), reference(b, o, n));
  }
});

Deno.test("checksum: chaining with initial, fold and finish edge values", () => {
  const r = rng(4);
  const b = randomBytes(4000, r);
  for (let t = 0; t < 100; t++) {
    const split = 2 * (r() % 1999); // an even split keeps the word pairing
    const whole = fold(sum(b, 0, 4000));
    assert.equal(fold(sum(b, split, 4000 - split, sum(b, 0, split))), whole);
  }
  assert.equal(sum(b, 10, 0, 1234), 1234, "empty region returns initial");
  assert.equal(fold(0), 0);
  assert.equal(fold(0xffff), 0xffff);
  assert.equal(fold(0x10000), 1);
  assert.equal(fold(0x1fffe), 0xffff);
  assert.equal(fold(2 ** 40 + 5), fold(((2 ** 40) % 0xffff) + 5));
  assert.equal(finish(0), 0xffff);
  assert.equal(finish(0xffff), 0);
  assert.equal(finish(0x12345), ~0x2346 & 0xffff);
});

Deno.test("checksum: RFC 1071 worked example", () => {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (folded).
  const b = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(fold(sum(b, 0, 8)), 0xddf2);
  const padded = new Uint8Array(40);
  padded.set(b, 17); // odd, unaligned
  assert.equal(fold(sum(padded, 17, 8)), 0xddf2);
});

Deno.test("checksum: pseudo headers for IPv4 and IPv6", () => {
  const hdr = new Uint8Array(40);
  const r = rng(5);
  for (let i = 0; i < 40; i++) hdr[i] = r() & 0xff;
  // IPv4 (RFC 768): src, dst, zero, proto, length.
  const p4 = new Uint8Array(12);
  p4.set(hdr.subarray(12, 16), 0);
  p4.set(hdr.subarray(16, 20), 4);
  p4[9] = 6;
  p4[10] = 0x05;
  p4[11] = 0xdc;
  assert.equal(fold(pseudoSum(hdr, 12, 16, 4, 6, 1500)), reference(p4, 0, 12));
  // IPv6 (RFC 8200 §8.1): src, dst, 32-bit length, 3 zero bytes, next header.
  const p6 = new Uint8Array(40);
  p6.set(hdr.subarray(8, 24), 0);
  p6.set(hdr.subarray(24, 40), 16);
  const len = 70000; // a jumbo-sized length exercises the high half
  p6[32] = len >>> 24;
  p6[33] = (len >>> 16) & 0xff;
  p6[34] = (len >>> 8) & 0xff;
  p6[35] = len & 0xff;
  p6[39] = 17;
  assert.equal(fold(pseudoSum(hdr, 8, 24, 16, 17, len)), reference(p6, 0, 40));
  const src = hdr.slice(8, 24), dst = hdr.slice(24, 40);
  assert.equal(pseudoSum2(src, 0, dst, 0, 16, 17, len), pseudoSum(hdr, 8, 24, 16, 17, len));
});

Deno.test("checksum: RFC 1624 incremental update equals recomputation", () => {
  const r = rng(6);
  for (let t = 0; t < 500; t++) {
    const b = randomBytes(64, r);
    b[10] = 0;
    b[11] = 0;
    const c = finish(sum(b, 0, 64));
    b[10] = c >> 8;
    b[11] = c & 0xff;
    const w = 2 * (r() % 32);
    if (w === 10) continue;
    const old = (b[w] << 8) | b[w + 1], neu = r() & 0xffff;
    b[w] = neu >> 8;
    b[w + 1] = neu & 0xff;
    const inc = update16(c, old, neu);
    b[10] = inc >> 8;
    b[11] = inc & 0xff;
    assert.equal(finish(sum(b, 0, 64)), 0, `t=${t}`);
  }
});

Deno.test("checksum: completePartial finishes a pseudo-header-seeded field", () => {
  const r = rng(7);
  const b = randomBytes(1000, r);
  b[106] = 0;
  b[107] = 0;
  const c = finish(sum(b, 100, 900));
  b[106] = 0x12; // pretend pseudo sum 0x1234 is stored: complete, then it must verify with it
  b[107] = 0x34;
  completePartial(b, 100, 1000, 106);
  const expect = finish(sum(b.slice(0, 1000).fill(0, 106, 108), 100, 900, 0x1234));
  assert.equal((b[106] << 8) | b[107], expect);
  assert.notEqual(expect, c);
});

Deno.test("checksum: throughput over 64 KiB (printed, not asserted)", () => {
  const b = new Uint8Array(65536 + 64);
  for (let i = 0; i < b.length; i++) b[i] = i * 7;
  for (let i = 0; i < 200; i++) sum(b, 0, 65536); // warm up the optimizer
  for (const off of [0, 1, 24]) {
    const n = 3000;
    let x = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) x += sum(b, off, 65536);
    const ms = performance.now() - t0;
    console.log(
      `checksum 64 KiB at offset ${off}: ${(n * 65536 / ms / 1e6).toFixed(2)} GB/s (${x > 0})`,
    );
  }
});
