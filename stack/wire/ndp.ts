// Neighbour Discovery (RFC 4861): slirpd is the guest's router. It answers router and
// neighbour solicitations and sends router advertisements with prefix, MTU and RDNSS
// (RFC 8106) options. Messages are ICMPv6: their checksum is setIcmpv6Checksum's.
//
// RFC 4861 validity checks that need the IP header are the caller's: hop limit 255 (so the
// packet cannot have been forwarded), and no source link-layer option from "::".

import { copyBytes, setU16, setU32, u16, u32 } from "./bytes.ts";
import { setIcmpv6Checksum } from "./icmpv6.ts";

export const ND_ROUTER_SOLICIT = 133;
export const ND_ROUTER_ADVERT = 134;
export const ND_NEIGHBOR_SOLICIT = 135;
export const ND_NEIGHBOR_ADVERT = 136;
export const ND_REDIRECT = 137;
export const ND_OPT_SOURCE_LINKADDR = 1;
export const ND_OPT_TARGET_LINKADDR = 2;
export const ND_OPT_PREFIX_INFORMATION = 3;
export const ND_OPT_REDIRECTED_HEADER = 4;
export const ND_OPT_MTU = 5;
/** DAD nonce (RFC 7527 §4): Linux puts one in its DAD solicitations. */
export const ND_OPT_NONCE = 14;
export const ND_OPT_RDNSS = 25;
export const ND_OPT_DNSSL = 31;
/** NA flags (byte 4). */
export const ND_NA_FLAG_ROUTER = 0x80;
export const ND_NA_FLAG_SOLICITED = 0x40;
export const ND_NA_FLAG_OVERRIDE = 0x20;
/** RA flags (byte 5). */
export const ND_RA_FLAG_MANAGED = 0x80;
export const ND_RA_FLAG_OTHER = 0x40;
/** Prefix information flags. */
export const ND_OPT_PI_FLAG_ONLINK = 0x80;
export const ND_OPT_PI_FLAG_AUTO = 0x40;
/** Hop limit every ND message must arrive with (RFC 4861 §6.1, §7.1). */
export const NDP_HOP_LIMIT = 255;

/** Where the options start, by message type; 0 for types that are not ND. */
function optionsStart(type: number): number {
  switch (type) {
    case ND_ROUTER_SOLICIT:
      return 8;
    case ND_ROUTER_ADVERT:
      return 16;
    case ND_NEIGHBOR_SOLICIT:
    case ND_NEIGHBOR_ADVERT:
      return 24;
    case ND_REDIRECT:
      return 40;
  }
  return 0;
}

/**
 * Walks ND options without allocating: `reset` over an options area, then `while (it.next())`
 * reading `type`, `offset`, `len` and the typed getters. `next` returns false at the end and
 * on a malformed option (length zero or past the end), which sets `error`.
 */
export class NdpOptionIter {
  b: Uint8Array = new Uint8Array(0);
  /** Option type of the current option. */
  type = 0;
  /** Offset of the current option's type byte. */
  offset = 0;
  /** Length of the current option in bytes (the field is in 8-byte units). */
  len = 0;
  /** The walk stopped at a zero-length or overrunning option. */
  error = false;
  private p = 0;
  private end = 0;

