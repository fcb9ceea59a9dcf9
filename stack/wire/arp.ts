// ARP for IPv4 over Ethernet (RFC 826). slirpd answers who-has for its gateway and DNS
// addresses and learns the guest's MAC from its requests; other hardware/protocol types
// are not ours and fail `parse`.

import { copyBytes, setU16, u16 } from "./bytes.ts";

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const ARPHRD_ETHER = 1;
const PTYPE_IPV4 = 0x0800;

/** A reusable view over one Ethernet/IPv4 ARP packet. */
export class ArpView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds and checks htype Ethernet, ptype IPv4, hlen 6, plen 4, length 28. */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    return n >= ARP_LEN && o >= 0 && o + n <= b.length &&
      u16(b, o) === ARPHRD_ETHER && u16(b, o + 2) === PTYPE_IPV4 &&
      b[o + 4] === 6 && b[o + 5] === 4;
  }
  /** ARP_REQUEST or ARP_REPLY (other values are possible: check). */
  get op(): number {
    return u16(this.b, this.o + 6);
  }
  /** Sender hardware address. */
  get shaOffset(): number {
    return this.o + 8;
  }
  /** Sender protocol (IPv4) address. */
  get spaOffset(): number {
    return this.o + 14;
  }
  /** Target hardware address (zero in requests). */
  get thaOffset(): number {
    return this.o + 18;
  }
  /** Target protocol address. */
  get tpaOffset(): number {
    return this.o + 24;
  }
}

/** Writes a 28-byte ARP packet; returns 28. MACs are 6 bytes, addresses 4 bytes. */
export function emitArp(
  b: Uint8Array,
  o: number,
  op: number,
  sha: Uint8Array,
  spa: Uint8Array,
  tha: Uint8Array,
  tpa: Uint8Array,
): number {
  setU16(b, o, ARPHRD_ETHER);
  setU16(b, o + 2, PTYPE_IPV4);
  b[o + 4] = 6;
  b[o + 5] = 4;
  setU16(b, o + 6, op);
  copyBytes(b, o + 8, sha, 0, 6);
  copyBytes(b, o + 14, spa, 0, 4);
  copyBytes(b, o + 18, tha, 0, 6);
  copyBytes(b, o + 24, tpa, 0, 4);
  return ARP_LEN;
}
