// A hashed timing wheel (Varghese & Lauck): every connection has a few timers (retransmit,
// delayed work, keepalive, TIME-WAIT) that are re-armed on almost every segment, so arm,
// move and cancel must be O(1) and allocation-free.
//
// - A `Timer` is an intrusive doubly-linked list node made once per owner with its callback;
//   re-arming moves the same object, nothing is allocated.
// - Time is cut into ticks of `tickMs`. A timer due at tick T sits in slot `T & mask` while
//   T is within one rotation (`slots` ticks) of the current tick; each slot then holds timers
//   of exactly one tick, so processing a slot fires all of it. Timers further out wait in an
//   overflow list that is swept at most once per half rotation (keepalives and connect
//   timeouts live there; a sweep is O(their number), not O(slots)).
// - A bitmap of non-empty slots lets `advance` skip empty stretches and lets `nextTimeout`
//   find the next deadline without walking slots one by one, so an idle loop sleeps until
//   the next real deadline instead of waking every tick.
// - `advance(now)` is driven by the event loop. Timers armed for "now or earlier" go to a
//   due list that the next `advance` fires first.

const NONE = -1;
const DUE = -2;
const OVERFLOW = -3;
const FIRING = -4;

/** One timer; make it once (with its callback) and re-arm it as often as needed. */
export class Timer {
  /** Absolute deadline in ms (valid while armed). */
  deadline = 0;
  /** Tick index the timer fires at. */
  tick = 0;
  /** Slot index, or NONE / DUE / OVERFLOW. */
  where = NONE;
  prev: Timer | null = null;
  next: Timer | null = null;

  /**
   * `fn(owner)` runs when the timer fires. A connection's timers pass the connection as the
   * owner and share one callback, rather than a closure each (~100 bytes of heap apiece).
   */
  constructor(readonly fn: (owner: never) => void, readonly owner: unknown = undefined) {}

  get armed(): boolean {
    return this.where !== NONE;
  }
}

export interface TimerWheelOptions {
  /** Granularity in ms (default 1). */
  tickMs?: number;
  /** Slots per rotation, a power of two (default 4096). */
  slots?: number;
}

export class TimerWheel {
  readonly tickMs: number;
  readonly slots: number;
  readonly #mask: number;
  readonly #heads: (Timer | null)[];
  readonly #bits: Uint32Array;
  #cur: number;
  #now: number;
  #wheelCount = 0;
  #due: Timer | null = null;
  #firing: Timer | null = null;
  #overflow: Timer | null = null;
  #overflowCount = 0;
  /** Lower bound of the ticks in the overflow list. */
  #overflowMin = Infinity;
  #lastSweep: number;
  #count = 0;

  constructor(nowMs: number, opts: TimerWheelOptions = {}) {
    this.tickMs = opts.tickMs ?? 1;
    this.slots = opts.slots ?? 4096;
    if (this.slots < 64 || (this.slots & (this.slots - 1)) !== 0) {
      throw new RangeError("TimerWheel: slots must be a power of two >= 64");
    }
    this.#mask = this.slots - 1;
    this.#heads = new Array<Timer | null>(this.slots).fill(null);
    this.#bits = new Uint32Array(this.slots >>> 5);
    this.#now = nowMs;
    this.#cur = Math.floor(nowMs / this.tickMs);
    this.#lastSweep = this.#cur;
  }

  /** The time of the last `advance` (the base of `arm`'s relative delays). */
  get now(): number {
    return this.#now;
  }

  /** Number of armed timers. */
  get size(): number {
    return this.#count;
  }