  reset(b: Uint8Array, o: number, n: number): void {
    this.b = b;
    this.p = o;
    this.end = o + n;
    this.error = false;
    this.type = 0;
    this.offset = 0;
    this.len = 0;
  }
  next(): boolean {
    if (this.p >= this.end) return false;
    if (this.p + 2 > this.end) {
      this.error = true;
      return false;
    }
    const len = this.b[this.p + 1] << 3;
    // RFC 4861 §4.6: a zero length option makes the whole packet invalid.
    if (len === 0 || this.p + len > this.end) {
      this.error = true;
      this.p = this.end;
      return false;
    }
    this.type = this.b[this.p];
    this.offset = this.p;
    this.len = len;
    this.p += len;
    return true;
  }
  /** The current option has the length its type requires (unknown types: always). */
  get wellFormed(): boolean {
    switch (this.type) {
      case ND_OPT_SOURCE_LINKADDR:
      case ND_OPT_TARGET_LINKADDR:
        return this.len >= 8;
      case ND_OPT_PREFIX_INFORMATION:
        return this.len === 32;
      case ND_OPT_MTU:
        return this.len === 8;
      case ND_OPT_RDNSS: // RFC 8106 §5.1: 1 + 2 * addresses, at least one address
        return this.len >= 24 && ((this.len >> 3) & 1) === 1;
    }
    return true;
  }
  /** Source/target link-layer option: offset of the 6-byte MAC (RFC 2464 §6). */
  get linkAddrOffset(): number {
    return this.offset + 2;
  }
  /** Prefix information (RFC 4861 §4.6.2). */
  get prefixLen(): number {
    return this.b[this.offset + 2];
  }
  get prefixFlags(): number {
    return this.b[this.offset + 3];
  }
  get validLifetime(): number {
    return u32(this.b, this.offset + 4);
  }
  get preferredLifetime(): number {
    return u32(this.b, this.offset + 8);
  }
  get prefixOffset(): number {
    return this.offset + 16;
  }
  /** MTU option value (§4.6.4). */
  get mtu(): number {
    return u32(this.b, this.offset + 4);
  }
  /** RDNSS lifetime in seconds (RFC 8106 §5.1). */
  get rdnssLifetime(): number {
    return u32(this.b, this.offset + 4);
  }
  get rdnssCount(): number {
    return (this.len - 8) >> 4;
  }
  rdnssAddrOffset(i: number): number {
    return this.offset + 8 + 16 * i;
  }
}

/**
 * A reusable view over one ND message (RS, RA, NS, NA, redirect) starting at its ICMPv6
 * header. `parse` checks type, code 0, the minimum length and that every option is
 * well-delimited (RFC 4861 §6.1.1, §7.1.1); it records the first link-layer address options
 * and the MTU option.
 */
export class NdpView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;
  optionsOffset = 0;
  optionsLen = 0;
  /** Offset of the MAC in the source link-layer address option, -1 if absent. */
  srcLinkAddrOffset = -1;
  /** Offset of the MAC in the target link-layer address option, -1 if absent. */
  tgtLinkAddrOffset = -1;
  /** MTU option value, -1 if absent. */
  mtuOption = -1;
  private it = new NdpOptionIter();

  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    this.srcLinkAddrOffset = -1;
    this.tgtLinkAddrOffset = -1;
    this.mtuOption = -1;
    if (n < 8 || o < 0 || o + n > b.length || b[o + 1] !== 0) return false;
    const start = optionsStart(b[o]);
    if (start === 0 || n < start) return false;
    this.optionsOffset = o + start;
    this.optionsLen = n - start;
    const it = this.it;
    it.reset(b, this.optionsOffset, this.optionsLen);
    while (it.next()) {
      if (!it.wellFormed) continue; // ignored, like an unknown option
      if (it.type === ND_OPT_SOURCE_LINKADDR && this.srcLinkAddrOffset < 0) {
        this.srcLinkAddrOffset = it.linkAddrOffset;
      } else if (it.type === ND_OPT_TARGET_LINKADDR && this.tgtLinkAddrOffset < 0) {
        this.tgtLinkAddrOffset = it.linkAddrOffset;
      } else if (it.type === ND_OPT_MTU && this.mtuOption < 0) {
        this.mtuOption = it.mtu;
      }
    }
    return !it.error;
  }
  get type(): number {
    return this.b[this.o];
  }
  /** Target address of an NS, NA or redirect. */
  get targetOffset(): number {
    return this.o + 8;
  }
  /** Destination address of a redirect. */
  get redirectDstOffset(): number {
    return this.o + 24;
  }
  /** NA flags byte (ND_NA_FLAG_*). */
  get naFlags(): number {
    return this.b[this.o + 4];
  }
  get router(): boolean {
    return (this.b[this.o + 4] & ND_NA_FLAG_ROUTER) !== 0;
  }
  get solicited(): boolean {
    return (this.b[this.o + 4] & ND_NA_FLAG_SOLICITED) !== 0;
  }
  get override(): boolean {
    return (this.b[this.o + 4] & ND_NA_FLAG_OVERRIDE) !== 0;
  }
  /** RA: current hop limit, flags (ND_RA_FLAG_*), lifetimes and timers. */
  get curHopLimit(): number {
    return this.b[this.o + 4];
  }
  get raFlags(): number {
    return this.b[this.o + 5];
  }
  get routerLifetime(): number {
    return u16(this.b, this.o + 6);
  }
  get reachableTime(): number {
    return u32(this.b, this.o + 8);
  }
  get retransTimer(): number {
    return u32(this.b, this.o + 12);
  }
  /** Points `it` at this message's options. */
  options(it: NdpOptionIter): NdpOptionIter {
    it.reset(this.b, this.optionsOffset, this.optionsLen);
    return it;
  }
}

