// ICMP for IPv4 (RFC 792): the gateway's echo replies and the errors slirpd sends to the
// guest (port/host unreachable when a host connect() fails, fragmentation needed).

import { copyBytes, setU16, u16 } from "./bytes.ts";
import { finish, sum } from "./checksum.ts";

export const IPPROTO_ICMP = 1;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
/** Destination unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1). */
export const ICMP_NET_UNREACH = 0;
export const ICMP_HOST_UNREACH = 1;
export const ICMP_PROT_UNREACH = 2;
export const ICMP_PORT_UNREACH = 3;
export const ICMP_FRAG_NEEDED = 4;
export const ICMP_NET_PROHIBITED = 9;
export const ICMP_HOST_PROHIBITED = 10;
export const ICMP_ADMIN_PROHIBITED = 13;
export const ICMP_HLEN = 8;

/** A reusable view over one ICMPv4 message (`n` = the IP payload length). */
export class Icmpv4View {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds; false if shorter than the 8-byte header every ICMP message has. */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    return n >= ICMP_HLEN && o >= 0 && o + n <= b.length;
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
  /** Echo identifier (echo request/reply). */
  get echoId(): number {
    return u16(this.b, this.o + 4);
  }
  /** Echo sequence number. */
  get echoSeq(): number {
    return u16(this.b, this.o + 6);
  }
  /** Next-hop MTU of a fragmentation-needed message (RFC 1191 §4). */
  get mtu(): number {
    return u16(this.b, this.o + 6);
  }
  /** Echo data, or for errors the quoted original IP header and data. */
  get dataOffset(): number {
    return this.o + ICMP_HLEN;
  }
  get dataLen(): number {
    return this.n - ICMP_HLEN;
  }
  /** True for the error types that quote an original datagram. */
  get isError(): boolean {
    const t = this.b[this.o];
    return t === ICMP_DEST_UNREACH || t === ICMP_TIME_EXCEEDED || t === 4 || t === 5 ||
      t === 12;
  }
  /** The checksum over the whole message sums to zero (no pseudo header in ICMPv4). */
  verifyChecksum(): boolean {
    return finish(sum(this.b, this.o, this.n)) === 0;
  }
}

/** Computes and stores the checksum of the `len`-byte message at `o`. */
export function setIcmpv4Checksum(b: Uint8Array, o: number, len: number): void {
  b[o + 2] = 0;
  b[o + 3] = 0;
  setU16(b, o + 2, finish(sum(b, o, len)));
}

/**
 * Writes an echo request/reply header in front of `dataLen` data bytes already at `o + 8`
 * and checksums it; returns the message length. For a reply, pass ICMP_ECHO_REPLY with the
 * request's id and seq and its data copied (or left in place).
 */
export function emitIcmpv4Echo(
  b: Uint8Array,
  o: number,
  type: number,
  id: number,
  seq: number,
  dataLen: number,
): number {
  b[o] = type;
  b[o + 1] = 0;
  setU16(b, o + 4, id);
  setU16(b, o + 6, seq);
  setIcmpv4Checksum(b, o, ICMP_HLEN + dataLen);
  return ICMP_HLEN + dataLen;
}

/** `emitIcmpv4Echo` with ICMP_ECHO_REPLY. */
export function emitIcmpv4EchoReply(
  b: Uint8Array,
  o: number,
  id: number,
  seq: number,
  dataLen: number,
): number {
  return emitIcmpv4Echo(b, o, ICMP_ECHO_REPLY, id, seq, dataLen);
}

/**
 * Writes an ICMP error quoting the offending datagram `orig[origOff, origOff+origLen)`: its
 * IP header plus the first `maxData` bytes of its payload (RFC 792 asks for 8, enough for
 * the sender to find the socket by ports; RFC 1812 §4.3.2.3 allows up to a 576-byte error,
 * which is what Linux sends: maxData 576 - 20 - 8 - header length). `rest` is the second
 * 32-bit word (MTU for ICMP_FRAG_NEEDED, RFC 1191 §4). Returns the message length, 0 if
 * `orig` holds no valid IPv4 header.
 */
export function emitIcmpv4Error(
  b: Uint8Array,
  o: number,
  type: number,
  code: number,
  rest: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  maxData = 8,
): number {
  if (origLen < 20 || orig[origOff] >> 4 !== 4) return 0;
  const hl = (orig[origOff] & 15) << 2;
  if (hl < 20 || hl > origLen) return 0;
  const quote = Math.min(origLen, hl + maxData);
  b[o] = type;
  b[o + 1] = code;
  setU16(b, o + 4, rest >>> 16);
  setU16(b, o + 6, rest & 0xffff);
  copyBytes(b, o + ICMP_HLEN, orig, origOff, quote);
  setIcmpv4Checksum(b, o, ICMP_HLEN + quote);
  return ICMP_HLEN + quote;
}

/** Destination unreachable (code: ICMP_PORT_UNREACH, ...; `mtu` for ICMP_FRAG_NEEDED). */
export function emitIcmpv4Unreachable(
  b: Uint8Array,
  o: number,
  code: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  mtu = 0,
  maxData = 8,
): number {
  return emitIcmpv4Error(
    b,
    o,
    ICMP_DEST_UNREACH,
    code,
    mtu & 0xffff,
    orig,
    origOff,
    origLen,
    maxData,
  );
}
