// Guest → host UDP, gathered per tap batch. A guest sending a stream of datagrams (QUIC, a
// VPN, iperf3 -u) hands them over one frame per tap read; consecutive datagrams of one flow
// with the same size are copied here and leave in one sendmsg with UDP_SEGMENT (Linux 4.18+,
// the host kernel cuts them into the same datagrams again): one syscall and one pass down
// the host's UDP stack for up to 64 datagrams instead of one each. A shorter datagram ends
// a batch (only the last segment may be shorter); anything else (another flow, a larger
// datagram, one above SEG_MAX, the end of the tap batch) sends what is gathered first, so
// the order within a flow is kept. Nothing is allocated per datagram.

import type { UdpFlow } from "./host.ts";

/** Largest datagram gathered: one that fits a 1500-byte IPv4 path (UDP_SEGMENT's limit is the path MTU). */
export const SEG_MAX = 1472;
/** At most this many datagrams per sendmsg (the kernel's UDP_MAX_SEGMENTS is 64 or more). */
export const SEGS_MAX = 64;
/** The gathered payload fits one UDP datagram's length field. */
export const UDP_BATCH_CAP = 65507;
const CAP = UDP_BATCH_CAP;

export class UdpBatch {
  /**
   * The gathered payloads. Given, it shares the tap read buffer's ArrayBuffer, so each copy
   * into it is one copyWithin (wire/bytes.ts copyBytes) and allocates nothing.
   */
  readonly buf: Uint8Array;
  constructor(buf?: Uint8Array) {
    if (buf !== undefined && buf.length < CAP) throw new Error(`UdpBatch: buffer below ${CAP}`);
    this.buf = buf ?? new Uint8Array(CAP);
  }
  flow: UdpFlow | null = null;
  /** Size of every segment but the last. */
  seg = 0;
  len = 0;
  count = 0;

  /** Whether (f, len) can join what is gathered; false: send that first. */
  fits(f: UdpFlow, len: number): boolean {
    return this.count === 0 ||
      (this.flow === f && len <= this.seg && this.len + len <= CAP && this.count < SEGS_MAX);
  }

  reset(): void {
    this.flow = null;
    this.count = 0;
    this.len = 0;
    this.seg = 0;
  }
}