/** Source/target link-layer address option (8 bytes, Ethernet). */
export function writeLinkAddrOption(
  b: Uint8Array,
  o: number,
  type: number,
  mac: Uint8Array,
): number {
  b[o] = type;
  b[o + 1] = 1;
  copyBytes(b, o + 2, mac, 0, 6);
  return 8;
}

/** Prefix information option (32 bytes). `prefix` is 16 bytes. */
export function writePrefixOption(
  b: Uint8Array,
  o: number,
  prefix: Uint8Array,
  prefixLen: number,
  flags: number,
  validLifetime: number,
  preferredLifetime: number,
): number {
  b[o] = ND_OPT_PREFIX_INFORMATION;
  b[o + 1] = 4;
  b[o + 2] = prefixLen;
  b[o + 3] = flags;
  setU32(b, o + 4, validLifetime);
  setU32(b, o + 8, preferredLifetime);
  setU32(b, o + 12, 0);
  copyBytes(b, o + 16, prefix, 0, 16);
  return 32;
}

/** MTU option (8 bytes). */
export function writeMtuOption(b: Uint8Array, o: number, mtu: number): number {
  b[o] = ND_OPT_MTU;
  b[o + 1] = 1;
  setU16(b, o + 2, 0);
  setU32(b, o + 4, mtu);
  return 8;
}

/** RDNSS option (RFC 8106 §5.1) for `addrs`: 16 bytes per server, at least one. */
export function writeRdnssOption(
  b: Uint8Array,
  o: number,
  lifetime: number,
  addrs: Uint8Array,
): number {
  const count = addrs.length >> 4;
  b[o] = ND_OPT_RDNSS;
  b[o + 1] = 1 + 2 * count;
  setU16(b, o + 2, 0);
  setU32(b, o + 4, lifetime);
  copyBytes(b, o + 8, addrs, 0, 16 * count);
  return 8 + 16 * count;
}

/** Router solicitation, with a source link-layer option unless `srcMac` is null. */
export function emitRs(
  b: Uint8Array,
  o: number,
  srcMac: Uint8Array | null,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  b[o] = ND_ROUTER_SOLICIT;
  b[o + 1] = 0;
  setU32(b, o + 4, 0);
  let n = 8;
  if (srcMac) n += writeLinkAddrOption(b, o + n, ND_OPT_SOURCE_LINKADDR, srcMac);
  setIcmpv6Checksum(b, o, n, src, dst);
  return n;
}

