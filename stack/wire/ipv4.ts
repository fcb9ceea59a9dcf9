// IPv4 header (RFC 791). The view validates structure only (version, IHL, total length
// against what was received); `verifyChecksum` is separate so callers can skip it for frames
// the tap marks DATA_VALID.

import { copyBytes, setU16, u16 } from "./bytes.ts";
import { finish, sum } from "./checksum.ts";

export const IPV4_HLEN = 20;
/** Flags/fragment field bits (RFC 791 §3.1). */
export const IPV4_DF = 0x4000;
export const IPV4_MF = 0x2000;

/** A reusable view over one IPv4 packet. */
export class Ipv4View {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /**
   * Binds to `b[o, o+n)` (n may include link-layer padding beyond the total length) and
   * checks version 4, IHL >= 5, header <= total length <= n.
   */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    if (n < IPV4_HLEN || o < 0 || o + n > b.length) return false;
    const vihl = b[o];
    if (vihl >> 4 !== 4) return false;
    const hl = (vihl & 15) << 2;
    const total = u16(b, o + 2);
    return hl >= IPV4_HLEN && hl <= total && total <= n;
  }
  get version(): number {
    return this.b[this.o] >> 4;
  }
  /** Header length field in 32-bit words (5..15). */
  get ihl(): number {
    return this.b[this.o] & 15;
  }
  /** Header length in bytes, options included. */
  get headerLen(): number {
    return (this.b[this.o] & 15) << 2;
  }
  /** The TOS / DSCP+ECN byte. */
  get tos(): number {
    return this.b[this.o + 1];
  }
  get totalLen(): number {
    return u16(this.b, this.o + 2);
  }
  get ident(): number {
    return u16(this.b, this.o + 4);
  }
  get df(): boolean {
    return (this.b[this.o + 6] & 0x40) !== 0;
  }
  get mf(): boolean {
    return (this.b[this.o + 6] & 0x20) !== 0;
  }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragOffset(): number {
    return (u16(this.b, this.o + 6) & 0x1fff) << 3;
  }
  /** A fragment of a larger datagram (MF set or a non-zero offset). */
  get isFragment(): boolean {
    return (u16(this.b, this.o + 6) & 0x3fff) !== 0;
  }
  get ttl(): number {
    return this.b[this.o + 8];
  }
  get protocol(): number {
    return this.b[this.o + 9];
  }
  get checksum(): number {
    return u16(this.b, this.o + 10);
  }
  get srcOffset(): number {
    return this.o + 12;
  }
  get dstOffset(): number {
    return this.o + 16;
  }
  get payloadOffset(): number {
    return this.o + ((this.b[this.o] & 15) << 2);
  }
  /** Total length minus header: link padding excluded. */
  get payloadLen(): number {
    return u16(this.b, this.o + 2) - ((this.b[this.o] & 15) << 2);
  }
  /** Same as payloadOffset: named like Ipv6View's upper-layer accessors. */
  get l4Offset(): number {
    return this.payloadOffset;
  }
  get l4Len(): number {
    return this.payloadLen;
  }
  /** The header checksum sums to zero (RFC 791 §3.1, RFC 1071). */
  verifyChecksum(): boolean {
    return finish(sum(this.b, this.o, this.headerLen)) === 0;
  }
}

/**
 * Writes a 20-byte IPv4 header (no options) with its checksum; returns 20. `flags` is the
 * raw flags/fragment-offset field (IPV4_DF, or IPV4_MF | offset/8). src/dst are 4 bytes.
 */
export function emitIpv4(
  b: Uint8Array,
  o: number,
  tos: number,
  totalLen: number,
  ident: number,
  flags: number,
  ttl: number,
  protocol: number,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  b[o] = 0x45;
  b[o + 1] = tos;
  setU16(b, o + 2, totalLen);
  setU16(b, o + 4, ident);
  setU16(b, o + 6, flags);
  b[o + 8] = ttl;
  b[o + 9] = protocol;
  b[o + 10] = 0;
  b[o + 11] = 0;
  copyBytes(b, o + 12, src, 0, 4);
  copyBytes(b, o + 16, dst, 0, 4);
  setU16(b, o + 10, finish(sum(b, o, IPV4_HLEN)));
  return IPV4_HLEN;
}

/** Recomputes the header checksum in place (after changing a field, e.g. total length). */
export function setIpv4Checksum(b: Uint8Array, o: number): void {
  b[o + 10] = 0;
  b[o + 11] = 0;
  setU16(b, o + 10, finish(sum(b, o, (b[o] & 15) << 2)));
}
