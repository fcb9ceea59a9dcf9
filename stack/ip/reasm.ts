// IP fragment reassembly for packets from the guest (IPv4: RFC 791 §3.2 / RFC 815; IPv6:
// RFC 8200 §4.5). A guest with MTU 1500 sends a 64 KiB UDP datagram as ~45 fragments; slirpd
// terminates the datagram, so it must have it whole before the transport sees it.
//
// Memory is bounded up front, the way Linux bounds it (ipfrag_high_thresh):
//  - each datagram in progress holds one slab big enough for the largest legal datagram
//    (60 + 65535 bytes); slabs are pooled and never freed, so steady state allocates nothing;
//  - the global budget is the number of slabs (budgetBytes / slab size); when all are in use
//    the oldest datagram in progress is abandoned (counted) for the new one;
//  - a datagram whose end would pass maxDatagram (default: the protocol limit) is dropped;
//  - a datagram has at most MAX_RANGES holes-between-data at a time (an adversarial order of
//    tiny fragments cannot make bookkeeping grow);
//  - a datagram not complete after its timeout (30 s IPv4 as Linux's ipfrag_time, 60 s IPv6 as
//    RFC 8200 §4.5 says) is dropped; the timer starts at its first fragment and is not re-armed.
//
// Overlaps (RFC 5722, and Linux does the same for IPv4): a fragment that overlaps data already
// received abandons the whole datagram. A fragment lying entirely within data already received
// is a duplicate (RFC 5722 erratum 3089): ignored, the datagram goes on. Received data is kept
// as merged ranges, so "within" means within one contiguous run, as in Linux.
//
// A complete datagram gets a fresh IP header (options and unfragmentable extension headers
// dropped: slirpd is the destination, they have no further use) and goes back to the IP layer
// through `deliver`, as if it had arrived whole; its L4 checksum is verified there in full.

import { Timer, type TimerWheel } from "../flow/timers.ts";
import { emitIpv4 } from "../wire/ipv4.ts";
import type { Ipv4View } from "../wire/ipv4.ts";
import { emitIpv6, type Ipv6View } from "../wire/ipv6.ts";
import { bytesEqual, copyBytes, u32 } from "../wire/bytes.ts";
import type { Counters } from "../base/counters.ts";

/** Where fragment data starts in a slab: room for the longest header written in front. */
const DATA = 60;
const SLAB = DATA + 65535;
/** Data runs (with holes between them) one datagram may have at a time. */
export const MAX_RANGES = 64;

export interface ReasmOptions {
  /** Memory for datagrams in progress, in bytes (default 4 MiB: 63 datagrams at once). */
  budgetBytes?: number;
  /** Largest reassembled payload accepted (default and maximum: the protocol's limit). */
  maxDatagram?: number;
  timeout4Ms?: number;
  timeout6Ms?: number;
}

/** Hands a reassembled packet (IP header at b[o]) back to the IP layer. */
export type Deliver = (family: 4 | 6, b: Uint8Array, o: number, n: number) => void;

class Entry {
  family: 4 | 6 = 4;
  proto = 0;
  ident = 0;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  readonly slab = new Uint8Array(SLAB);
  /** Sorted, disjoint, non-adjacent [start, end) runs of received data. */
  readonly ranges = new Int32Array(2 * MAX_RANGES);
  nRanges = 0;
  /** Payload length once the last fragment is in; -1 before. */
  total = -1;
  /** Next header (IPv6) and hop limit / TTL taken from the first fragment. */
  next = 0;
  ttl = 64;
  tos = 0;
  /** Doubly-linked age list (oldest first), for eviction. */
  older: Entry | null = null;
  newer: Entry | null = null;
  active = false;
  readonly timer: Timer;

  constructor(onTimeout: (e: Entry) => void) {
    this.timer = new Timer(() => onTimeout(this));
  }
}