/** Neighbour solicitation for `target` (16 bytes); omit `srcMac` for DAD (from ::). */
export function emitNs(
  b: Uint8Array,
  o: number,
  target: Uint8Array,
  srcMac: Uint8Array | null,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  b[o] = ND_NEIGHBOR_SOLICIT;
  b[o + 1] = 0;
  setU32(b, o + 4, 0);
  copyBytes(b, o + 8, target, 0, 16);
  let n = 24;
  if (srcMac) n += writeLinkAddrOption(b, o + n, ND_OPT_SOURCE_LINKADDR, srcMac);
  setIcmpv6Checksum(b, o, n, src, dst);
  return n;
}

/** Neighbour advertisement; `flags` from ND_NA_FLAG_*; target link-layer option if given. */
export function emitNa(
  b: Uint8Array,
  o: number,
  flags: number,
  target: Uint8Array,
  tgtMac: Uint8Array | null,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  b[o] = ND_NEIGHBOR_ADVERT;
  b[o + 1] = 0;
  setU32(b, o + 4, 0);
  b[o + 4] = flags;
  copyBytes(b, o + 8, target, 0, 16);
  let n = 24;
  if (tgtMac) n += writeLinkAddrOption(b, o + n, ND_OPT_TARGET_LINKADDR, tgtMac);
  setIcmpv6Checksum(b, o, n, src, dst);
  return n;
}

/**
 * The fixed 16 bytes of a router advertisement, checksum left 0: append options with the
 * write*Option functions, then call setIcmpv6Checksum over the whole message.
 */
export function emitRaHeader(
  b: Uint8Array,
  o: number,
  curHopLimit: number,
  flags: number,
  routerLifetime: number,
  reachableTime: number,
  retransTimer: number,
): number {
  b[o] = ND_ROUTER_ADVERT;
  b[o + 1] = 0;
  setU16(b, o + 2, 0);
  b[o + 4] = curHopLimit;
  b[o + 5] = flags;
  setU16(b, o + 6, routerLifetime);
  setU32(b, o + 8, reachableTime);
  setU32(b, o + 12, retransTimer);
  return 16;
}

/** What `emitRa` advertises; absent fields give no option. */
export interface RaParams {
  curHopLimit?: number;
  flags?: number;
  /** Seconds; 0 = not a default router. */
  routerLifetime: number;
  reachableTime?: number;
  retransTimer?: number;
  srcMac?: Uint8Array;
  mtu?: number;
  /** 16 bytes; with prefixLen, lifetimes and flags (default on-link + autonomous). */
  prefix?: Uint8Array;
  prefixLen?: number;
  prefixFlags?: number;
  validLifetime?: number;
  preferredLifetime?: number;
  /** DNS servers, 16 bytes each. */
  rdnss?: Uint8Array;
  rdnssLifetime?: number;
}

/** A whole router advertisement with checksum (rare path: takes an object). */
export function emitRa(
  b: Uint8Array,
  o: number,
  p: RaParams,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  let n = emitRaHeader(
    b,
    o,
    p.curHopLimit ?? 64,
    p.flags ?? 0,
    p.routerLifetime,
    p.reachableTime ?? 0,
    p.retransTimer ?? 0,
  );
  if (p.srcMac) n += writeLinkAddrOption(b, o + n, ND_OPT_SOURCE_LINKADDR, p.srcMac);
  if (p.mtu) n += writeMtuOption(b, o + n, p.mtu);
  if (p.prefix) {
    n += writePrefixOption(
      b,
      o + n,
      p.prefix,
      p.prefixLen ?? 64,
      p.prefixFlags ?? (ND_OPT_PI_FLAG_ONLINK | ND_OPT_PI_FLAG_AUTO),
      p.validLifetime ?? 86400,
      p.preferredLifetime ?? 14400,
    );
  }
  if (p.rdnss && p.rdnss.length >= 16) {
    n += writeRdnssOption(b, o + n, p.rdnssLifetime ?? 3 * (p.routerLifetime || 600), p.rdnss);
  }
  setIcmpv6Checksum(b, o, n, src, dst);
  return n;
}
