// struct virtio_net_hdr (virtio spec 1.x §5.1.6, linux/virtio_net.h), the 10 bytes in front
// of every frame on a tap opened with IFF_VNET_HDR. Little-endian: the tap uses the
// virtio 1.0 (LE) layout (TUNSETVNETLE is implied on little-endian hosts).
//
// csum_start counts from the start of the Ethernet frame (after this header); the checksum
// field at csum_start + csum_offset holds the pseudo-header sum, and the rest is summed by
// whoever completes it (NEEDS_CSUM). gso_size is the MSS for GSO super-frames, hdr_len the
// length of all headers (Ethernet through TCP) that each segment repeats.

export const VNET_HDR_LEN = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

function le16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

function setLe16(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
}

/** A reusable view over one virtio_net_hdr. */
export class VnetView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds to a frame read from the tap: `n` is the whole read (header plus frame). */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    return n >= VNET_HDR_LEN && o >= 0 && o + n <= b.length;
  }
  get flags(): number {
    return this.b[this.o];
  }
  get needsCsum(): boolean {
    return (this.b[this.o] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
  }
  get dataValid(): boolean {
    return (this.b[this.o] & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
  }
  /** GSO type including the ECN bit; `gsoType & 0x7f` is the kind. */
  get gsoType(): number {
    return this.b[this.o + 1];
  }
  get hdrLen(): number {
    return le16(this.b, this.o + 2);
  }
  get gsoSize(): number {
    return le16(this.b, this.o + 4);
  }
  get csumStart(): number {
    return le16(this.b, this.o + 6);
  }
  get csumOffset(): number {
    return le16(this.b, this.o + 8);
  }
}

/** Writes a virtio_net_hdr; returns 10. */
export function emitVnet(
  b: Uint8Array,
  o: number,
  flags: number,
  gsoType: number,
  hdrLen: number,
  gsoSize: number,
  csumStart: number,
  csumOffset: number,
): number {
  b[o] = flags;
  b[o + 1] = gsoType;
  setLe16(b, o + 2, hdrLen);
  setLe16(b, o + 4, gsoSize);
  setLe16(b, o + 6, csumStart);
  setLe16(b, o + 8, csumOffset);
  return VNET_HDR_LEN;
}
