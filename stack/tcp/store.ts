// Guest→host bytes slirpd has to hold, per connection: the rare exceptions to "send() straight
// out of the tap buffer".
//
//  - out-of-order segments from the guest (a hole before them): kept until the hole fills,
//    then written to the host in order; advertised to the guest as SACK blocks;
//  - the tail of an in-order segment that the host socket did not take (a short send()), so
//    the guest does not have to retransmit it: it is written when the socket is writable.
//
// Everything is relative to `base`, the sequence number of the first byte not yet written to
// the host socket. The store is a ring over one buffer borrowed from a shared `StorePool`
// only while it holds something, so an idle or in-order connection holds no buffer at all;
// the pool bounds the total (no unbounded buffer anywhere). A full pool or ring just means
// a segment is not kept: TCP retransmits it.

import { seqDiff } from "./seq.ts";
import { STORE_BUF_SIZE, STORE_BUFFERS, STORE_RANGES_MAX } from "./tunables.ts";

/** Fixed-size buffers shared by all connections, bounded in number. */
export class StorePool {
  readonly #free: Uint8Array[] = [];
  #made = 0;
  /** Buffers lent right now. */
  inUse = 0;
  /** Times a connection wanted a buffer and none was left. */
  exhausted = 0;
  /**
   * Called when a buffer comes back and more than `keepFree` are free: whoever trims the
   * pool arms its timer then, so an idle pool arms nothing (no periodic wake-up).
   */
  onSurplus: (() => void) | null = null;
  keepFree = Infinity;

  constructor(readonly bufSize = STORE_BUF_SIZE, readonly maxBuffers = STORE_BUFFERS) {}

  take(): Uint8Array | null {
    const b = this.#free.pop();
    if (b) {
      this.inUse++;
      return b;
    }
    if (this.#made >= this.maxBuffers) {
      this.exhausted++;
      return null;
    }
    this.#made++;
    this.inUse++;
    return new Uint8Array(this.bufSize);
  }

  give(b: Uint8Array): void {
    this.inUse--;
    this.#free.push(b);
    if (this.#free.length > this.keepFree) this.onSurplus?.();
  }

  /** Buffers made and not released (lent or free). */
  get made(): number {
    return this.#made;
  }

  /**
   * Lets go of free buffers beyond `keep` (the garbage collector returns their memory): the
   * pool grows to what a burst needed and would otherwise keep it for good. Returns how many.
   */
  trim(keep: number): number {
    let n = 0;
    while (this.#free.length > keep) {
      this.#free.pop();
      this.#made--;
      n++;
    }
    return n;
  }
}

/** RecvStore's ranges before its first put: empty, never written. */
const NO_RANGES = new Int32Array(0);

export class RecvStore {
  #buf: Uint8Array | null = null;
  /** Ring index of `base`. */
  #head = 0;
  /**
   * Sorted, disjoint, non-touching [start, end) ranges, as offsets from `base`; made on the
   * first put (most connections never hold a byte: ~400 bytes of heap saved on each).
   */
  #starts = NO_RANGES;
  #ends = NO_RANGES;
  #n = 0;
  /** Offset of the most recently stored range's start (first SACK block, RFC 2018 §4). */
  #recent = -1;

  constructor(readonly pool: StorePool) {}

  get empty(): boolean {
    return this.#n === 0;
  }

  /** Number of disjoint ranges held. */
  get ranges(): number {
    return this.#n;
  }

  /** Bytes held at offset 0 (contiguous with `base`): ready to be written to the host. */
  get prefix(): number {
    return this.#n > 0 && this.#starts[0] === 0 ? this.#ends[0] : 0;
  }

