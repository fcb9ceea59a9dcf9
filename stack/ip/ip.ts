// The network layer: validate IPv4/IPv6 packets from the guest, fill the reused PacketMeta and
// hand the packet to its transport. slirpd terminates everything it accepts (it is the far
// end of every flow), so there is no forwarding here and TTLs are not decremented.

import { Ipv4View } from "../wire/ipv4.ts";
import { Ipv6View } from "../wire/ipv6.ts";
import type { Counters } from "../base/counters.ts";
import { PacketMeta } from "./meta.ts";
import { GuestSources } from "./source.ts";
import { u16 } from "../wire/bytes.ts";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from "../base/names.ts";

/** A transport protocol's entry point; `m` is valid only during the call. */
export interface Transport {
  input(m: PacketMeta): void;
}

export interface Transports {
  icmp4?: Transport;
  icmp6?: Transport;
  tcp?: Transport;
  udp?: Transport;
}

/** Takes IP fragments (stack/ip/reasm.ts); whole packets come back through `reassembled`. */
export interface FragmentSink {
  input4(v: Ipv4View): void;
  input6(v: Ipv6View): void;
}

export class Ip {
  readonly meta = new PacketMeta();
  /** A dropped TCP/UDP packet from ::1 (source.ts): the ICMPv6 error that fails it fast. */
  onLoopbackSource6: ((m: PacketMeta) => void) | null = null;
  /** Reassembly; without it fragments are dropped (counted). */
  reasm?: FragmentSink;
  readonly #v4 = new Ipv4View();
  readonly #v6 = new Ipv6View();
  /** Set per frame by the stack from the virtio-net header. */
  csumTrusted = false;
  gsoSize = 0;

  constructor(
    private readonly counters: Counters,
    private readonly transports: Transports,
    /** Which source addresses the guest may use (source.ts); none: every source (tests). */
    private readonly sources?: GuestSources,
  ) {}

  input4(b: Uint8Array, o: number, n: number): void {
    const ip = this.#v4;
    if (!ip.parse(b, o, n)) {
      this.counters.dropMalformedIp++;
      return;
    }
    if (!ip.verifyChecksum()) {
      this.counters.dropBadIpChecksum++;
      return;
    }
    const src = this.sources;
    if (src !== undefined) {
      const dhcp = ip.protocol === PROTO_UDP && !ip.isFragment && ip.payloadLen >= 4 &&
        u16(b, ip.payloadOffset + 2) === 67;
      if (!src.ok4(b, ip.srcOffset, ip.protocol, dhcp)) {
        this.counters.dropBadSource++;
        return;
      }
    }
    if (ip.isFragment) {
      if (this.reasm) this.reasm.input4(ip);
      else this.counters.dropFragment++;
      return;
    }
    const m = this.#fill(4, b, o, ip.srcOffset, ip.dstOffset, ip.protocol);
    m.l4Off = ip.payloadOffset;
    m.l4Len = ip.payloadLen;
    m.ttl = ip.ttl;
    this.#dispatch(m, m.proto === PROTO_ICMP ? this.transports.icmp4 : undefined);
  }

  input6(b: Uint8Array, o: number, n: number): void {
    const ip = this.#v6;
    if (!ip.parse(b, o, n)) {
      this.counters.dropMalformedIp++;
      return;
    }
    const src = this.sources;
    if (src !== undefined && !src.ok6(b, ip.srcOffset, ip.protocol)) {
      this.counters.dropBadSource++;
      const p = ip.protocol;
      if (
        this.onLoopbackSource6 !== null && (p === PROTO_TCP || p === PROTO_UDP) &&
        !ip.isFragment && GuestSources.loopback6(b, ip.srcOffset)
      ) {
        const m = this.#fill(6, b, o, ip.srcOffset, ip.dstOffset, p);
        m.l4Off = ip.l4Offset;
        m.l4Len = ip.l4Len;
        this.onLoopbackSource6(m);
      }
      return;
    }
    // parse walked the extension headers (bounded) to the upper layer. A Fragment header
    // with offset 0 and M clear is an atomic fragment (RFC 6946): processed as it is.
    if (ip.isFragment) {
      // RFC 7112 (RFC 8200 §4.5): a first fragment must hold the whole header chain, the
      // upper-layer header included (as Linux checks it: TCP 20, UDP 8, ICMPv6 8 bytes);
      // else a firewall that looks at first fragments only could be walked around.
      if (ip.fragOffset === 0 && ip.l4Len < upperHeaderLen(ip.protocol)) {
        this.counters.dropFragment++;
        return;
      }
      if (this.reasm) this.reasm.input6(ip);
      else this.counters.dropFragment++;
      return;
    }
    const m = this.#fill(6, b, o, ip.srcOffset, ip.dstOffset, ip.protocol);
    m.l4Off = ip.l4Offset;
    m.l4Len = ip.l4Len;
    m.ttl = ip.hopLimit;
    this.#dispatch(m, m.proto === PROTO_ICMPV6 ? this.transports.icmp6 : undefined);
  }

  /** A packet put back together by the reassembler: handled as if it had arrived whole. */
  reassembled(family: 4 | 6, b: Uint8Array, o: number, n: number): void {
    // Checksums of the fragments were never offloaded: verify the whole datagram's.
    this.csumTrusted = false;
    this.gsoSize = 0;
    if (family === 4) this.input4(b, o, n);
    else this.input6(b, o, n);
  }

  /** The one reused PacketMeta, filled with what both families share (no allocation). */
  #fill(
    family: 4 | 6,
    b: Uint8Array,
    o: number,
    srcOff: number,
    dstOff: number,
    proto: number,
  ): PacketMeta {
    const m = this.meta;
    m.family = family;
    m.b = b;
    m.ipOff = o;
    m.srcOff = srcOff;
    m.dstOff = dstOff;
    m.proto = proto;
    m.csumTrusted = this.csumTrusted;
    m.gsoSize = this.gsoSize;
    return m;
  }

  #dispatch(m: PacketMeta, icmp: Transport | undefined): void {
    const t = icmp ??
      (m.proto === PROTO_TCP
        ? this.transports.tcp
        : m.proto === PROTO_UDP
        ? this.transports.udp
        : undefined);
    if (t === undefined) {
      this.counters.dropUnhandled++;
      return;
    }
    t.input(m);
  }
}

/** Bytes of the upper-layer header a first IPv6 fragment must carry (RFC 7112). */
function upperHeaderLen(proto: number): number {
  return proto === PROTO_TCP ? 20 : proto === PROTO_UDP || proto === PROTO_ICMPV6 ? 8 : 0;
}
