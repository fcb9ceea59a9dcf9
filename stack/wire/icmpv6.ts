// ICMPv6 (RFC 4443): echo and the errors slirpd sends to the guest. Unlike ICMPv4 the
// checksum covers an IPv6 pseudo header (RFC 8200 §8.1), so the view's verifyChecksum and
// the emitters need the packet's addresses. Neighbour discovery messages are in ndp.ts.

import { copyBytes, setU16, u16, u32 } from "./bytes.ts";
import { finish, pseudoSum, pseudoSum2, sum } from "./checksum.ts";

export const IPPROTO_ICMPV6 = 58;
export const ICMPV6_DEST_UNREACH = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAM_PROB = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
/** Destination unreachable codes (RFC 4443 §3.1). */
export const ICMPV6_NOROUTE = 0;
export const ICMPV6_ADM_PROHIBITED = 1;
export const ICMPV6_NOT_NEIGHBOUR = 2;
export const ICMPV6_ADDR_UNREACH = 3;
export const ICMPV6_PORT_UNREACH = 4;
export const ICMPV6_POLICY_FAIL = 5;
export const ICMPV6_REJECT_ROUTE = 6;
export const ICMPV6_HLEN = 8;
/** IPv6 minimum link MTU (RFC 8200 §5): errors must fit in it. */
export const IPV6_MIN_MTU = 1280;

/** A reusable view over one ICMPv6 message (`n` = upper-layer length). */
export class Icmpv6View {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds; false if shorter than 8 bytes (every RFC 4443/4861 message has at least 8). */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    return n >= ICMPV6_HLEN && o >= 0 && o + n <= b.length;
  }
  get type(): number {
    return this.b[this.o];
  }
  get code(): number {
    return this.b[this.o + 1];
  }
  get checksum(): number {
    return u16(this.b, this.o + 2);
  }
  get echoId(): number {
    return u16(this.b, this.o + 4);
  }
  get echoSeq(): number {
    return u16(this.b, this.o + 6);
  }
  /** MTU of a Packet Too Big (§3.2), pointer of a Parameter Problem (§3.4). */
  get param(): number {
    return u32(this.b, this.o + 4);
  }
  /** Echo data, or the quoted invoking packet of an error. */
  get dataOffset(): number {
    return this.o + ICMPV6_HLEN;
  }
  get dataLen(): number {
    return this.n - ICMPV6_HLEN;
  }
  /** Error messages have types 0..127 (§2.1). */
  get isError(): boolean {
    return this.b[this.o] < 128;
  }
  /** Checksum with the pseudo header; the addresses are in the same buffer (the IPv6 header). */
  verifyChecksum(srcOff: number, dstOff: number): boolean {
    const ps = pseudoSum(this.b, srcOff, dstOff, 16, IPPROTO_ICMPV6, this.n);
    return finish(sum(this.b, this.o, this.n, ps)) === 0;
  }
}

/** Computes and stores the checksum of the `len`-byte message at `o` (16-byte addresses). */
export function setIcmpv6Checksum(
  b: Uint8Array,
  o: number,
  len: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  b[o + 2] = 0;
  b[o + 3] = 0;
  const ps = pseudoSum2(src, 0, dst, 0, 16, IPPROTO_ICMPV6, len);
  setU16(b, o + 2, finish(sum(b, o, len, ps)));
}

/**
 * Writes an echo header in front of `dataLen` data bytes already at `o + 8` and checksums
 * it; returns the message length.
 */
export function emitIcmpv6Echo(
  b: Uint8Array,
  o: number,
  type: number,
  id: number,
  seq: number,
  dataLen: number,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  b[o] = type;
  b[o + 1] = 0;
  setU16(b, o + 4, id);
  setU16(b, o + 6, seq);
  setIcmpv6Checksum(b, o, ICMPV6_HLEN + dataLen, src, dst);
  return ICMPV6_HLEN + dataLen;
}

/**
 * Writes an ICMPv6 error quoting as much of the invoking packet `orig[origOff, +origLen)`
 * as fits in the minimum MTU (RFC 4443 §2.4 (c)): at most 1280 - 40 - 8 bytes. `param` is
 * the 32-bit word after the checksum (MTU, pointer, or 0). Returns the message length.
 */
export function emitIcmpv6Error(
  b: Uint8Array,
  o: number,
  type: number,
  code: number,
  param: number,
  src: Uint8Array,
  dst: Uint8Array,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
): number {
  const quote = Math.min(origLen, IPV6_MIN_MTU - 40 - ICMPV6_HLEN);
  b[o] = type;
  b[o + 1] = code;
  setU16(b, o + 4, param >>> 16);
  setU16(b, o + 6, param & 0xffff);
  copyBytes(b, o + ICMPV6_HLEN, orig, origOff, quote);
  setIcmpv6Checksum(b, o, ICMPV6_HLEN + quote, src, dst);
  return ICMPV6_HLEN + quote;
}

/** Destination unreachable (§3.1), e.g. code ICMPV6_PORT_UNREACH. */
export function emitIcmpv6Unreachable(
  b: Uint8Array,
  o: number,
  code: number,
  src: Uint8Array,
  dst: Uint8Array,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
): number {
  return emitIcmpv6Error(b, o, ICMPV6_DEST_UNREACH, code, 0, src, dst, orig, origOff, origLen);
}

/** Packet Too Big (§3.2) carrying the MTU of the next hop. */
export function emitIcmpv6PacketTooBig(
  b: Uint8Array,
  o: number,
  mtu: number,
  src: Uint8Array,
  dst: Uint8Array,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
): number {
  return emitIcmpv6Error(b, o, ICMPV6_PACKET_TOO_BIG, 0, mtu, src, dst, orig, origOff, origLen);
}
