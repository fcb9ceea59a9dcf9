// TCP header (RFC 9293 §3.1) and options (MSS, window scale RFC 7323, SACK RFC 2018,
// timestamps RFC 7323). Options parse into a reusable TcpOptions object: nothing allocated
// per segment. Writers lay options out like Linux (tcp_options_write) so our SYNs look like
// a kernel's and the 4-byte alignment of the timestamp values is kept.

import { setU16, setU32, u16, u32 } from "./bytes.ts";
import { finish, fold, pseudoSum, pseudoSum2, sum } from "./checksum.ts";

export const IPPROTO_TCP = 6;
export const TCP_HLEN = 20;
/** Offset of the checksum in the header (virtio csum_offset). */
export const TCP_CSUM_OFFSET = 16;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WINDOW = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
/** Largest window scale shift (RFC 7323 §2.3); larger values are used as 14. */
export const TCP_MAX_WSCALE = 14;
/** Option bytes of a data segment with timestamps (NOP NOP TS). */
export const TCPOLEN_TSTAMP_ALIGNED = 12;

/** Parsed options of one segment; reuse one instance (fields reset on every parse). */
export class TcpOptions {
  /** MSS option value, 0 when absent. */
  mss = 0;
  /** Window scale shift (clamped to 14), -1 when absent. */
  wscale = -1;
  sackPermitted = false;
  hasTimestamp = false;
  tsVal = 0;
  tsEcr = 0;
  /** SACK blocks as left,right pairs: [l0, r0, l1, r1, ...], `sackCount` blocks valid. */
  readonly sackBlocks: Uint32Array = new Uint32Array(8);
  sackCount = 0;

  reset(): void {
    this.mss = 0;
    this.wscale = -1;
    this.sackPermitted = false;
    this.hasTimestamp = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    this.sackCount = 0;
  }

  /**
   * Parses the options area `b[o, o+len)`. False for a malformed area: a length byte
   * missing, below 2 or past the end, or a known option with the wrong length. Unknown
   * options are skipped; EOL ends the list (RFC 9293 §3.2).
   */
  parse(b: Uint8Array, o: number, len: number): boolean {
    this.reset();
    const end = o + len;
    let p = o;
    while (p < end) {
      const kind = b[p];
      if (kind === TCPOPT_EOL) break;
      if (kind === TCPOPT_NOP) {
        p++;
        continue;
      }
      if (p + 1 >= end) return false;
      const l = b[p + 1];
      if (l < 2 || p + l > end) return false;
      switch (kind) {
        case TCPOPT_MSS:
          if (l !== 4) return false;
          this.mss = u16(b, p + 2);
          break;
        case TCPOPT_WINDOW:
          if (l !== 3) return false;
          this.wscale = Math.min(b[p + 2], TCP_MAX_WSCALE);
          break;
        case TCPOPT_SACK_PERM:
          if (l !== 2) return false;
          this.sackPermitted = true;
          break;
        case TCPOPT_SACK: {
          // 2 + 8n bytes, n >= 1; at most 4 blocks fit in 40 option bytes.
          if (l < 10 || ((l - 2) & 7) !== 0) return false;
          const n = (l - 2) >> 3;
          for (let i = 0; i < n; i++) {
            this.sackBlocks[2 * i] = u32(b, p + 2 + 8 * i);
            this.sackBlocks[2 * i + 1] = u32(b, p + 6 + 8 * i);
          }
          this.sackCount = n;
          break;
        }
        case TCPOPT_TIMESTAMP:
          if (l !== 10) return false;
          this.hasTimestamp = true;
          this.tsVal = u32(b, p + 2);
          this.tsEcr = u32(b, p + 6);
          break;
      }
      p += l;
    }
    return true;
  }
}

/** A reusable view over one TCP segment (`n` = the IP payload length). */
export class TcpView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  n = 0;

  /** Binds and checks 20 <= header length <= n. Options are parsed by parseOptions. */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    this.n = n;
    if (n < TCP_HLEN || o < 0 || o + n > b.length) return false;
    const hl = (b[o + 12] >> 4) << 2;
    return hl >= TCP_HLEN && hl <= n;
  }
  get srcPort(): number {
    return u16(this.b, this.o);
  }
  get dstPort(): number {
    return u16(this.b, this.o + 2);
  }
  /** Sequence number, unsigned 32 bits. */
  get seq(): number {
    return u32(this.b, this.o + 4);
  }
  /** Acknowledgment number, unsigned 32 bits. */
  get ack(): number {
    return u32(this.b, this.o + 8);
  }
  /** The data offset field: header length in 32-bit words. */
  get dataOffset(): number {
    return this.b[this.o + 12] >> 4;
  }
  /** Header length in bytes, options included. */
  get headerLen(): number {
    return (this.b[this.o + 12] >> 4) << 2;
  }
  /** Flags byte: TCP_FIN | TCP_SYN | ... | TCP_CWR. */
  get flags(): number {
    return this.b[this.o + 13];
  }
  get window(): number {
    return u16(this.b, this.o + 14);
  }
  get checksum(): number {
    return u16(this.b, this.o + 16);
  }
  get urgent(): number {
    return u16(this.b, this.o + 18);
  }
  get optionsOffset(): number {
    return this.o + TCP_HLEN;
  }
  get optionsLen(): number {
    return this.headerLen - TCP_HLEN;
  }
  get payloadOffset(): number {
    return this.o + this.headerLen;
  }
  get payloadLen(): number {
    return this.n - this.headerLen;
  }
  /** Parses this segment's options into `opts`; false when they are malformed. */
  parseOptions(opts: TcpOptions): boolean {
    return opts.parse(this.b, this.o + TCP_HLEN, this.headerLen - TCP_HLEN);
  }
  /** Checksum over the `n` bytes with the pseudo header (addresses in the same buffer). */
  verifyChecksum(addrLen: 4 | 16, srcOff: number, dstOff: number): boolean {
    const ps = pseudoSum(this.b, srcOff, dstOff, addrLen, IPPROTO_TCP, this.n);
    return finish(sum(this.b, this.o, this.n, ps)) === 0;
  }
}

