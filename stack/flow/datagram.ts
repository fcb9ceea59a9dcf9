// Connection tracking for datagram flows (UDP, routed ICMP echo): a bounded table of flows,
// each tied to one host socket, that expire when idle.
//
//  - lookup hashes the tuple read in place from the received packet (stack/flow/table.ts's
//    ConnTable: seeded hash, intrusive chains, byte compares): no key object per packet;
//  - a use list orders flows by last use, so "touch" is a few pointer moves and the flow to
//    evict when the table is full is its head: the one idle the longest;
//  - idle expiry costs nothing per packet: a use only stamps `lastUsed` with the wheel's time;
//    the one timer per flow fires at most once per timeout and, if the flow was used since,
//    re-arms for what is left.

import { ConnTable, type Keyed } from "./table.ts";
import { Timer, type TimerWheel } from "./timers.ts";

/** A flow: the guest's tuple and the bookkeeping the table needs. */
export class Flow implements Keyed {
  hash = 0;
  hnext: Keyed | null = null;
  /**
   * Wheel time of the last datagram either way, in whole ms: an integer stays a small integer
   * in every V8 tier, where a fractional time would box a heap number per datagram whenever
   * the hot path runs unoptimized.
   */
  lastUsed = 0;
  /** Use list: `older` towards the eviction end. */
  older: Flow | null = null;
  newer: Flow | null = null;
  timer: Timer | null = null;
  /** Datagrams and bytes each way (guest → host "l", host → guest "r", as TCP logs them). */
  pktsOut = 0;
  pktsIn = 0;
  bytesOut = 0;
  bytesIn = 0;
  /** In the table (false once closed). */
  open = false;

  constructor(
    readonly family: 4 | 6,
    /** The guest's address and port (for echo: the guest's identifier). */
    readonly guestAddr: Uint8Array,
    readonly guestPort: number,
    /** The destination the guest addressed (the source of the replies it gets). */
    readonly remoteAddr: Uint8Array,
    readonly remotePort: number,
  ) {}
}

/** Why a flow ended. */
export type CloseReason = "idle" | "evicted" | "error" | "shutdown" | "replied";

export class FlowTable<F extends Flow> {
  readonly #table: ConnTable<F>;
  #oldest: F | null = null;
  #newest: F | null = null;
  /** Flows evicted because the table was full. */
  evicted = 0;
  expired = 0;

  constructor(
    private readonly wheel: TimerWheel,
    readonly max: number,
    readonly idleMs: number,
    /** Releases a flow's resources (host socket, poller); the table has already dropped it. */
    private readonly onClose: (f: F, why: CloseReason) => void,
  ) {
    this.#table = new ConnTable<F>(max);
  }

  get size(): number {
    return this.#table.size;
  }

  lookup(
    family: 4 | 6,
    b: Uint8Array,
    guestOff: number,
    guestPort: number,
    remoteOff: number,
    remotePort: number,
  ): F | null {
    return this.#table.lookup(family, b, guestOff, guestPort, remoteOff, remotePort);
  }

  /**
   * Evicts the idlest flows while the table is full. Called before a new flow's host socket
   * is opened, so that the sockets never outnumber the table's bound, not even for a moment.
   */
  makeRoom(): void {
    while (this.#table.full && this.#oldest !== null) {
      this.evicted++;
      this.close(this.#oldest, "evicted");
    }
  }

  /** Adds a new flow (its key must not be in the table), evicting the idlest when full. */
  add(f: F): void {
    this.makeRoom();
    this.#table.insert(f);
    f.open = true;
    f.lastUsed = this.wheel.now | 0;
    f.older = this.#newest;
    f.newer = null;
    if (this.#newest) this.#newest.newer = f;
    else this.#oldest = f;
    this.#newest = f;
    if (f.timer === null) f.timer = new Timer(() => this.#expire(f));
    this.wheel.arm(f.timer, this.idleMs);
  }

  /** Marks a flow used now (a datagram either way): it becomes the last to be evicted. */
  touch(f: F): void {
    f.lastUsed = this.wheel.now | 0;
    if (this.#newest === f) return;
    this.#unlink(f);
    f.older = this.#newest;
    f.newer = null;
    if (this.#newest) this.#newest.newer = f;
    else this.#oldest = f;
    this.#newest = f;
  }

  /** Removes a flow and lets the owner release it. Idempotent. */
  close(f: F, why: CloseReason): void {
    if (!f.open) return;
    f.open = false;
    this.#table.remove(f);
    this.#unlink(f);
    if (f.timer !== null) this.wheel.cancel(f.timer);
    this.onClose(f, why);
  }

  /** Every flow (a snapshot array: shutdown and debug paths only). */
  all(): F[] {
    return this.#table.all();
  }

  closeAll(): void {
    for (const f of this.all()) this.close(f, "shutdown");
  }

  #expire(f: F): void {
    if (!f.open || f.timer === null) return;
    const due = f.lastUsed + this.idleMs;
    if (due > this.wheel.now) {
      this.wheel.armAt(f.timer, due); // used since the timer was armed: wait for the rest
      return;
    }
    this.expired++;
    this.close(f, "idle");
  }

  #unlink(f: F): void {
    if (f.older) f.older.newer = f.newer;
    else if (this.#oldest === f) this.#oldest = f.newer as F | null;
    if (f.newer) f.newer.older = f.older;
    else if (this.#newest === f) this.#newest = f.older as F | null;
    f.older = f.newer = null;
  }
}
