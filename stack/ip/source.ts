// Which source addresses the guest may use. slirpd answers every flow to the source it came
// from, so a frame from an address the guest does not own would make slirpd talk to someone
// else: the host's loopback, a multicast group, another host (spoofing), or slirpd itself.
// Accepted sources:
//   IPv4: a unicast address of the guest network (--cidr) other than the network and
//         broadcast addresses and slirpd's own (gateway, DNS); 0.0.0.0 only for DHCP (UDP to
//         port 67), which a guest without an address yet must send from.
//   IPv6: an address of the guest network (--cidr6) or a link-local one (fe80::/10), other
//         than slirpd's own (gateway, DNS, its link-local); :: only for ICMPv6 (DAD neighbour
//         solicitations, router solicitations, MLD).
// Anything else is dropped and counted (Counters.dropBadSource). A TCP SYN from ::1 is what a
// Linux guest sends while its IPv6 address is still tentative (source selection falls back to
// lo's ::1): the IP layer answers it with an ICMPv6 error the guest does accept (see ip.ts).

import type { NetPlan } from "../base/netplan.ts";
import { PROTO_ICMPV6, PROTO_UDP } from "../base/names.ts";

export class GuestSources {
  readonly #net4: number;
  readonly #mask4: number;
  readonly #bcast4: number;
  readonly #own4: number[];
  readonly #prefix6: Uint8Array;
  readonly #len6: number;
  readonly #own6: Uint8Array[];

  constructor(plan: NetPlan) {
    const u32 = (a: Uint8Array) => ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0;
    this.#mask4 = plan.prefixLen4 === 0 ? 0 : (0xffffffff << (32 - plan.prefixLen4)) >>> 0;
    this.#net4 = (u32(plan.prefix4) & this.#mask4) >>> 0;
    this.#bcast4 = (this.#net4 | (~this.#mask4 >>> 0)) >>> 0;
    this.#own4 = [u32(plan.gateway4), u32(plan.dns4)];
    this.#prefix6 = plan.prefix6;
    this.#len6 = plan.prefixLen6;
    this.#own6 = [plan.gateway6, plan.dns6, plan.linkLocal6];
  }

  /** May the guest send from the IPv4 address at b[o]? `dstPort67`: a UDP datagram to 67. */
  ok4(b: Uint8Array, o: number, proto: number, dstPort67: boolean): boolean {
    const v = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
    if (v === 0) return proto === PROTO_UDP && dstPort67;
    if (((v & this.#mask4) >>> 0) !== this.#net4) return false;
    if (v === this.#net4 || v === this.#bcast4) return false;
    return v !== this.#own4[0] && v !== this.#own4[1];
  }

  /** May the guest send from the IPv6 address at b[o]? */
  ok6(b: Uint8Array, o: number, proto: number): boolean {
    if (b[o] === 0xfe && (b[o + 1] & 0xc0) === 0x80) return !this.#isOwn6(b, o);
    if (inPrefix(b, o, this.#prefix6, this.#len6)) return !this.#isOwn6(b, o);
    let zero = true;
    for (let i = 0; i < 16 && zero; i++) zero = b[o + i] === 0;
    return zero && proto === PROTO_ICMPV6;
  }

  /** Is the address at b[o] the IPv6 loopback ::1? */
  static loopback6(b: Uint8Array, o: number): boolean {
    for (let i = 0; i < 15; i++) if (b[o + i] !== 0) return false;
    return b[o + 15] === 1;
  }

  #isOwn6(b: Uint8Array, o: number): boolean {
    const own = this.#own6;
    for (let k = 0; k < own.length; k++) {
      const a = own[k];
      let same = true;
      for (let i = 0; i < 16 && same; i++) same = b[o + i] === a[i];
      if (same) return true;
    }
    return false;
  }
}

function inPrefix(b: Uint8Array, o: number, prefix: Uint8Array, len: number): boolean {
  const whole = len >> 3;
  for (let i = 0; i < whole; i++) if (b[o + i] !== prefix[i]) return false;
  const rest = len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[o + whole] & mask) === (prefix[whole] & mask);
}
