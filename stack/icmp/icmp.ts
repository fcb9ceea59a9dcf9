// ICMP that slirpd answers itself, as the gateway: echo to the addresses it owns (10.0.2.2,
// 10.0.2.3, fd00::2, fd00::3, its link-local) and IPv6 neighbour solicitations for them.
// Echo to other destinations and router solicitations belong to later layers (`next`).

import { bytesEqual, setU16 } from "../wire/bytes.ts";
import { finish, pseudoSum, sum } from "../wire/checksum.ts";
import type { Counters } from "../base/counters.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { NetPlan } from "../base/netplan.ts";
import type { Transport } from "../ip/ip.ts";
import type { Tx } from "../link/tx.ts";
import type { Fragmenter } from "../ip/frag.ts";
import { emitIcmpv6Unreachable, ICMPV6_POLICY_FAIL } from "../wire/icmpv6.ts";
import { PROTO_ICMPV6 } from "../base/names.ts";

const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const ICMP6_ECHO_REQUEST = 128;
const ICMP6_ECHO_REPLY = 129;
const ICMP6_NEIGHBOR_SOLICIT = 135;
const ICMP6_NEIGHBOR_ADVERT = 136;
const NDP_OPT_TARGET_LLADDR = 2;
const NA_ROUTER = 0x80;
const NA_SOLICITED = 0x40;
const NA_OVERRIDE = 0x20;

