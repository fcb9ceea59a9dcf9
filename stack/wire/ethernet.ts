// Ethernet II header (IEEE 802.3 with an EtherType): what the tap hands us after the optional
// virtio-net header. No VLAN tags: the guest's tap is a single untagged link.

import { copyBytes, setU16, u16 } from "./bytes.ts";

export const ETH_HLEN = 14;
export const ETH_ALEN = 6;
export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;

/** ff:ff:ff:ff:ff:ff */
export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** A reusable view over one Ethernet frame. */
export class EthernetView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds to the frame `b[o, o+n)`; false if it cannot hold a header. */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    return n >= ETH_HLEN && o >= 0 && o + n <= b.length;
  }
  get dstOffset(): number {
    return this.o;
  }
  get srcOffset(): number {
    return this.o + 6;
  }
  /** EtherType; values below 0x0600 are an 802.3 length instead (not for us). */
  get etherType(): number {
    return u16(this.b, this.o + 12);
  }
  /** Group bit of the destination (broadcast or multicast, IEEE 802 §8.2). */
  get isMulticastDst(): boolean {
    return (this.b[this.o] & 1) === 1;
  }
  get payloadOffset(): number {
    return this.o + ETH_HLEN;
  }
  get payloadLen(): number {
    return this.n - ETH_HLEN;
  }
}

/** Writes a 14-byte Ethernet header; returns 14. MACs are 6-byte arrays. */
export function emitEthernet(
  b: Uint8Array,
  o: number,
  dstMac: Uint8Array,
  srcMac: Uint8Array,
  type: number,
): number {
  copyBytes(b, o, dstMac, 0, 6);
  copyBytes(b, o + 6, srcMac, 0, 6);
  setU16(b, o + 12, type);
  return ETH_HLEN;
}

/**
 * Writes the Ethernet multicast MAC for the IPv6 multicast address at `ip[ipOff]`:
 * 33:33 followed by its last 32 bits (RFC 2464 §7).
 */
export function ipv6MulticastMac(out: Uint8Array, o: number, ip: Uint8Array, ipOff: number): void {
  out[o] = 0x33;
  out[o + 1] = 0x33;
  copyBytes(out, o + 2, ip, ipOff + 12, 4);
}
