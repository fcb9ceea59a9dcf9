// UDP (RFC 768). The checksum covers a pseudo header (RFC 768 for IPv4, RFC 8200 §8.1 for
// IPv6). Over IPv4 a zero checksum means "none"; over IPv6 it is mandatory, so zero is
// invalid, and a computed zero is sent as 0xffff.

import { setU16, u16 } from "./bytes.ts";
import { finish, fold, pseudoSum, pseudoSum2, sum } from "./checksum.ts";

export const IPPROTO_UDP = 17;
export const UDP_HLEN = 8;
/** Offset of the checksum in the header (virtio csum_offset). */
export const UDP_CSUM_OFFSET = 6;

/** A reusable view over one UDP datagram (`n` = the IP payload length). */
export class UdpView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds and checks 8 <= length field <= n. */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    if (n < UDP_HLEN || o < 0 || o + n > b.length) return false;
    const len = u16(b, o + 4);
    return len >= UDP_HLEN && len <= n;
  }
  get srcPort(): number {
    return u16(this.b, this.o);
  }
  get dstPort(): number {
    return u16(this.b, this.o + 2);
  }
  /** The length field: header plus data. */
  get length(): number {
    return u16(this.b, this.o + 4);
  }
  get checksum(): number {
    return u16(this.b, this.o + 6);
  }
  get payloadOffset(): number {
    return this.o + UDP_HLEN;
  }
  get payloadLen(): number {
    return u16(this.b, this.o + 4) - UDP_HLEN;
  }
  /**
   * Checks the checksum against the pseudo header whose addresses are at srcOff/dstOff in
   * the same buffer (the IP header). addrLen 4: a zero checksum is accepted (not computed,
   * RFC 768); addrLen 16: zero is rejected (RFC 8200 §8.1).
   */
  verifyChecksum(addrLen: 4 | 16, srcOff: number, dstOff: number): boolean {
    const c = this.checksum;
    if (c === 0) return addrLen === 4;
    const len = this.length;
    const ps = pseudoSum(this.b, srcOff, dstOff, addrLen, IPPROTO_UDP, len);
    return finish(sum(this.b, this.o, len, ps)) === 0;
  }
}

/** Writes the 8-byte header with checksum 0; returns 8. `length` = 8 + data length. */
export function emitUdp(
  b: Uint8Array,
  o: number,
  srcPort: number,
  dstPort: number,
  length: number,
): number {
  setU16(b, o, srcPort);
  setU16(b, o + 2, dstPort);
  setU16(b, o + 4, length);
  b[o + 6] = 0;
  b[o + 7] = 0;
  return UDP_HLEN;
}

/** Computes the full checksum of the `length`-byte datagram at `o` (addresses 4 or 16 B). */
export function setUdpChecksum(
  b: Uint8Array,
  o: number,
  length: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  b[o + 6] = 0;
  b[o + 7] = 0;
  const ps = pseudoSum2(src, 0, dst, 0, src.length === 4 ? 4 : 16, IPPROTO_UDP, length);
  // RFC 768: a computed zero is transmitted as all ones (zero means "no checksum").
  setU16(b, o + 6, finish(sum(b, o, length, ps)) || 0xffff);
}

/**
 * Stores only the folded pseudo-header sum, for VIRTIO_NET_HDR_F_NEEDS_CSUM: the receiver
 * (the guest kernel) sums from the UDP header on and completes it.
 */
export function setUdpPartialChecksum(
  b: Uint8Array,
  o: number,
  length: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  setU16(
    b,
    o + 6,
    fold(pseudoSum2(src, 0, dst, 0, src.length === 4 ? 4 : 16, IPPROTO_UDP, length)),
  );
}
