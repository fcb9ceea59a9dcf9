// The one path frames take to the guest. A transport writes its L4 header and payload into
// `buf` at `l4Offset(family)`; `sendIp` puts the IP header, the Ethernet header and (with
// IFF_VNET_HDR) the virtio-net header in front, fills the L4 checksum, and does one sync
// write() to the tap. One buffer, reused for every frame: nothing is allocated per frame.
//
// Checksums: with the vnet header, TCP and UDP go out CHECKSUM_PARTIAL (NEEDS_CSUM with
// csum_start/csum_offset and the pseudo-header sum in the field), as virtio devices do; the
// guest kernel trusts them when it receives them and completes them if it forwards them, so
// slirpd does no per-byte work. ICMP is always summed here: ping reads the checksum itself.

import { finish, fold, pseudoSum2, sum } from "../wire/checksum.ts";
import { copyBytes, setU16, setU32 } from "../wire/bytes.ts";
import {
  emitVnet,
  VIRTIO_NET_HDR_F_NEEDS_CSUM as VNET_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE as VNET_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4 as VNET_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6 as VNET_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4 as VNET_GSO_UDP_L4,
} from "../wire/vnet.ts";
import type { Counters } from "../base/counters.ts";
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP } from "../base/names.ts";

/** Where frames go: the tap (or a test's capture). */
export interface FrameSink {
  readonly vnetLen: 0 | 10;
  /** true when TSO/GSO frames may be written (vnet header present). */
  readonly offloaded: boolean;
  /** true when UDP_L4 GSO frames (USO) may be written too (ffi/tap.ts: Linux 6.2+). */
  readonly uso?: boolean;
  write(buf: Uint8Array, len: number): boolean;
}

/** -pcap: sees every frame that crossed the link (Ethernet, no vnet header). */
export interface FrameCapture {
  write(b: Uint8Array, o: number, n: number): boolean;
}

const ETH_LEN = 14;
export const TX_BUFFER_SIZE = 128 * 1024;

export class Tx {
  /**
   * Frames are built at the front (TX_BUFFER_SIZE); `extra` bytes behind that are a
   * transport's scratch (UDP's recvmmsg slots), so its datagrams can be moved into a frame
   * with copyWithin: native, and nothing allocated.
   */
  readonly buf: Uint8Array;
  readonly vnetLen: 0 | 10;
  /** GSO super-frames to the guest are allowed. */
  readonly gso: boolean;
  /** UDP_L4 GSO super-frames (USO) to the guest are allowed too. */
  readonly uso: boolean;
  /** The guest's MAC (learned by the link layer); broadcast until then. */
  readonly guestMac = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  #ident = 1;
  /** -pcap; null when off (the one check on the path). */
  capture: FrameCapture | null = null;

  constructor(
    private readonly sink: FrameSink,
    private readonly ourMac: Uint8Array,
    readonly mtu: number,
    private readonly counters: Counters,
    extra = 0,
  ) {
    this.buf = new Uint8Array(TX_BUFFER_SIZE + extra);
    this.vnetLen = sink.vnetLen;
    this.gso = sink.vnetLen > 0;
    this.uso = this.gso && sink.uso === true;
  }

  l4Offset(family: 4 | 6): number {
    return this.vnetLen + ETH_LEN + (family === 4 ? 20 : 40);
  }

  /** The largest L4 length that fits the MTU in one plain (non-GSO) frame. */
  maxL4(family: 4 | 6): number {
    return this.mtu - (family === 4 ? 20 : 40);
  }

  /**
   * Sends a frame the caller built whole at buf[vnetLen .. vnetLen+ethLen) (ARP): only the
   * (empty) virtio-net header is put in front.
   */
  sendRaw(ethLen: number): boolean {
    if (this.vnetLen > 0) emitVnet(this.buf, 0, 0, VNET_GSO_NONE, 0, 0, 0, 0);
    return this.#write(this.vnetLen + ethLen);
  }

  /** Sends buf[l4Offset .. +l4Len) to the guest; see the file comment for checksums. */
  sendIp(
    family: 4 | 6,
    src: Uint8Array,
    dst: Uint8Array,
    proto: number,
    l4Len: number,
    gsoSize = 0,
  ): boolean {
    return this.sendIpAt(family, src, 0, dst, 0, proto, l4Len, gsoSize);
  }