/**
 * Writes the 20-byte fixed header; the options (`optionsLen`, a multiple of 4) go at
 * `o + 20`, written before or after. Checksum and urgent pointer are 0. Returns the header
 * length (20 + optionsLen).
 */
export function emitTcp(
  b: Uint8Array,
  o: number,
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
  optionsLen: number,
): number {
  const hl = TCP_HLEN + optionsLen;
  setU16(b, o, srcPort);
  setU16(b, o + 2, dstPort);
  setU32(b, o + 4, seq);
  setU32(b, o + 8, ack);
  b[o + 12] = (hl >> 2) << 4;
  b[o + 13] = flags;
  setU16(b, o + 14, window);
  setU32(b, o + 16, 0); // checksum, urgent pointer
  return hl;
}

/** Options for a SYN or SYN-ACK (TcpOptions fits: mss 0 and wscale -1 mean absent). */
export interface TcpSynOptionsInit {
  mss: number;
  wscale: number;
  sackPermitted: boolean;
  hasTimestamp: boolean;
  tsVal: number;
  tsEcr: number;
}

/**
 * Writes SYN/SYN-ACK options in Linux's order and alignment: MSS, [SACK-permitted or NOP NOP]
 * timestamps, NOP NOP SACK-permitted (without timestamps), NOP window scale. Returns the
 * bytes written (a multiple of 4, at most 20).
 */
export function writeTcpOptions(b: Uint8Array, o: number, opts: TcpSynOptionsInit): number {
  let p = o;
  if (opts.mss > 0) {
    b[p] = TCPOPT_MSS;
    b[p + 1] = 4;
    setU16(b, p + 2, opts.mss);
    p += 4;
  }
  if (opts.hasTimestamp) {
    if (opts.sackPermitted) {
      b[p] = TCPOPT_SACK_PERM;
      b[p + 1] = 2;
    } else {
      b[p] = TCPOPT_NOP;
      b[p + 1] = TCPOPT_NOP;
    }
    b[p + 2] = TCPOPT_TIMESTAMP;
    b[p + 3] = 10;
    setU32(b, p + 4, opts.tsVal);
    setU32(b, p + 8, opts.tsEcr);
    p += 12;
  } else if (opts.sackPermitted) {
    b[p] = TCPOPT_NOP;
    b[p + 1] = TCPOPT_NOP;
    b[p + 2] = TCPOPT_SACK_PERM;
    b[p + 3] = 2;
    p += 4;
  }
  if (opts.wscale >= 0) {
    b[p] = TCPOPT_NOP;
    b[p + 1] = TCPOPT_WINDOW;
    b[p + 2] = 3;
    b[p + 3] = Math.min(opts.wscale, TCP_MAX_WSCALE);
    p += 4;
  }
  return p - o;
}

/** Timestamps for a data segment: NOP NOP TS(10) = 12 bytes (RFC 7323 Appendix A layout). */
export function writeTcpTimestamp(b: Uint8Array, o: number, tsVal: number, tsEcr: number): number {
  b[o] = TCPOPT_NOP;
  b[o + 1] = TCPOPT_NOP;
  b[o + 2] = TCPOPT_TIMESTAMP;
  b[o + 3] = 10;
  setU32(b, o + 4, tsVal);
  setU32(b, o + 8, tsEcr);
  return TCPOLEN_TSTAMP_ALIGNED;
}

/**
 * SACK blocks (RFC 2018): NOP NOP SACK(2 + 8n) + n left/right pairs from `blocks` (as in
 * TcpOptions.sackBlocks). n is clamped to 4 (3 fit next to timestamps). Returns 4 + 8n,
 * or 0 when count is 0.
 */
export function writeTcpSack(b: Uint8Array, o: number, blocks: Uint32Array, count: number): number {
  const n = Math.min(count, 4, blocks.length >> 1);
  if (n <= 0) return 0;
  b[o] = TCPOPT_NOP;
  b[o + 1] = TCPOPT_NOP;
  b[o + 2] = TCPOPT_SACK;
  b[o + 3] = 2 + 8 * n;
  for (let i = 0; i < n; i++) {
    setU32(b, o + 4 + 8 * i, blocks[2 * i]);
    setU32(b, o + 8 + 8 * i, blocks[2 * i + 1]);
  }
  return 4 + 8 * n;
}

/** Full checksum of the `len`-byte segment at `o` (addresses 4 or 16 bytes). */
export function setTcpChecksum(
  b: Uint8Array,
  o: number,
  len: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  b[o + 16] = 0;
  b[o + 17] = 0;
  const ps = pseudoSum2(src, 0, dst, 0, src.length === 4 ? 4 : 16, IPPROTO_TCP, len);
  setU16(b, o + 16, finish(sum(b, o, len, ps)));
}

/**
 * Stores only the folded pseudo-header sum (what Linux puts in a CHECKSUM_PARTIAL skb): for
 * frames sent with VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start = TCP header, csum_offset 16.
 * For a GSO frame `len` is the whole super-segment; the guest fixes up each segment.
 */
export function setTcpPartialChecksum(
  b: Uint8Array,
  o: number,
  len: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  setU16(b, o + 16, fold(pseudoSum2(src, 0, dst, 0, src.length === 4 ? 4 : 16, IPPROTO_TCP, len)));
}