const ALL_NODES = new Uint8Array([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** Which of slirpd's own addresses `b[o..]` is, if any. */
function owns4(plan: NetPlan, b: Uint8Array, o: number): boolean {
  return bytesEqual(b, o, plan.gateway4, 0, 4) || bytesEqual(b, o, plan.dns4, 0, 4);
}

function owns6(plan: NetPlan, b: Uint8Array, o: number): boolean {
  return bytesEqual(b, o, plan.gateway6, 0, 16) || bytesEqual(b, o, plan.dns6, 0, 16) ||
    bytesEqual(b, o, plan.linkLocal6, 0, 16);
}

/**
 * Sends the echo reply written at tx.l4Offset (the request's addresses swapped): as one frame,
 * or, larger than the MTU (the guest's request came in fragments), in fragments as routed
 * replies are (stack/ip/frag.ts), never as one oversized frame.
 */
function echoReply(tx: Tx, frag: Fragmenter | null, m: PacketMeta, proto: number): boolean {
  const f = m.family, b = m.b;
  if (frag === null || m.l4Len <= tx.maxL4(f)) {
    return tx.sendIpAt(f, b, m.dstOff, b, m.srcOff, proto, m.l4Len);
  }
  const n = f === 4 ? 4 : 16; // (copies: rare, and the fragments overwrite tx.buf)
  return frag.send(
    f,
    b.slice(m.dstOff, m.dstOff + n),
    b.slice(m.srcOff, m.srcOff + n),
    proto,
    m.l4Len,
  );
}

export class Icmp4 implements Transport {
  /** Splits replies larger than the MTU (a big ping of the gateway); set by the Stack. */
  frag: Fragmenter | null = null;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly counters: Counters,
    /** Who handles what is not for slirpd itself (routed echo); undefined = drop. */
    public next?: Transport,
  ) {}

  input(m: PacketMeta): void {
    const b = m.b;
    if (m.l4Len < 8) {
      this.counters.dropMalformedL4++;
      return;
    }
    if (!m.csumTrusted && finish(sum(b, m.l4Off, m.l4Len)) !== 0) {
      this.counters.dropBadL4Checksum++;
      return;
    }
    if (!owns4(this.plan, b, m.dstOff)) {
      if (this.next) this.next.input(m);
      else this.counters.dropUnhandled++;
      return;
    }
    if (b[m.l4Off] !== ICMP_ECHO_REQUEST || b[m.l4Off + 1] !== 0) {
      this.counters.dropUnhandled++;
      return;
    }
    const tx = this.tx;
    const out = tx.l4Offset(4);
    if (m.l4Len > tx.buf.length - out) return;
    tx.buf.set(b.subarray(m.l4Off, m.l4Off + m.l4Len), out);
    tx.buf[out] = ICMP_ECHO_REPLY;
    if (echoReply(tx, this.frag, m, 1)) this.counters.echoReplies++;
  }
}

export class Icmp6 implements Transport {
  /** Splits replies larger than the MTU (a big ping of the gateway); set by the Stack. */
  frag: Fragmenter | null = null;
  /** More addresses to advertise in NDP (remote forwards in the guest's prefix); see Link. */
  alsoOwns: ((family: 4 | 6, b: Uint8Array, off: number) => boolean) | null = null;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly counters: Counters,
    public next?: Transport,
  ) {}

  /**
   * A TCP or UDP packet from ::1: what a Linux guest sends while its IPv6 address is still
   * tentative (source selection falls back to lo's ::1). The IP layer drops it (source.ts), but
   * a silent drop leaves the guest's connect() retrying for minutes, and anything addressed to
   * ::1 the guest drops itself. An ICMPv6 "source address failed policy" from slirpd's
   * link-local address to all-nodes is what it does accept: the error names the SYN, and the
   * connect() fails at once with EACCES.
   */
  refuseLoopbackSource(m: PacketMeta): void {
    const tx = this.tx;
    const quote = m.l4Off - m.ipOff + Math.min(m.l4Len, 8);
    const src = this.plan.linkLocal6;
    const n = emitIcmpv6Unreachable(
      tx.buf,
      tx.l4Offset(6),
      ICMPV6_POLICY_FAIL,
      src,
      ALL_NODES,
      m.b,
      m.ipOff,
      quote,
    );
    if (n > 0) tx.sendIp(6, src, ALL_NODES, PROTO_ICMPV6, n);
  }

  input(m: PacketMeta): void {
    const b = m.b;
    if (m.l4Len < 8) {
      this.counters.dropMalformedL4++;
      return;
    }
    if (
      !m.csumTrusted &&
      finish(sum(b, m.l4Off, m.l4Len, pseudoSum(b, m.srcOff, m.dstOff, 16, 58, m.l4Len))) !== 0
    ) {
      this.counters.dropBadL4Checksum++;
      return;
    }
    const type = b[m.l4Off];
    if (type === ICMP6_NEIGHBOR_SOLICIT) {
      this.#solicit(m);
      return;
    }
    if (type === ICMP6_ECHO_REQUEST && owns6(this.plan, b, m.dstOff)) {
      const tx = this.tx;
      const out = tx.l4Offset(6);
      if (m.l4Len > tx.buf.length - out) return;
      tx.buf.set(b.subarray(m.l4Off, m.l4Off + m.l4Len), out);
      tx.buf[out] = ICMP6_ECHO_REPLY;
      if (echoReply(tx, this.frag, m, 58)) this.counters.echoReplies++;
      return;
    }
    if (this.next) this.next.input(m);
    else this.counters.dropUnhandled++;
  }

  /** RFC 4861 7.1.1 validation, then a solicited advertisement for an address we own. */
  #solicit(m: PacketMeta): void {
    const b = m.b;
    const o = m.l4Off;
    if (m.ttl !== 255 || b[o + 1] !== 0 || m.l4Len < 24 || b[o + 8] === 0xff) {
      this.counters.dropMalformedL4++;
      return;
    }
    const target = o + 8;
    if (!owns6(this.plan, b, target) && !(this.alsoOwns?.(6, b, target) ?? false)) {
      return; // e.g. the guest's own DAD probe
    }
    const unspecified = b.subarray(m.srcOff, m.srcOff + 16).every((x) => x === 0);
    const tx = this.tx;
    const out = tx.l4Offset(6);
    const t = tx.buf;
    t[out] = ICMP6_NEIGHBOR_ADVERT;
    t[out + 1] = 0;
    setU16(t, out + 2, 0);
    const isRouter = !bytesEqual(b, target, this.plan.dns6, 0, 16);
    t[out + 4] = (isRouter ? NA_ROUTER : 0) | (unspecified ? 0 : NA_SOLICITED) | NA_OVERRIDE;
    t[out + 5] = t[out + 6] = t[out + 7] = 0;
    t.set(b.subarray(target, target + 16), out + 8);
    t[out + 24] = NDP_OPT_TARGET_LLADDR;
    t[out + 25] = 1; // in units of 8 bytes
    t.set(this.plan.mac, out + 26);
    // To the solicitor, or to all nodes when it has no address yet (DAD), RFC 4861 7.2.4.
    const dst = unspecified ? ALL_NODES : b;
    const dstOff = unspecified ? 0 : m.srcOff;
    if (tx.sendIpAt(6, b, target, dst, dstOff, 58, 32, 0, 255)) this.counters.ndpAdverts++;
  }
}