  /** As sendIp, with the addresses read in place (e.g. from a received packet). */
  sendIpAt(
    family: 4 | 6,
    src: Uint8Array,
    srcOff: number,
    dst: Uint8Array,
    dstOff: number,
    proto: number,
    l4Len: number,
    gsoSize = 0,
    ttl = 64,
  ): boolean {
    const b = this.buf;
    const eth = this.vnetLen;
    const ip = eth + ETH_LEN;
    const ipLen = family === 4 ? 20 : 40;
    const l4 = ip + ipLen;
    const alen = family === 4 ? 4 : 16;

    // Ethernet.
    b.set(this.guestMac, eth);
    b.set(this.ourMac, eth + 6);
    setU16(b, eth + 12, family === 4 ? 0x0800 : 0x86dd);

    // IP header.
    if (family === 4) {
      b[ip] = 0x45;
      b[ip + 1] = 0;
      setU16(b, ip + 2, ipLen + l4Len);
      setU16(b, ip + 4, this.#ident);
      this.#ident = (this.#ident + 1) & 0xffff;
      setU16(b, ip + 6, 0x4000); // DF: slirpd never fragments what it builds (PMTU is the guest's)
      b[ip + 8] = ttl;
      b[ip + 9] = proto;
      setU16(b, ip + 10, 0);
      copyBytes(b, ip + 12, src, srcOff, 4); // no subarray: nothing allocated per frame
      copyBytes(b, ip + 16, dst, dstOff, 4);
      setU16(b, ip + 10, finish(sum(b, ip, 20)));
    } else {
      setU32(b, ip, 0x60000000);
      setU16(b, ip + 4, l4Len);
      b[ip + 6] = proto;
      b[ip + 7] = ttl;
      copyBytes(b, ip + 8, src, srcOff, 16);
      copyBytes(b, ip + 24, dst, dstOff, 16);
    }

    // L4 checksum.
    const csumOff = proto === PROTO_TCP ? 16 : proto === PROTO_UDP ? 6 : 2;
    const pseudo = proto === PROTO_ICMP
      ? 0
      : pseudoSum2(src, srcOff, dst, dstOff, alen, proto, l4Len);
    setU16(b, l4 + csumOff, 0);
    const partial = this.vnetLen > 0 && (proto === PROTO_TCP || proto === PROTO_UDP);
    if (partial) {
      // The guest completes or trusts it: only the folded pseudo-header sum goes in.
      setU16(b, l4 + csumOff, fold(pseudo));
    } else {
      let c = finish(sum(b, l4, l4Len, pseudo));
      if (proto === PROTO_UDP && c === 0) c = 0xffff; // RFC 768: 0 means "no checksum"
      setU16(b, l4 + csumOff, c);
    }

    // virtio-net header.
    if (this.vnetLen > 0) {
      let gsoType = VNET_GSO_NONE;
      let hdrLen = 0;
      if (gsoSize > 0 && proto === PROTO_TCP && l4Len - ((b[l4 + 12] >> 4) << 2) > gsoSize) {
        gsoType = family === 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
        hdrLen = ETH_LEN + ipLen + ((b[l4 + 12] >> 4) << 2);
      } else if (gsoSize > 0 && proto === PROTO_UDP && this.uso && l4Len - 8 > gsoSize) {
        // USO: the guest's kernel cuts the payload into datagrams of gsoSize (the last one
        // may be shorter), each with this UDP header, its length and checksum fixed up.
        gsoType = VNET_GSO_UDP_L4;
        hdrLen = ETH_LEN + ipLen + 8;
      } else {
        gsoSize = 0;
      }
      emitVnet(
        b,
        0,
        partial ? VNET_NEEDS_CSUM : 0,
        gsoType,
        hdrLen,
        gsoSize,
        partial ? ETH_LEN + ipLen : 0,
        partial ? csumOff : 0,
      );
    }

    return this.#write(l4 + l4Len);
  }

  #write(len: number): boolean {
    if (this.sink.write(this.buf, len)) {
      this.counters.framesOut++;
      this.counters.bytesOut += len - this.vnetLen;
      if (this.capture !== null) this.capture.write(this.buf, this.vnetLen, len - this.vnetLen);
      return true;
    }
    this.counters.txDrops++;
    return false;
  }
}
