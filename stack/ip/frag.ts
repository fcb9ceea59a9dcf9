// Fragmentation towards the guest: a datagram from a host socket (a UDP reply, an echo reply)
// can be up to 64 KiB while the guest link has an MTU of ~1500. TCP never needs this (MSS and
// GSO), so only datagram transports come here.
//
// The transport has written its L4 header and payload into tx.buf at tx.l4Offset(family), as
// for tx.sendIp. When that fits the MTU it goes out through tx.sendIp unchanged. Otherwise:
//
//  - the L4 checksum is computed in full here (a partial checksum cannot be completed by the
//    receiver across fragments), once over the whole datagram;
//  - fragments are sent first to last, each as one frame built in place at the start of
//    tx.buf: fragment k's data is moved (copyWithin, a native memmove) down to the data
//    position of the frame, over the bytes of fragments already sent, and the Ethernet and IP
//    (+ Fragment) headers are written in front of it. Nothing is allocated.
//  - IPv6 carries a Fragment header (RFC 8200 §4.5) after the fixed header, so the datagram is
//    first moved 8 bytes up to make room for it.
//
// IPv4 fragments carry MF/offset and no DF; identifications come from a counter of our own
// (the frames tx.sendIp builds carry DF, so their identifications never meet these).

import { setU16, setU32 } from "../wire/bytes.ts";
import { finish, pseudoSum2, sum } from "../wire/checksum.ts";
import { emitEthernet, ETH_HLEN, ETH_P_IP, ETH_P_IPV6 } from "../wire/ethernet.ts";
import { IPV4_MF } from "../wire/ipv4.ts";
import { IPPROTO_FRAGMENT } from "../wire/ipv6.ts";
import type { Counters } from "../base/counters.ts";
import type { Tx } from "../link/tx.ts";
import { PROTO_ICMP, PROTO_UDP } from "../base/names.ts";

export class Fragmenter {
  #ident4 = 1;
  #ident6 = (Math.random() * 0x1_0000_0000) >>> 0;

  constructor(
    private readonly tx: Tx,
    /** slirpd's MAC (the Ethernet source). */
    private readonly mac: Uint8Array,
    private readonly counters: Counters,
  ) {}

  /**
   * Sends the `l4Len`-byte L4 message at tx.buf[tx.l4Offset(family)] from src to dst (4 or
   * 16 bytes each, at offset 0): as one frame when it fits the MTU, else as fragments.
   * false when a frame was refused by the tap (the datagram is lost, as on a real link).
   */
  send(family: 4 | 6, src: Uint8Array, dst: Uint8Array, proto: number, l4Len: number): boolean {
    const tx = this.tx;
    if (l4Len <= tx.maxL4(family)) return tx.sendIp(family, src, dst, proto, l4Len);
    // An IPv4 datagram is at most 65535 bytes with its header; IPv6's payload likewise.
    if (l4Len > (family === 4 ? 65515 : 65535)) return false;
    this.#checksum(family, src, dst, proto, l4Len);
    return family === 4 ? this.#send4(src, dst, proto, l4Len) : this.#send6(src, dst, proto, l4Len);
  }

  /** Full L4 checksum of the datagram in tx.buf (the partial form cannot span fragments). */
  #checksum(family: 4 | 6, src: Uint8Array, dst: Uint8Array, proto: number, len: number): void {
    const b = this.tx.buf;
    const l4 = this.tx.l4Offset(family);
    const at = l4 + (proto === PROTO_UDP ? 6 : 2);
    b[at] = b[at + 1] = 0;
    const ps = proto === PROTO_ICMP
      ? 0
      : pseudoSum2(src, 0, dst, 0, family === 4 ? 4 : 16, proto, len);
    let c = finish(sum(b, l4, len, ps));
    if (proto === PROTO_UDP && c === 0) c = 0xffff; // RFC 768: 0 means "no checksum"
    setU16(b, at, c);
  }

  #send4(src: Uint8Array, dst: Uint8Array, proto: number, len: number): boolean {
    const tx = this.tx;
    const b = tx.buf;
    const eth = tx.vnetLen;
    const ip = eth + ETH_HLEN;
    const data = ip + 20;
    const step = ((tx.mtu - 20) >> 3) << 3; // every fragment but the last: a multiple of 8
    const ident = this.#ident4;
    this.#ident4 = (this.#ident4 + 1) & 0xffff;
    let ok = true;
    for (let off = 0; off < len; off += step) {
      const n = len - off < step ? len - off : step;
      if (off > 0) b.copyWithin(data, data + off, data + off + n);
      emitEthernet(b, eth, tx.guestMac, this.mac, ETH_P_IP);
      b[ip] = 0x45;
      b[ip + 1] = 0;
      setU16(b, ip + 2, 20 + n);
      setU16(b, ip + 4, ident);
      setU16(b, ip + 6, (off + n < len ? IPV4_MF : 0) | (off >> 3));
      b[ip + 8] = 64;
      b[ip + 9] = proto;
      b[ip + 10] = b[ip + 11] = 0;
      for (let i = 0; i < 4; i++) {
        b[ip + 12 + i] = src[i];
        b[ip + 16 + i] = dst[i];
      }
      setU16(b, ip + 10, finish(sum(b, ip, 20)));
      if (tx.sendRaw(ETH_HLEN + 20 + n)) this.counters.fragsOut++;
      else ok = false;
    }
    return ok;
  }

  #send6(src: Uint8Array, dst: Uint8Array, proto: number, len: number): boolean {
    const tx = this.tx;
    const b = tx.buf;
    const eth = tx.vnetLen;
    const ip = eth + ETH_HLEN;
    const fh = ip + 40;
    const data = fh + 8;
    b.copyWithin(data, fh, fh + len); // room for the Fragment header
    const step = ((tx.mtu - 48) >> 3) << 3;
    const ident = this.#ident6;
    this.#ident6 = (this.#ident6 + 1) >>> 0;
    let ok = true;
    for (let off = 0; off < len; off += step) {
      const n = len - off < step ? len - off : step;
      if (off > 0) b.copyWithin(data, data + off, data + off + n);
      emitEthernet(b, eth, tx.guestMac, this.mac, ETH_P_IPV6);
      setU32(b, ip, 0x60000000);
      setU16(b, ip + 4, 8 + n);
      b[ip + 6] = IPPROTO_FRAGMENT;
      b[ip + 7] = 64;
      for (let i = 0; i < 16; i++) {
        b[ip + 8 + i] = src[i];
        b[ip + 24 + i] = dst[i];
      }
      b[fh] = proto;
      b[fh + 1] = 0;
      setU16(b, fh + 2, off | (off + n < len ? 1 : 0));
      setU32(b, fh + 4, ident);
      if (tx.sendRaw(ETH_HLEN + 48 + n)) this.counters.fragsOut++;
      else ok = false;
    }
    return ok;
  }
}
