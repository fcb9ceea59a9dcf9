// The services slirpd itself offers on the guest link, as slirp4netns does: the DNS forwarder
// (network+3, port 53), the DHCPv4 server (port 67) and IPv6 router advertisements. This file
// builds them from plain options and hooks them in front of the UDP and ICMPv6 paths:
//
//  - UDP: the services register (family, local address, port) with a UdpServiceHost, the
//    interface of stack/udp/mod.ts's UdpStack (addLocalService/sendTo: local services come before
//    routing, never ask the firewall, and sendTo fragments what exceeds the MTU).
//  - ICMPv6: `icmp6Input(next)` is Icmp6's `next`: router solicitations go to the advertiser,
//    the rest of the ICMPv6 that is not for slirpd itself to `next`.
//  - TCP: `dnsTcpTarget` is where a guest connection to the DNS address:53 really goes.

import type { Counters } from "../base/counters.ts";
import type { Transport } from "../ip/ip.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { NetPlan } from "../base/netplan.ts";
import type { TimerWheel } from "../flow/timers.ts";
import type { Tx } from "../link/tx.ts";
import { UDP_HLEN } from "../wire/udp.ts";
import { DNS_PORT, DnsForwarder, type DnsPoller } from "./dns.ts";
import { DHCP_SERVER_PORT, DhcpServer } from "./dhcp.ts";
import { RouterAdvertiser } from "./ra.ts";

const BROADCAST4 = new Uint8Array([255, 255, 255, 255]);
/** The largest UDP payload of an IPv4 / IPv6 datagram (what a fragmenting sendTo takes). */
const MAX_UDP_PAYLOAD4 = 65507;
const MAX_UDP_PAYLOAD6 = 65527;

/** A handler of datagrams to a local service: payload at m.b[off .. off+len). */
export type UdpServiceHandler = (m: PacketMeta, payloadOff: number, payloadLen: number) => void;

/** What the services need of the UDP layer (stack/udp/mod.ts's UdpStack has it). */
export interface UdpServiceHost {
  addLocalService(
    family: 4 | 6,
    addr: Uint8Array | null,
    port: number,
    handler: UdpServiceHandler,
  ): () => void;
  sendTo(
    family: 4 | 6,
    src: Uint8Array,
    srcPort: number,
    dst: Uint8Array,
    dstPort: number,
    payload: Uint8Array,
    off?: number,
    len?: number,
  ): boolean;
}

export interface ServicesOptions {
  /** The DNS forwarder (false: --disable-dns; DHCP and RAs then name no DNS server). */
  dns: boolean;
  /** resolv.conf with the upstream servers (default /etc/resolv.conf). */
  resolvConf?: string;
  /** Per-server DNS timeout (default 2000 ms). */
  dnsTimeoutMs?: number;
  /** slirpd configured the guest's addresses itself (--configure): RAs without SLAAC. */
  configured: boolean;
  /** Send router advertisements (default true). */
  ra?: boolean;
  /** Run the DHCPv4 server (default true). */
  dhcp?: boolean;
}

export class GuestServices {
  readonly dns: DnsForwarder | null;
  readonly dhcp: DhcpServer | null;
  readonly ra: RouterAdvertiser | null;
  readonly #unregister: (() => void)[] = [];

  constructor(
    plan: NetPlan,
    tx: Tx,
    poller: DnsPoller,
    wheel: TimerWheel,
    counters: Counters,
    mtu: number,
    opts: ServicesOptions,
    log: (line: string) => void,
    /** stack/udp/mod.ts's UdpStack. */
    host: UdpServiceHost,
  ) {
    const reply = (
      f: 4 | 6,
      src: Uint8Array,
      sp: number,
      dst: Uint8Array,
      dp: number,
      len: number,
    ) => host.sendTo(f, src, sp, dst, dp, tx.buf, tx.l4Offset(f) + UDP_HLEN, len);
    this.dns = opts.dns
      ? new DnsForwarder(plan, tx, poller, wheel, reply, {
        resolvConf: opts.resolvConf,
        timeoutMs: opts.dnsTimeoutMs,
        log,
        // sendTo fragments what exceeds the guest MTU: any UDP answer fits.
        maxAnswer: (f) => (f === 4 ? MAX_UDP_PAYLOAD4 : MAX_UDP_PAYLOAD6),
      })
      : null;
    this.dhcp = opts.dhcp === false
      ? null
      : new DhcpServer(plan, tx, reply, { mtu, dns: opts.dns, log });
    this.ra = opts.ra === false ? null : new RouterAdvertiser(plan, tx, wheel, counters, {
      mtu,
      rdnss: opts.dns,
      autonomous: !opts.configured,
    });

    const dns = this.dns;
    if (dns !== null) {
      const h: UdpServiceHandler = (m, o, n) => dns.input(m, o, n);
      this.#unregister.push(host.addLocalService(4, plan.dns4, DNS_PORT, h));
      this.#unregister.push(host.addLocalService(6, plan.dns6, DNS_PORT, h));
    }
    const dhcp = this.dhcp;
    if (dhcp !== null) {
      // DISCOVER/REQUEST are broadcast; renewals are unicast to the server identifier.
      const h: UdpServiceHandler = (m, o, n) => dhcp.input(m, o, n);
      this.#unregister.push(host.addLocalService(4, BROADCAST4, DHCP_SERVER_PORT, h));
      this.#unregister.push(host.addLocalService(4, plan.gateway4, DHCP_SERVER_PORT, h));
    }
    this.ra?.start();
  }

  /**
   * dnsTcpTarget for the TCP engine: where a guest connection to dst:port must really go
   * (the upstream DNS server for the DNS address:53), or null.
   */
  dnsTcpTarget(
    family: 4 | 6,
    dst: Uint8Array,
    port: number,
  ): { family: 4 | 6; addr: Uint8Array; port: number } | null {
    return this.dns === null ? null : this.dns.dnsTcpTarget(family, dst, port);
  }

  /** Icmp6's `next`: router solicitations here, the rest to `next`. */
  icmp6Input(next?: Transport): Transport | undefined {
    if (this.ra === null) return next;
    this.ra.next = next;
    return this.ra;
  }

  /** The services' non-zero counters, for the daemon's stop line (allocates). */
  snapshot(): Record<string, Record<string, number>> {
    const nz = (o: object) => {
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(o)) if (typeof v === "number" && v !== 0) out[k] = v;
      return out;
    };
    const out: Record<string, Record<string, number>> = {};
    if (this.dns) out.dns = { ...nz(this.dns.stats), outstanding: this.dns.outstanding };
    if (this.dhcp) out.dhcp = nz(this.dhcp.stats);
    if (this.ra) out.ra = nz({ sent: this.ra.sent, solicited: this.ra.solicited });
    return out;
  }

  close(): void {
    for (const off of this.#unregister.splice(0)) off();
    this.dns?.close();
    this.ra?.close();
  }
}
