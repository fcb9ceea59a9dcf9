// 32-bit TCP sequence arithmetic (RFC 9293 §3.4, RFC 1982 serial numbers), in one place.
//
// Sequence numbers are kept as unsigned 32-bit integers in plain JS numbers (0 .. 2^32-1).
// Comparisons go through the signed 32-bit difference, which is correct as long as the two
// numbers are less than 2^31 apart, which TCP's window rules guarantee. `| 0` and `>>> 0`
// keep every result a small integer for V8 (no heap numbers, no allocation).
//
// `Seq` brands the numbers that are sequence numbers (Conn's fields): a plain `a + n` cannot
// be stored into one by mistake (it would not wrap), only what seqAdd/asSeq return. The
// brand exists for the type checker alone: at run time a Seq is the same number.

/** A sequence number: a u32 in a plain number (type-level brand, no run-time cost). */
export type Seq = number & { readonly __seq: unique symbol };

/** A u32 read from the wire (or a test's literal) as a sequence number. */
export function asSeq(x: number): Seq {
  return (x >>> 0) as Seq;
}

/** a + n, wrapped to u32. */
export function seqAdd(a: number, n: number): Seq {
  return ((a + n) >>> 0) as Seq;
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

/** lo <= x < lo + len: x lies in the window of len bytes at lo (RFC 9293 §3.10.7.4). */
export function seqInWindow(x: number, lo: number, len: number): boolean {
  const d = (x - lo) | 0;
  return d >= 0 && d < len;
}
