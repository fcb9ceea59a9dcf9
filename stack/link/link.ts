// The link layer: Ethernet in, ARP for the addresses slirpd owns, and the one neighbour slirpd
// has: the guest. The guest's MAC is learned from the source of its frames (the only sender on
// a tap), so no neighbour resolution is needed to answer it.

import {
  emitEthernet,
  ETH_HLEN,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  EthernetView,
} from "../wire/ethernet.ts";
import { ARP_LEN, ARP_REPLY, ARP_REQUEST, ArpView, emitArp } from "../wire/arp.ts";
import { bytesEqual } from "../wire/bytes.ts";
import type { Counters } from "../base/counters.ts";
import type { NetPlan } from "../base/netplan.ts";
import type { Tx } from "./tx.ts";

/** What the link layer hands up: the IP layer's two entry points. */
export interface IpInput {
  input4(b: Uint8Array, o: number, n: number): void;
  input6(b: Uint8Array, o: number, n: number): void;
}

export class Link {
  readonly #eth = new EthernetView();
  readonly #arp = new ArpView();
  #guestMacKnown = false;
  /**
   * More addresses to answer ARP for (remote forwards to an address in the guest's prefix:
   * the guest asks for it on the link). Set by the stack; null: only the gateway and DNS.
   */
  alsoOwns: ((family: 4 | 6, b: Uint8Array, off: number) => boolean) | null = null;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly counters: Counters,
    private readonly ip: IpInput,
  ) {}

  /** One Ethernet frame at b[o .. o+n). */
  input(b: Uint8Array, o: number, n: number): void {
    const eth = this.#eth;
    if (!eth.parse(b, o, n)) {
      this.counters.dropMalformedLink++;
      return;
    }
    // Accept frames to our MAC, broadcast (ARP) and multicast (NDP's solicited-node groups);
    // anything unicast to another MAC is not ours.
    if (!eth.isMulticastDst && !bytesEqual(b, eth.dstOffset, this.plan.mac, 0, 6)) {
      this.counters.dropNotForUs++;
      return;
    }
    this.#learn(b, eth.srcOffset);
    const payload = eth.payloadOffset;
    const len = eth.payloadLen;
    switch (eth.etherType) {
      case ETH_P_IP:
        this.ip.input4(b, payload, len);
        return;
      case ETH_P_IPV6:
        this.ip.input6(b, payload, len);
        return;
      case ETH_P_ARP:
        this.#inputArp(b, payload, len);
        return;
      default:
        this.counters.dropUnknownEthertype++;
    }
  }

  #learn(b: Uint8Array, srcOff: number): void {
    if ((b[srcOff] & 1) === 1) return; // a multicast source is bogus: do not learn it
    const mac = this.tx.guestMac;
    if (this.#guestMacKnown && bytesEqual(b, srcOff, mac, 0, 6)) return;
    mac.set(b.subarray(srcOff, srcOff + 6));
    this.#guestMacKnown = true;
  }

  /** Answers ARP requests for the gateway and DNS addresses. */
  #inputArp(b: Uint8Array, o: number, n: number): void {
    const arp = this.#arp;
    if (!arp.parse(b, o, n)) {
      this.counters.dropMalformedArp++;
      return;
    }
    if (arp.op !== ARP_REQUEST) return; // replies and gratuitous announcements: nothing to do
    const t = arp.tpaOffset;
    if (
      !bytesEqual(b, t, this.plan.gateway4, 0, 4) && !bytesEqual(b, t, this.plan.dns4, 0, 4) &&
      !(this.alsoOwns?.(4, b, t) ?? false)
    ) {
      return; // not ours (e.g. the guest's own duplicate-address probe)
    }
    // Rare (once per neighbour-cache expiry), so subarrays here are fine.
    const tx = this.tx;
    const out = tx.vnetLen;
    const sha = b.subarray(arp.shaOffset, arp.shaOffset + 6);
    emitEthernet(tx.buf, out, sha, this.plan.mac, ETH_P_ARP);
    emitArp(
      tx.buf,
      out + ETH_HLEN,
      ARP_REPLY,
      this.plan.mac,
      b.subarray(t, t + 4),
      sha,
      b.subarray(arp.spaOffset, arp.spaOffset + 4),
    );
    if (tx.sendRaw(ETH_HLEN + ARP_LEN)) this.counters.arpReplies++;
  }
}
