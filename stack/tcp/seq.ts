// 32-bit TCP sequence arithmetic (RFC 9293 §3.4, RFC 1982 serial numbers).
//
// Sequence numbers are kept as unsigned 32-bit integers in plain JS numbers (0 .. 2^32-1).
// Comparisons go through the signed 32-bit difference, which is correct as long as the two
// numbers are less than 2^31 apart, which TCP's window rules guarantee. `| 0` and `>>> 0`
// keep every result a small integer for V8 (no heap numbers, no allocation).

/** a + n, wrapped to u32. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** a - b as a signed 32-bit integer (how far a is ahead of b). */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** a < b */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** a <= b */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** a > b */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** a >= b */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** lo <= x < hi (the half-open window test of RFC 9293 §3.4). */
export function seqInWindow(x: number, lo: number, hi: number): boolean {
  return ((x - lo) | 0) >= 0 && ((x - hi) | 0) < 0;
}

/** The larger of two sequence numbers. */
export function seqMax(a: number, b: number): number {
  return ((a - b) | 0) >= 0 ? a : b;
}

/** The smaller of two sequence numbers. */
export function seqMin(a: number, b: number): number {
  return ((a - b) | 0) <= 0 ? a : b;
}
