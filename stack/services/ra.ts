// IPv6 router advertisements (RFC 4861 §6): slirpd is the guest's router. A guest slirpd did
// not configure gets from them, by the kernel's SLAAC alone, an address in the prefix
// (fd00::/64 by default), a default route via slirpd's link-local address, the MTU and the
// DNS server (RDNSS, RFC 8106; read by systemd-networkd/NetworkManager/rdnssd, not by the
// kernel). The guest accepts them while its forwarding is off and accept_ra is on (the
// defaults in a new netns).
//
// - Answers router solicitations that pass RFC 4861 §6.1.1 (hop limit 255, code 0, sane
//   options, no source link-layer option from ::): unicast to the solicitor, or to all
//   nodes when it has no address yet. At most one answer per MIN_SOLICITED_GAP_MS, so an RS
//   flood cannot turn into a flood of RAs.
// - Sends unsolicited RAs to ff02::1: the first MAX_INITIAL_RTR_ADVERTISEMENTS at short
//   intervals (§6.2.4: at most 16 s apart), then every 200..600 s, randomised (§6.2.4).
// - When slirpd configured the guest itself (--configure: fd00::100 and a default route via
//   fd00::2 are already there) the prefix goes out without the A flag and with router lifetime
//   0: MTU and DNS still come, but the guest gets neither a second, SLAAC address nor a second
//   default route via slirpd's link-local address (two default routes make gVisor's runsc
//   refuse the netns, and are one route too many for anyone reading `ip -6 route`).
//
// Every RA comes from plan.linkLocal6 with hop limit 255; ICMPv6 not for this module goes to
// `next` (the rest of the ICMPv6 chain).

import type { Counters } from "../base/counters.ts";
import type { Transport } from "../ip/ip.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { NetPlan } from "../base/netplan.ts";
import { Timer, type TimerWheel } from "../flow/timers.ts";
import type { Tx } from "../link/tx.ts";
import { isZero } from "../wire/bytes.ts";
import {
  emitRa,
  ND_OPT_PI_FLAG_AUTO,
  ND_OPT_PI_FLAG_ONLINK,
  ND_ROUTER_SOLICIT,
  NDP_HOP_LIMIT,
  NdpView,
  type RaParams,
} from "../wire/ndp.ts";
import { PROTO_ICMPV6 } from "../base/names.ts";

/** RFC 4861 §10 router constants. */
export const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
export const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
export const MIN_RTR_ADV_INTERVAL_MS = 200_000;
export const MAX_RTR_ADV_INTERVAL_MS = 600_000;
/** Router lifetime: 3 × MaxRtrAdvInterval (RFC 4861 §6.2.1 AdvDefaultLifetime default). */
export const ROUTER_LIFETIME_S = 1800;
/** Prefix lifetimes: RFC 4861 §6.2.1 defaults (libslirp uses the same). */
export const VALID_LIFETIME_S = 86400;
export const PREFERRED_LIFETIME_S = 14400;
/** RDNSS lifetime: RFC 8106 §5.1 suggests at least 3 × MaxRtrAdvInterval. */
export const RDNSS_LIFETIME_S = 1800;
const MIN_SOLICITED_GAP_MS = 200;