export class Reassembler {
  readonly maxSlabs: number;
  readonly #maxDatagram: number;
  readonly #timeout4: number;
  readonly #timeout6: number;
  readonly #free: Entry[] = [];
  #allocated = 0;
  #oldest: Entry | null = null;
  #newest: Entry | null = null;
  #active = 0;
  /** True while a reassembled packet is being delivered: a fragment inside it is bogus. */
  #delivering = false;
  readonly #onTimeout = (e: Entry) => {
    this.counters.dropReasmTimeout++;
    this.#release(e);
  };

  constructor(
    private readonly wheel: TimerWheel,
    private readonly counters: Counters,
    private readonly deliver: Deliver,
    opts: ReasmOptions = {},
  ) {
    this.maxSlabs = Math.max(1, Math.floor((opts.budgetBytes ?? 4 << 20) / SLAB));
    this.#maxDatagram = Math.min(opts.maxDatagram ?? 65535, 65535);
    this.#timeout4 = opts.timeout4Ms ?? 30_000;
    this.#timeout6 = opts.timeout6Ms ?? 60_000;
  }

  /** Datagrams in progress. */
  get inProgress(): number {
    return this.#active;
  }

  /** Bytes of slab memory allocated so far (never more than maxSlabs slabs). */
  get memory(): number {
    return this.#allocated * SLAB;
  }

  /** One IPv4 fragment (MF set or a non-zero offset), header already validated. */
  input4(v: Ipv4View): void {
    if (this.#delivering) {
      this.counters.dropFragment++;
      return;
    }
    const b = v.b;
    const off = v.fragOffset;
    const len = v.payloadLen;
    const more = v.mf;
    // Every fragment but the last carries a multiple of 8 bytes (RFC 791 §3.2).
    if (len === 0 || (more && (len & 7) !== 0)) {
      this.counters.dropFragment++;
      return;
    }
    const ident = v.ident;
    const proto = v.protocol;
    const so = v.srcOffset, dso = v.dstOffset;
    let e = this.#oldest;
    while (e !== null) {
      if (
        e.ident === ident && e.family === 4 && e.proto === proto &&
        bytesEqual(e.src, 0, b, so, 4) &&
        bytesEqual(e.dst, 0, b, dso, 4)
      ) break;
      e = e.newer;
    }
    // 20-byte header written in front of the data: the payload may be 65515 bytes at most.
    const limit = Math.min(this.#maxDatagram, 65515);
    if (off + len > limit) {
      this.counters.dropReasmTooBig++;
      if (e !== null) this.#release(e);
      return;
    }
    if (e === null) {
      e = this.#take(4, b, so, dso, this.#timeout4);
      e.proto = proto;
      e.ident = ident;
    }
    if (off === 0) {
      e.ttl = v.ttl;
      e.tos = v.tos;
    }
    if (!this.#add(e, b, v.payloadOffset, off, len, more)) return;
    // Complete: a plain 20-byte header in front of the data.
    const total = e.total;
    emitIpv4(e.slab, DATA - 20, e.tos, 20 + total, ident, 0, e.ttl, proto, e.src, e.dst);
    this.#complete(e, 4, DATA - 20, 20 + total);
  }

  /** One IPv6 fragment (a Fragment header with M set or a non-zero offset). */
  input6(v: Ipv6View): void {
    if (this.#delivering) {
      this.counters.dropFragment++;
      return;
    }
    const b = v.b;
    const fh = v.fragHeaderOffset;
    const dataOff = fh + 8; // the fragmentable part follows the Fragment header
    const len = v.o + 40 + v.payloadLen - dataOff;
    const off = v.fragOffset;
    const more = v.fragMore;
    // RFC 8200 §4.5: a fragment other than the last must be a multiple of 8 bytes long.
    if (len <= 0 || (more && (len & 7) !== 0)) {
      this.counters.dropFragment++;
      return;
    }
    const ident = u32(b, fh + 4);
    const so = v.srcOffset, dso = v.dstOffset;
    let e = this.#oldest;
    while (e !== null) {
      if (
        e.ident === ident && e.family === 6 && bytesEqual(e.src, 0, b, so, 16) &&
        bytesEqual(e.dst, 0, b, dso, 16)
      ) break;
      e = e.newer;
    }
    if (off + len > this.#maxDatagram) {
      this.counters.dropReasmTooBig++;
      if (e !== null) this.#release(e);
      return;
    }
    if (e === null) {
      e = this.#take(6, b, so, dso, this.#timeout6);
      e.ident = ident;
    }
    if (off === 0) {
      // The next header of the reassembled packet is the first fragment's (RFC 8200 §4.5).
      e.next = b[fh];
      e.ttl = v.hopLimit;
    }
    if (!this.#add(e, b, dataOff, off, len, more)) return;
    const total = e.total;
    emitIpv6(e.slab, DATA - 40, 0, 0, total, e.next, e.ttl, e.src, e.dst);
    this.#complete(e, 6, DATA - 40, 40 + total);
  }

  /** Drops every datagram in progress (shutdown). */
  close(): void {
    while (this.#oldest !== null) this.#release(this.#oldest);
  }

  #complete(e: Entry, family: 4 | 6, o: number, n: number): void {
    this.counters.reasmDone++;
    this.#delivering = true;
    try {
      this.deliver(family, e.slab, o, n);
    } finally {
      this.#delivering = false;
      this.#release(e);
    }
  }

  /**
   * Adds fragment data b[o, o+len) at offset `off`; true when the datagram is now complete.
   * Overlaps and inconsistent ends abandon the datagram (false).
   */
  #add(e: Entry, b: Uint8Array, o: number, off: number, len: number, more: boolean): boolean {
    const end = off + len;
    const r = e.ranges;
    let n = e.nRanges;
    if (!more) {
      // The last fragment fixes the length: it must agree with everything seen so far.
      if ((e.total >= 0 && e.total !== end) || (n > 0 && r[2 * n - 1] > end)) {
        return this.#overlap(e);
      }
      e.total = end;
    } else if (e.total >= 0 && end > e.total) {
      return this.#overlap(e);
    }
    // i: the first run that ends at or after `off` (it may touch, contain or follow us).
    let i = 0;
    while (i < n && r[2 * i + 1] < off) i++;
    if (i < n) {
      const s = r[2 * i], t = r[2 * i + 1];
      if (s <= off && end <= t) {
        this.counters.dropFragmentDup++;
        return false; // a duplicate: the datagram goes on without it
      }
      // Overlap: shares bytes with run i, or with the run after it.
      if ((off < t && end > s) || (i + 1 < n && end > r[2 * i + 2])) return this.#overlap(e);
    }
    copyBytes(e.slab, DATA + off, b, o, len);
    // Merge with run i when touching its start or end, and with run i+1 when bridging to it.
    if (i < n && (r[2 * i + 1] === off || r[2 * i] === end)) {
      if (r[2 * i] === end) r[2 * i] = off;
      else {
        r[2 * i + 1] = end;
        if (i + 1 < n && r[2 * i + 2] === end) {
          r[2 * i + 1] = r[2 * i + 3];
          r.copyWithin(2 * i + 2, 2 * i + 4, 2 * n);
          n--;
        }
      }
    } else {
      if (n === MAX_RANGES) {
        this.counters.dropFragment++;
        this.#release(e);
        return false;
      }
      r.copyWithin(2 * i + 2, 2 * i, 2 * n);
      r[2 * i] = off;
      r[2 * i + 1] = end;
      n++;
    }
    e.nRanges = n;
    return e.total >= 0 && n === 1 && r[0] === 0 && r[1] === e.total;
  }

  #overlap(e: Entry): false {
    this.counters.dropReasmOverlap++;
    this.#release(e);
    return false;
  }

  /** A free entry for a new datagram: pooled, newly allocated under the budget, or evicted. */
  #take(family: 4 | 6, b: Uint8Array, so: number, dso: number, timeoutMs: number): Entry {
    let e = this.#free.pop();
    if (e === undefined) {
      if (this.#allocated < this.maxSlabs) {
        e = new Entry(this.#onTimeout);
        this.#allocated++;
      } else {
        const victim = this.#oldest as Entry; // all slabs in use: every one is active
        this.counters.dropReasmEvicted++;
        this.#release(victim);
        e = this.#free.pop() as Entry;
      }
    }
    const alen = family === 4 ? 4 : 16;
    copyBytes(e.src, 0, b, so, alen);
    copyBytes(e.dst, 0, b, dso, alen);
    e.family = family;
    e.proto = 0;
    e.nRanges = 0;
    e.total = -1;
    e.next = 0;
    e.ttl = 64;
    e.tos = 0;
    e.active = true;
    e.older = this.#newest;
    e.newer = null;
    if (this.#newest) this.#newest.newer = e;
    else this.#oldest = e;
    this.#newest = e;
    this.#active++;
    this.wheel.arm(e.timer, timeoutMs);
    return e;
  }

  #release(e: Entry): void {
    if (!e.active) return;
    e.active = false;
    this.wheel.cancel(e.timer);
    if (e.older) e.older.newer = e.newer;
    else this.#oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.#newest = e.older;
    e.older = e.newer = null;
    this.#active--;
    this.#free.push(e);
  }
}
