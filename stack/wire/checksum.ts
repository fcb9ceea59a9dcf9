// The Internet checksum (RFC 1071), fast enough to run over every byte slirpd moves when the
// tap has no checksum offload (~5 GB/s over 64 KiB on one core).
//
// How: the bytes are read through a Uint32Array over the packet's ArrayBuffer, and the two
// 16-bit halves of each 32-bit word are added into separate int32 accumulators (so V8 keeps
// them in registers, no float math), folded every 32 KiB so they never overflow. Words are
// read in host order; RFC 1071 §2(B) says the one's-complement sum is byte-order independent:
// summing byte-swapped words gives the byte-swapped sum, so one swap at the end fixes it. A
// region starting at an odd address is summed with the pairs shifted by one byte, which on a
// little-endian host is exactly the network-order pairing, so it needs no swap (see `sum`).
//
// The typed-array views are cached per ArrayBuffer (two entries: the RX and the TX buffer)
// so a call allocates nothing. Sums are carried as plain numbers: `sum` returns an unfolded
// accumulator in network byte order that can be passed back as `initial` for the next piece
// (safe far beyond 64 KiB: doubles are exact to 2^53), `fold` reduces it to 16 bits and
// `finish` gives the value to store in a header.

/** True on little-endian hosts (x86, arm64): decides which regions need the final swap. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Two-entry cache ArrayBuffer -> Uint32Array over its whole 4-byte-aligned part.
let bufA: ArrayBufferLike | null = null;
let u32A: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
let bufB: ArrayBufferLike | null = null;
let u32B: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

function words(buf: ArrayBufferLike): Uint32Array<ArrayBufferLike> {
  if (buf === bufA && u32A.length === buf.byteLength >>> 2) return u32A;
  if (buf === bufB && u32B.length === buf.byteLength >>> 2) {
    // Move to the front so the two most recently used buffers stay cached.
    const t = u32A;
    u32A = u32B;
    u32B = t;
    bufB = bufA;
    bufA = buf;
    return u32A;
  }
  bufB = bufA;
  u32B = u32A;
  bufA = buf;
  u32A = new Uint32Array(buf, 0, buf.byteLength >>> 2);
  return u32A;
}

/** Adds the byte at absolute address `addr` to a host-order word sum. */
function byteAt(v: number, addr: number): number {
  // Little-endian: the byte at an even address is the low half of its word.
  return ((addr & 1) === 1) === LITTLE_ENDIAN ? v << 8 : v;
}

/**
 * Ones'-complement sum of `len` bytes of `b` from `o`, added to `initial`. The result is an
 * unfolded (up to ~2^53) accumulator in network byte order: feed it to `fold`/`finish`, or
 * back in as `initial` to continue over a region that starts at an even offset from this one.
 */
export function sum(b: Uint8Array, o: number, len: number, initial = 0): number {
  if (len <= 0) return initial;
  const start = b.byteOffset + o; // absolute address in the ArrayBuffer
  const end = start + len;
  let acc = 0; // host-order word sum
  let p = o;
  if (len < 16) {
    for (let a = start; a < end; a++, p++) acc += byteAt(b[p], a);
  } else {
    // Head: bytes up to the first 4-byte-aligned address.
    let a = start;
    while ((a & 3) !== 0) {
      acc += byteAt(b[p++], a++);
    }
    const w = words(b.buffer);
    let i = a >>> 2;
    const wEnd = end >>> 2;
    // 8192 words per round: the low-half and high-half sums stay below 2^29 (int32).
    while (i < wEnd) {
      const stop = Math.min(wEnd, i + 8192);
      let l = 0, h = 0;
      for (; i + 4 <= stop; i += 4) {
        const x0 = w[i], x1 = w[i + 1], x2 = w[i + 2], x3 = w[i + 3];
        l += (x0 & 0xffff) + (x1 & 0xffff) + (x2 & 0xffff) + (x3 & 0xffff);
        h += (x0 >>> 16) + (x1 >>> 16) + (x2 >>> 16) + (x3 >>> 16);
      }
      for (; i < stop; i++) {
        const x = w[i];
        l += x & 0xffff;
        h += x >>> 16;
      }
      // Fold after each round so `acc` stays a small int32 for any length.
      acc += l + h;
      acc = (acc & 0xffff) + (acc >>> 16);
    }
    // Tail: the last 0..3 bytes after the last whole word.
    a = wEnd << 2;
    p = o + (a - start);
    for (; a < end; a++, p++) acc += byteAt(b[p], a);
  }
  // Fold the host-order sum to 16 bits.
  let s = (acc & 0xffff) + (acc >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  // Words were paired at even absolute addresses. For an even start that pairing matches
  // the packet's, but the bytes were little-endian words: swap. For an odd start the pairing
  // is shifted, which puts each packet-even byte in the high half: already network order.
  if (((start & 1) === 0) === LITTLE_ENDIAN) s = ((s & 0xff) << 8) | (s >>> 8);
  return initial + s;
}

/** Folds an accumulator (any size up to 2^53) to 16 bits with end-around carry. */
export function fold(s: number): number {
  // `s & 0xffff` is exact for any integer below 2^53: ToInt32 is modulo 2^32.
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return s;
}

/** The checksum field value: ones' complement of the folded sum. */
export function finish(s: number): number {
  return ~fold(s) & 0xffff;
}

/**
 * Pseudo-header sum (RFC 768, RFC 793 for IPv4; RFC 8200 §8.1 for IPv6) with both addresses
 * in one buffer (a packet's IP header): addresses, protocol, upper-layer length. Unfolded,
 * network order; pass as `initial` to `sum`.
 */
export function pseudoSum(
  b: Uint8Array,
  srcOff: number,
  dstOff: number,
  addrLen: 4 | 16,
  proto: number,
  l4Len: number,
): number {
  return pseudoSum2(b, srcOff, b, dstOff, addrLen, proto, l4Len);
}

/** `pseudoSum` with the addresses in different arrays (a flow's stored addresses). */
export function pseudoSum2(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  addrLen: 4 | 16,
  proto: number,
  l4Len: number,
): number {
  // IPv6 carries the length as 32 bits: both halves count. For IPv4 the high half is 0.
  let s = proto + (l4Len & 0xffff) + Math.floor(l4Len / 65536);
  for (let i = 0; i < addrLen; i += 2) {
    s += ((src[srcOff + i] << 8) | src[srcOff + i + 1]) +
      ((dst[dstOff + i] << 8) | dst[dstOff + i + 1]);
  }
  return s;
}

/**
 * Incremental update (RFC 1624 eqn. 3): the new checksum field after one 16-bit word of the
 * covered data changed from `oldWord` to `newWord`. Apply once per changed word.
 */
export function update16(check: number, oldWord: number, newWord: number): number {
  return finish((~check & 0xffff) + (~oldWord & 0xffff) + newWord);
}

/**
 * Completes a partial checksum the way a NIC does for VIRTIO_NET_HDR_F_NEEDS_CSUM /
 * CHECKSUM_PARTIAL: sums `[start, end)` (the field already holds the pseudo-header sum) and
 * stores the result at `csumAt`, big-endian.
 */
export function completePartial(b: Uint8Array, start: number, end: number, csumAt: number): void {
  const c = finish(sum(b, start, end - start));
  b[csumAt] = c >>> 8;
  b[csumAt + 1] = c;
}