const ALL_NODES = new Uint8Array([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

export interface RaOptions {
  /** Link MTU advertised in the MTU option. */
  mtu: number;
  /** Advertise the DNS address (RDNSS); false with --disable-dns. */
  rdnss: boolean;
  /** Set the prefix's A flag (SLAAC); false when slirpd configured the guest itself. */
  autonomous: boolean;
  now?: () => number;
}

export class RouterAdvertiser implements Transport {
  /** RAs sent (solicited and not), solicitations answered, solicitations dropped. */
  sent = 0;
  solicited = 0;
  dropInvalid = 0;
  readonly #params: RaParams;
  readonly #view = new NdpView();
  readonly #timer: Timer;
  readonly #dst = new Uint8Array(16);
  readonly #now: () => number;
  #initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  #lastSolicited = -Infinity;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly wheel: TimerWheel,
    private readonly counters: Counters,
    opts: RaOptions,
    /** The rest of the ICMPv6 chain (routed echo, ...); undefined = drop. */
    public next?: Transport,
  ) {
    this.#now = opts.now ?? (() => performance.now());
    // Linux's SLAAC only forms addresses from /64 prefixes (Ethernet interface ids).
    const auto = opts.autonomous && plan.prefixLen6 === 64;
    this.#params = {
      curHopLimit: 64,
      routerLifetime: opts.autonomous ? ROUTER_LIFETIME_S : 0,
      srcMac: plan.mac,
      mtu: opts.mtu,
      prefix: plan.prefix6,
      prefixLen: plan.prefixLen6,
      prefixFlags: ND_OPT_PI_FLAG_ONLINK | (auto ? ND_OPT_PI_FLAG_AUTO : 0),
      validLifetime: VALID_LIFETIME_S,
      preferredLifetime: PREFERRED_LIFETIME_S,
      rdnss: opts.rdnss ? plan.dns6 : undefined,
      rdnssLifetime: RDNSS_LIFETIME_S,
    };
    this.#timer = new Timer(() => this.#periodic());
  }

  /** Starts the unsolicited advertisements (the first one goes out at once). */
  start(): void {
    this.wheel.arm(this.#timer, 0);
  }

  /** Stops them (shutdown). */
  close(): void {
    this.wheel.cancel(this.#timer);
  }

  /** ICMPv6 that Icmp6 did not handle (checksum already verified there). */
  input(m: PacketMeta): void {
    if (m.b[m.l4Off] !== ND_ROUTER_SOLICIT) {
      if (this.next) this.next.input(m);
      else this.counters.dropUnhandled++;
      return;
    }
    const v = this.#view;
    // §6.1.1: hop limit 255 (not forwarded), code 0 and well-delimited options (parse),
    // and no source link-layer address option from the unspecified address.
    const fromUnspecified = isZero(m.b, m.srcOff, 16);
    if (
      m.ttl !== NDP_HOP_LIMIT || !v.parse(m.b, m.l4Off, m.l4Len) ||
      (fromUnspecified && v.srcLinkAddrOffset >= 0)
    ) {
      this.dropInvalid++;
      this.counters.dropMalformedL4++;
      return;
    }
    const now = this.#now();
    if (now - this.#lastSolicited < MIN_SOLICITED_GAP_MS) return;
    this.#lastSolicited = now;
    this.solicited++;
    if (fromUnspecified) this.#dst.set(ALL_NODES);
    else this.#dst.set(m.b.subarray(m.srcOff, m.srcOff + 16));
    this.#send(this.#dst);
  }

  /** Sends one RA to `dst` (16 bytes). */
  #send(dst: Uint8Array): void {
    const tx = this.tx;
    const o = tx.l4Offset(6);
    const n = emitRa(tx.buf, o, this.#params, this.plan.linkLocal6, dst);
    if (tx.sendIpAt(6, this.plan.linkLocal6, 0, dst, 0, PROTO_ICMPV6, n, 0, NDP_HOP_LIMIT)) {
      this.sent++;
    }
  }

  #periodic(): void {
    this.#send(ALL_NODES);
    let next: number;
    if (this.#initialLeft > 1) {
      this.#initialLeft--;
      // Early ones close together: a guest that comes up just after slirpd (its link
      // still down at the first one) gets configured without having to solicit.
      next = MAX_INITIAL_RTR_ADVERT_INTERVAL_MS / 4 + Math.random() * 1000;
    } else {
      next = MIN_RTR_ADV_INTERVAL_MS +
        Math.random() * (MAX_RTR_ADV_INTERVAL_MS - MIN_RTR_ADV_INTERVAL_MS);
    }
    this.wheel.arm(this.#timer, next);
  }
}
