// Byte helpers shared by every wire view: network (big-endian) integer access, in-place
// comparisons, and address text conversion.
//
// The hot path only uses u16/u32/setU16/setU32/bytesEqual/copyBytes: plain index arithmetic on
// a Uint8Array, which V8 inlines; a DataView per packet would allocate and is slower.
// formatIp/formatMac/parseIp allocate strings and arrays: for configuration and logs only.

/** Big-endian unsigned 16-bit read. */
export function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

/** Big-endian unsigned 32-bit read (>>> 0 keeps it unsigned: TCP sequence numbers). */
export function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Big-endian 16-bit write (the Uint8Array store truncates each byte). */
export function setU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

/** Big-endian 32-bit write; accepts values up to 2^32-1 as well as negative int32. */
export function setU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** `n` bytes of `a` at `ao` equal `n` bytes of `b` at `bo`. Compares in place, no copy. */
export function bytesEqual(
  a: Uint8Array,
  ao: number,
  b: Uint8Array,
  bo: number,
  n: number,
): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/** A 16-byte IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isV4Mapped(a: Uint8Array, o = 0): boolean {
  if (a.length - o < 16) return false;
  for (let i = 0; i < 10; i++) if (a[o + i] !== 0) return false;
  return a[o + 10] === 0xff && a[o + 11] === 0xff;
}

/** Two 6-byte MAC addresses are equal. */
export function macEquals(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  return bytesEqual(a, ao, b, bo, 6);
}

/**
 * Copies `n` bytes (memmove semantics), allocating nothing. Within one ArrayBuffer, copies
 * above COPY_LOOP_MAX bytes are one `copyWithin` (memmove) on a cached view of the whole
 * buffer: the stack keeps the tap's read buffer and the UDP gather buffer in one ArrayBuffer
 * for this (measured: 1400 bytes 55 ns vs 1.35 µs for the byte loop, which was 12% of slirpd's
 * CPU guest → host). `set(src.subarray())` would be as fast but allocates a view per call,
 * which tests/ns/udp_hotpath.test.ts forbids on the datagram path. Other copies go byte by byte.
 */
export function copyBytes(
  dst: Uint8Array,
  dstOff: number,
  src: Uint8Array,
  srcOff: number,
  n: number,
): void {
  if (dst.buffer === src.buffer) {
    if (n > COPY_LOOP_MAX) {
      const from = src.byteOffset + srcOff;
      wholeView(dst.buffer).copyWithin(dst.byteOffset + dstOff, from, from + n);
      return;
    }
    if (dst.byteOffset + dstOff > src.byteOffset + srcOff) {
      // Destination after source: copy backwards like memmove.
      for (let i = n - 1; i >= 0; i--) dst[dstOff + i] = src[srcOff + i];
      return;
    }
  }
  for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i];
}

/** Above this many bytes copyBytes uses `copyWithin` (see there). */
const COPY_LOOP_MAX = 32;
const wholeViews = new WeakMap<ArrayBufferLike, Uint8Array>();

/** A Uint8Array over all of `buf`, made once per buffer. */
function wholeView(buf: ArrayBufferLike): Uint8Array {
  let v = wholeViews.get(buf);
  if (v === undefined) wholeViews.set(buf, v = new Uint8Array(buf));
  return v;
}

/** All `n` bytes at `o` are zero (the unspecified address, an absent MAC). */
export function isZero(b: Uint8Array, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[o + i] !== 0) return false;
  return true;
}

const HEX = "0123456789abcdef";

/** "02:00:00:00:00:0a" (for logs). */
export function formatMac(b: Uint8Array, o = 0): string {
  let s = "";
  for (let i = 0; i < 6; i++) {
    if (i) s += ":";
    s += HEX[b[o + i] >> 4] + HEX[b[o + i] & 15];
  }
  return s;
}

/** Parses "02:00:00:00:00:0a" (also with '-'); null when malformed. */
export function parseMac(s: string): Uint8Array | null {
  const m =
    /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i
      .exec(s);
  if (!m) return null;
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) out[i] = parseInt(m[i + 1], 16);
  return out;
}

/**
 * Text form of the IPv4 (len 4) or IPv6 (len 16) address at `b[o]`, for logs. IPv6 follows
 * RFC 5952: lowercase, no leading zeros, the longest run (first on a tie) of two or more zero
 * groups becomes "::", and IPv4-mapped addresses print as "::ffff:192.0.2.1" (§5).
 */
export function formatIp(b: Uint8Array, o = 0, len: 4 | 16 = b.length === 4 ? 4 : 16): string {
  if (len === 4) return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  if (isZero(b, o, 10) && b[o + 10] === 0xff && b[o + 11] === 0xff) {
    return `::ffff:${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  }
  // Longest run of zero 16-bit groups (RFC 5952 §4.2.2: a single group is not shortened).
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (u16(b, o + 2 * i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && u16(b, o + 2 * j) === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += "::";
      i += bestLen - 1;
      continue;
    }
    if (s.length && !s.endsWith(":")) s += ":";
    s += u16(b, o + 2 * i).toString(16);
  }
  return s;
}

function parseIpv4Into(s: string, out: Uint8Array, o: number): boolean {
  const parts = s.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    // Decimal only, no leading zeros (like inet_pton: "010" would be octal to inet_aton).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return false;
    const v = Number(p);
    if (v > 255) return false;
    out[o + i] = v;
  }
  return true;
}

function parseGroups(s: string, out: number[]): boolean {
  if (s === "") return true;
  for (const g of s.split(":")) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return false;
    out.push(parseInt(g, 16));
  }
  return true;
}

/**
 * Parses a dotted-quad IPv4 address (4 bytes) or an RFC 4291 §2.2 IPv6 address (16 bytes),
 * including "::" compression and a trailing dotted quad ("::ffff:192.0.2.1" and
 * "64:ff9b::192.0.2.1" are accepted and give their 16-byte IPv6 form). Brackets, zone ids
 * ("fe80::1%eth0"), prefixes ("/64") and leading-zero IPv4 octets are rejected: null.
 */
export function parseIp(s: string): Uint8Array | null {
  if (s.indexOf(":") < 0) {
    const v4 = new Uint8Array(4);
    return parseIpv4Into(s, v4, 0) ? v4 : null;
  }
  const out = new Uint8Array(16);
  let text = s;
  let tailV4 = false;
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) >= 0) {
    // Trailing IPv4 part: the last 32 bits.
    if (!parseIpv4Into(text.slice(lastColon + 1), out, 12)) return null;
    tailV4 = true;
    // Keep "::" intact when the dotted quad follows it directly ("::1.2.3.4").
    text = text.slice(0, lastColon + 1);
    text = text.endsWith("::") ? text : text.slice(0, -1);
  }
  const groupsWanted = tailV4 ? 6 : 8;
  const head: number[] = [];
  const tail: number[] = [];
  const dbl = text.indexOf("::");
  if (dbl >= 0) {
    if (text.indexOf("::", dbl + 1) >= 0) return null;
    if (!parseGroups(text.slice(0, dbl), head) || !parseGroups(text.slice(dbl + 2), tail)) {
      return null;
    }
    // "::" stands for at least one zero group (RFC 4291 §2.2 2.).
    if (head.length + tail.length > groupsWanted - 1) return null;
  } else {
    if (!parseGroups(text, head) || head.length !== groupsWanted) return null;
  }
  for (let i = 0; i < head.length; i++) setU16(out, 2 * i, head[i]);
  for (let i = 0; i < tail.length; i++) {
    setU16(out, 2 * (groupsWanted - tail.length + i), tail[i]);
  }
  return out;
}