  /** Total bytes held. */
  get held(): number {
    let t = 0;
    for (let i = 0; i < this.#n; i++) t += this.#ends[i] - this.#starts[i];
    return t;
  }

  /**
   * Copies src[off, off+len) to offset `at` (>= 0) from base. Returns the number of bytes
   * now covered from `at` on (may be less than len: ring capacity, or 0 when the pool is
   * empty or the range table is full).
   */
  put(src: Uint8Array, off: number, len: number, at: number): number {
    if (len <= 0 || at < 0) return 0;
    if (this.#buf === null) {
      this.#buf = this.pool.take();
      if (this.#buf === null) return 0;
      this.#head = 0;
    }
    const cap = this.#buf.length;
    if (at >= cap) return 0;
    if (at + len > cap) len = cap - at;
    if (!this.#insertRange(at, at + len)) {
      if (this.#n === 0) this.#release();
      return 0;
    }
    // Copy into the ring, in at most two pieces.
    const buf = this.#buf;
    const pos = (this.#head + at) % cap;
    const first = Math.min(len, cap - pos);
    buf.set(src.subarray(off, off + first), pos);
    if (first < len) buf.set(src.subarray(off + first, off + len), 0);
    return len;
  }

  /**
   * The first contiguous piece of the prefix as it lies in the ring (a second piece exists
   * when the prefix wraps): returns its length and sets `chunkOff`. Read with `buffer`.
   */
  chunk(): number {
    const p = this.prefix;
    if (p === 0 || this.#buf === null) return 0;
    this.chunkOff = this.#head;
    return Math.min(p, this.#buf.length - this.#head);
  }
  chunkOff = 0;

  /** The ring buffer (valid while not empty). */
  get buffer(): Uint8Array {
    return this.#buf as Uint8Array;
  }

  /** Forgets the first n bytes (written to the host, or now covered elsewhere): base += n. */
  advance(n: number): void {
    if (n <= 0 || this.#n === 0) return;
    const cap = this.#buf ? this.#buf.length : 1;
    let w = 0;
    for (let i = 0; i < this.#n; i++) {
      const s = this.#starts[i] - n;
      const e = this.#ends[i] - n;
      if (e <= 0) continue;
      this.#starts[w] = s < 0 ? 0 : s;
      this.#ends[w] = e;
      w++;
    }
    this.#n = w;
    this.#recent -= n;
    if (w === 0) this.#release();
    else this.#head = (this.#head + n) % cap;
  }

  /**
   * Writes up to `max` SACK blocks (absolute sequence numbers, left/right pairs) for ranges
   * beyond `from` (the ACK number) into out; returns how many. The range holding the most
   * recent segment comes first (RFC 2018 §4), the rest in order.
   */
  sackBlocks(base: number, from: number, out: Uint32Array, max: number): number {
    let k = 0;
    const fromOff = seqDiff(from, base);
    let first = -1;
    for (let i = 0; i < this.#n; i++) {
      if (this.#starts[i] <= this.#recent && this.#recent < this.#ends[i]) first = i;
    }
    if (first >= 0 && this.#starts[first] > fromOff && k < max) {
      out[2 * k] = (base + this.#starts[first]) >>> 0;
      out[2 * k + 1] = (base + this.#ends[first]) >>> 0;
      k++;
    }
    for (let i = 0; i < this.#n && k < max; i++) {
      if (i === first || this.#starts[i] <= fromOff) continue;
      out[2 * k] = (base + this.#starts[i]) >>> 0;
      out[2 * k + 1] = (base + this.#ends[i]) >>> 0;
      k++;
    }
    return k;
  }

  /** Drops everything (connection gone). */
  clear(): void {
    this.#n = 0;
    this.#release();
  }

  #release(): void {
    if (this.#buf !== null) {
      this.pool.give(this.#buf);
      this.#buf = null;
    }
    this.#head = 0;
    this.#recent = -1;
  }

  /** Adds [s, e) to the range set, merging overlapping or touching ranges. */
  #insertRange(s: number, e: number): boolean {
    if (this.#starts === NO_RANGES) {
      this.#starts = new Int32Array(STORE_RANGES_MAX);
      this.#ends = new Int32Array(STORE_RANGES_MAX);
    }
    const starts = this.#starts, ends = this.#ends;
    let i = 0;
    while (i < this.#n && ends[i] < s) i++; // first range that ends at or after s
    let j = i;
    while (j < this.#n && starts[j] <= e) j++; // ranges [i, j) touch [s, e)
    if (i === j) {
      if (this.#n === STORE_RANGES_MAX) return false;
      for (let k = this.#n; k > i; k--) {
        starts[k] = starts[k - 1];
        ends[k] = ends[k - 1];
      }
      starts[i] = s;
      ends[i] = e;
      this.#n++;
    } else {
      starts[i] = Math.min(s, starts[i]);
      ends[i] = Math.max(e, ends[j - 1]);
      const gone = j - i - 1;
      for (let k = i + 1; k + gone < this.#n; k++) {
        starts[k] = starts[k + gone];
        ends[k] = ends[k + gone];
      }
      this.#n -= gone;
    }
    this.#recent = s;
    return true;
  }
}
