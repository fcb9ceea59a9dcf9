// IPv6 header (RFC 8200 §3) and the walk over its extension headers (§4) to the upper-layer
// header. The walk runs inside `parse`: it is one predictable loop for the usual packet
// without extensions, and a malformed chain is a structural error like a bad length.

import { copyBytes, setU16, setU32, u16, u32 } from "./bytes.ts";

export const IPV6_HLEN = 40;
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;
export const IPV6_FRAG_HLEN = 8;

/** More extension headers than this is treated as an attack, not a packet (RFC 8504 §5.3). */
const MAX_EXT_HEADERS = 12;

/** A reusable view over one IPv6 packet, extension headers walked. */
export class Ipv6View {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;
  /** Upper-layer protocol where the walk stopped (TCP, UDP, ICMPv6, IPPROTO_NONE, ...). */
  protocol = 0;
  /** Offset of the upper-layer header (for a non-first fragment: of the fragment data). */
  l4Offset = 0;
  /** Bytes from l4Offset to the end of the IPv6 payload. */
  l4Len = 0;
  /** Offset of the Fragment header, -1 when there is none. */
  fragHeaderOffset = -1;
  /** Fragment offset in bytes (0 when not a fragment). */
  fragOffset = 0;
  /** The M (more fragments) flag. */
  fragMore = false;
  /** Fragment identification (unsigned 32 bits). */
  fragIdent = 0;
  /** Number of extension headers walked. */
  extCount = 0;

  /**
   * Binds to `b[o, o+n)` (n may include link padding) and checks version 6 and payload
   * length <= n - 40, then walks hop-by-hop (first only, §4.1), routing, destination options,
   * fragment and AH headers until an upper-layer header or No Next Header. False for a
   * truncated or malformed chain.
   */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    this.fragHeaderOffset = -1;
    this.fragOffset = 0;
    this.fragMore = false;
    this.fragIdent = 0;
    this.extCount = 0;
    if (n < IPV6_HLEN || o < 0 || o + n > b.length) return false;
    if (b[o] >> 4 !== 6) return false;
    const end = o + IPV6_HLEN + u16(b, o + 4);
    if (end > o + n) return false;
    let next = b[o + 6];
    let p = o + IPV6_HLEN;
    for (let i = 0;; i++) {
      if (
        next !== IPPROTO_HOPOPTS && next !== IPPROTO_ROUTING && next !== IPPROTO_DSTOPTS &&
        next !== IPPROTO_FRAGMENT && next !== IPPROTO_AH
      ) break;
      if (i === MAX_EXT_HEADERS) return false;
      if (next === IPPROTO_HOPOPTS && i !== 0) return false;
      if (p + 8 > end) return false;
      let len: number;
      if (next === IPPROTO_FRAGMENT) {
        if (this.fragHeaderOffset >= 0) return false; // two Fragment headers
        len = IPV6_FRAG_HLEN;
        this.fragHeaderOffset = p;
        this.fragOffset = u16(b, p + 2) & 0xfff8;
        this.fragMore = (b[p + 3] & 1) === 1;
        this.fragIdent = u32(b, p + 4);
      } else if (next === IPPROTO_AH) {
        len = (b[p + 1] + 2) << 2; // RFC 4302 §2.2: 32-bit words, minus 2
      } else {
        len = (b[p + 1] + 1) << 3; // 8-octet units, not counting the first 8
      }
      if (p + len > end) return false;
      next = b[p];
      p += len;
      this.extCount++;
      // A later fragment carries no upper-layer header, only data (§4.5).
      if (this.fragHeaderOffset >= 0 && this.fragOffset !== 0) break;
    }
    this.protocol = next;
    this.l4Offset = p;
    this.l4Len = end - p;
    return true;
  }
  get version(): number {
    return this.b[this.o] >> 4;
  }
  get trafficClass(): number {
    return (u16(this.b, this.o) >> 4) & 0xff;
  }
  get flowLabel(): number {
    return u32(this.b, this.o) & 0xfffff;
  }
  /** The Payload Length field: bytes after the fixed header, extension headers included. */
  get payloadLen(): number {
    return u16(this.b, this.o + 4);
  }
  /** Next Header of the fixed header (the first extension header, if any). */
  get nextHeader(): number {
    return this.b[this.o + 6];
  }
  get hopLimit(): number {
    return this.b[this.o + 7];
  }
  get srcOffset(): number {
    return this.o + 8;
  }
  get dstOffset(): number {
    return this.o + 24;
  }
  /** Offset right after the fixed header. */
  get payloadOffset(): number {
    return this.o + IPV6_HLEN;
  }
  /** A fragment of a larger packet (has a Fragment header with M or a non-zero offset). */
  get isFragment(): boolean {
    return this.fragHeaderOffset >= 0 && (this.fragMore || this.fragOffset !== 0);
  }
}

/** Writes a 40-byte IPv6 header; returns 40. src/dst are 16-byte arrays. */
export function emitIpv6(
  b: Uint8Array,
  o: number,
  trafficClass: number,
  flowLabel: number,
  payloadLen: number,
  nextHeader: number,
  hopLimit: number,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  setU32(b, o, (0x60000000 | ((trafficClass & 0xff) << 20) | (flowLabel & 0xfffff)) >>> 0);
  setU16(b, o + 4, payloadLen);
  b[o + 6] = nextHeader;
  b[o + 7] = hopLimit;
  copyBytes(b, o + 8, src, 0, 16);
  copyBytes(b, o + 24, dst, 0, 16);
  return IPV6_HLEN;
}

/** Writes an 8-byte Fragment header (RFC 8200 §4.5); `fragOffset` in bytes (multiple of 8). */
export function emitIpv6Fragment(
  b: Uint8Array,
  o: number,
  nextHeader: number,
  fragOffset: number,
  more: boolean,
  ident: number,
): number {
  b[o] = nextHeader;
  b[o + 1] = 0;
  setU16(b, o + 2, (fragOffset & 0xfff8) | (more ? 1 : 0));
  setU32(b, o + 4, ident);
  return IPV6_FRAG_HLEN;
}