  /** (Re)arms `t` to fire `delayMs` after `now`. Moves it if it was armed. */
  arm(t: Timer, delayMs: number): void {
    this.armAt(t, this.#now + delayMs);
  }

  /** (Re)arms `t` to fire at the absolute time `deadlineMs`. */
  armAt(t: Timer, deadlineMs: number): void {
    if (t.where !== NONE) this.#unlink(t);
    else this.#count++;
    t.deadline = deadlineMs;
    const tick = Math.ceil(deadlineMs / this.tickMs);
    t.tick = tick;
    if (tick <= this.#cur) {
      t.where = DUE;
      t.prev = null;
      t.next = this.#due;
      if (this.#due) this.#due.prev = t;
      this.#due = t;
    } else if (tick - this.#cur <= this.slots) {
      this.#linkSlot(t, tick & this.#mask);
    } else {
      t.where = OVERFLOW;
      t.prev = null;
      t.next = this.#overflow;
      if (this.#overflow) this.#overflow.prev = t;
      this.#overflow = t;
      this.#overflowCount++;
      if (tick < this.#overflowMin) this.#overflowMin = tick;
    }
  }

  /** Disarms `t` (no-op when not armed). */
  cancel(t: Timer): void {
    if (t.where === NONE) return;
    this.#unlink(t);
    t.where = NONE;
    this.#count--;
  }

  /** Fires every timer due at `nowMs`; returns how many fired. */
  advance(nowMs: number): number {
    if (nowMs > this.#now) this.#now = nowMs;
    const target = Math.floor(this.#now / this.tickMs);
    let fired = this.#fireDue();
    while (this.#cur < target) {
      let step = target;
      const sweep = this.#nextSweep();
      if (sweep < step) step = sweep;
      let slotTick = Infinity;
      if (this.#wheelCount > 0) {
        slotTick = this.#nextSlotTick();
        if (slotTick < step) step = slotTick;
      }
      this.#cur = step;
      if (step === slotTick) fired += this.#fireSlot(step & this.#mask);
      if (step === sweep) this.#sweep();
    }
    fired += this.#fireDue();
    return fired;
  }

  /** ms from `nowMs` until the next timer is due: 0 if one is due already, -1 if none. */
  nextTimeout(nowMs: number): number {
    if (this.#count === 0) return -1;
    if (this.#due) return 0;
    let t = Infinity;
    if (this.#wheelCount > 0) t = this.#nextSlotTick();
    if (this.#overflowCount > 0) {
      const s = this.#nextSweep();
      if (s < t) t = s;
    }
    if (t === Infinity) return -1;
    const ms = t * this.tickMs - nowMs;
    return ms > 0 ? Math.ceil(ms) : 0;
  }

  /** Cancels every timer (shutdown). */
  clear(): void {
    for (let i = 0; i < this.slots; i++) {
      let t = this.#heads[i];
      this.#heads[i] = null;
      while (t) {
        const n: Timer | null = t.next;
        t.where = NONE;
        t.prev = t.next = null;
        t = n;
      }
    }
    this.#bits.fill(0);
    for (const head of [this.#due, this.#overflow, this.#firing]) {
      let t = head;
      while (t) {
        const n: Timer | null = t.next;
        t.where = NONE;
        t.prev = t.next = null;
        t = n;
      }
    }
    this.#due = this.#overflow = this.#firing = null;
    this.#wheelCount = this.#overflowCount = this.#count = 0;
    this.#overflowMin = Infinity;
  }

  // --- internals ---

  #linkSlot(t: Timer, slot: number): void {
    const head = this.#heads[slot];
    t.where = slot;
    t.prev = null;
    t.next = head;
    if (head) head.prev = t;
    else this.#bits[slot >>> 5] |= 1 << (slot & 31);
    this.#heads[slot] = t;
    this.#wheelCount++;
  }

  #unlink(t: Timer): void {
    const w = t.where;
    if (t.prev) t.prev.next = t.next;
    else if (w >= 0) {
      this.#heads[w] = t.next;
      if (!t.next) this.#bits[w >>> 5] &= ~(1 << (w & 31));
    } else if (w === DUE) this.#due = t.next;
    else if (w === FIRING) this.#firing = t.next;
    else this.#overflow = t.next;
    if (t.next) t.next.prev = t.prev;
    t.prev = t.next = null;
    if (w >= 0) this.#wheelCount--;
    else if (w === OVERFLOW) this.#overflowCount--;
  }

  /** Tick of the first non-empty slot after the current tick (wheelCount > 0). */
  #nextSlotTick(): number {
    const bits = this.#bits;
    const start = (this.#cur + 1) & this.#mask;
    const wmask = bits.length - 1; // slots is a power of two >= 64: so is the word count
    const w0 = start >>> 5;
    let b = bits[w0] & (-1 << (start & 31)); // the first word, from `start` on
    if (b !== 0) return this.#slotTick(w0, b, start);
    for (let i = 1; i <= wmask; i++) {
      const w = (w0 + i) & wmask;
      b = bits[w];
      if (b !== 0) return this.#slotTick(w, b, start);
    }
    b = bits[w0] & ((1 << (start & 31)) - 1); // wrapped around: the first word before `start`
    if (b !== 0) return this.#slotTick(w0, b, start);
    return Infinity;
  }

  #slotTick(word: number, b: number, start: number): number {
    const slot = (word << 5) + (31 - Math.clz32(b & -b));
    return this.#cur + 1 + ((slot - start) & this.#mask);
  }

  /** Tick at which the overflow list must next be swept (Infinity when empty). */
  #nextSweep(): number {
    if (this.#overflowCount === 0) return Infinity;
    const byMin = this.#overflowMin - this.slots;
    const byRate = this.#lastSweep + (this.slots >>> 1);
    const t = byMin > byRate ? byMin : byRate;
    return t > this.#cur ? t : this.#cur + 1;
  }

  /** Moves overflow timers that now fit in one rotation into their slots. */
  #sweep(): void {
    this.#lastSweep = this.#cur;
    let min = Infinity;
    let t = this.#overflow;
    while (t) {
      const n: Timer | null = t.next;
      if (t.tick - this.#cur <= this.slots) {
        this.#unlink(t);
        if (t.tick <= this.#cur) {
          t.where = DUE;
          t.next = this.#due;
          if (this.#due) this.#due.prev = t;
          this.#due = t;
        } else this.#linkSlot(t, t.tick & this.#mask);
      } else if (t.tick < min) min = t.tick;
      t = n;
    }
    this.#overflowMin = min;
  }

  #fireSlot(slot: number): number {
    // Move the slot's timers (all due at this tick) to the firing list first, so callbacks
    // can cancel or re-arm any timer, including ones not fired yet, without breaking the walk.
    let t = this.#heads[slot];
    this.#heads[slot] = null;
    this.#bits[slot >>> 5] &= ~(1 << (slot & 31));
    this.#firing = t;
    while (t) {
      t.where = FIRING;
      this.#wheelCount--;
      t = t.next;
    }
    return this.#fireList();
  }

  #fireDue(): number {
    // Only the timers due now; ones armed due by these callbacks wait for the next call.
    let t = this.#due;
    this.#due = null;
    this.#firing = t;
    while (t) {
      t.where = FIRING;
      t = t.next;
    }
    return this.#fireList();
  }

  #fireList(): number {
    let n = 0;
    let t: Timer | null;
    while ((t = this.#firing) !== null) {
      this.#firing = t.next;
      if (t.next) t.next.prev = null;
      t.where = NONE;
      t.next = null;
      this.#count--;
      n++;
      (t.fn as (owner: unknown) => void)(t.owner);
    }
    return n;
  }
}
