// TCP sequence arithmetic (stack/tcp/seq.ts) across the 2^32 wrap.

import assert from "node:assert/strict";
import {
  asSeq,
  seqAdd,
  seqDiff,
  seqGe,
  seqGt,
  seqInWindow,
  seqLe,
  seqLt,
} from "../../stack/tcp/seq.ts";

const TOP = 0xffff_ffff;

Deno.test("seq: add wraps to u32 both ways", () => {
  assert.equal(seqAdd(TOP, 1), 0);
  assert.equal(seqAdd(TOP - 9, 20), 10);
  assert.equal(seqAdd(0, -1), TOP);
  assert.equal(seqAdd(5, -10), TOP - 4);
  assert.equal(seqAdd(123, 0), 123);
  assert.equal(asSeq(-1), TOP);
  assert.equal(asSeq(0x1_0000_0005), 5);
});

Deno.test("seq: diff is signed across the wrap", () => {
  assert.equal(seqDiff(5, TOP), 6);
  assert.equal(seqDiff(TOP, 5), -6);
  assert.equal(seqDiff(0, 0), 0);
  assert.equal(seqDiff(0x8000_0000 - 1, 0), 0x7fff_ffff);
});

Deno.test("seq: comparisons across the wrap", () => {
  // TOP is just before 0 in sequence space.
  assert.ok(seqLt(TOP, 0));
  assert.ok(seqLe(TOP, 0));
  assert.ok(seqGt(0, TOP));
  assert.ok(seqGe(0, TOP));
  assert.ok(!seqLt(0, TOP));
  assert.ok(!seqGt(TOP, 0));
  assert.ok(seqLt(TOP - 100, 100));
  assert.ok(seqGt(100, TOP - 100));
  // Equal values.
  assert.ok(seqLe(7, 7) && seqGe(7, 7) && !seqLt(7, 7) && !seqGt(7, 7));
  assert.ok(seqLe(TOP, TOP) && seqGe(TOP, TOP));
  // Less than 2^31 apart: the nearer way round decides.
  assert.ok(seqLt(0, 0x7fff_ffff));
  assert.ok(seqGt(0, 0x8000_0001));
});

Deno.test("seq: window test lo <= x < lo + len, across the wrap", () => {
  const lo = TOP - 9; // the window [TOP-9, TOP-9+100) wraps past 0
  assert.ok(seqInWindow(lo, lo, 100));
  assert.ok(seqInWindow(TOP, lo, 100));
  assert.ok(seqInWindow(0, lo, 100));
  assert.ok(seqInWindow(89, lo, 100)); // the last byte in it
  assert.ok(!seqInWindow(90, lo, 100)); // the right edge is outside
  assert.ok(!seqInWindow(TOP - 10, lo, 100)); // just before the left edge
  assert.ok(!seqInWindow(lo, lo, 0)); // an empty window holds nothing
  assert.ok(seqInWindow(5, 5, 1));
  assert.ok(!seqInWindow(6, 5, 1));
});
