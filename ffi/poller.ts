// The event loop: one epoll set for the tap and every host socket, drained with sync FFI
// calls, with one `nonblocking` epoll_wait only when there is nothing to do.
//
// A sync epoll_wait(timeout 0) costs ~0.2 µs; a nonblocking FFI call ~60 µs (it hops to a
// thread of Deno's blocking pool and back through the event loop). So run() drains: while the
// sync wait reports events, dispatch them and ask again. Only an empty answer leads to the one
// nonblocking wait, with the timeout tick() asks for.
//
// Busy rounds never return to the Deno event loop by themselves, so Deno timers, signal
// listeners and promise jobs of other modules would starve. Every YIELD_EVERY busy rounds run()
// waits for one macrotask: setImmediate (~3 µs here; `await 0` is a microtask and lets no timer
// run; setTimeout(0) takes ~2 ms in Deno 2.9; a MessageChannel round trip ~4 µs). The global
// setImmediate is Deno's Node layer, which initializes on first use (~7 ms): importing
// node:timers would pay that at start-up, before the tap and readiness.
//
// Dispatch allocates nothing: the events array is one preallocated buffer, epoll_data carries
// the fd (low 32 bits) and a generation (high 32 bits), and handlers sit in an array indexed by
// fd. The generation drops stale events of an fd that was removed (and maybe reused by a new
// registration) earlier in the same batch.
//
// struct epoll_event is { u32 events; u64 data } — __attribute__((packed)) on x86_64 only
// (12 bytes, data at 4); 16 bytes with data at 8 elsewhere (aarch64).

import { EBADF, EINTR, ENOENT } from "./errno.ts";
import { check, errno, openLibc, SyscallError } from "./libc.ts";
import { closeFd } from "./netns.ts";

export const EPOLLIN = 0x001;
export const EPOLLPRI = 0x002;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;

/** Anything with a file descriptor (Tap, host sockets). */
export interface Pollable {
  readonly fd: number;
}

/**
 * Gets the ready mask and the owner given to `add`: one handler can serve many owners (every
 * TCP connection), rather than a closure per registration (~100 bytes of heap each).
 */
export type PollHandler = (events: number, owner: never) => void;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const DATA_OFF = Deno.build.arch === "x86_64" ? 4 : 8;
const MAX_EVENTS = 256;
/** Busy rounds (events or an immediate tick) between two yields to Deno's event loop. */
export const YIELD_EVERY = 32;

const libc = openLibc({
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // The same function as a separate symbol: a symbol is either sync or nonblocking.
  epoll_wait_nb: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
});

const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * After activity the loop waits with sync epoll_wait calls for HOLD_MS before it goes to the
 * nonblocking wait: the thread sleeps in the kernel (no CPU) and wakes within microseconds,
 * where the nonblocking wait's thread hand-off costs ~60 µs and three context switches per
 * wake-up (a request/response, or a stream that briefly drains, pays it on every round). The
 * thread is blocked meanwhile, so a sync wait lasts at most HOLD_SLICE_MS (never past the next
 * timer) and the loop yields a macrotask after one that timed out: Deno's timers, signal
 * listeners and the API socket wait at most that long (a signal cuts the wait short: EINTR).
 * An idle daemon leaves the hold after HOLD_MS and sleeps in the nonblocking wait, costing
 * nothing. Measured (A/B on this machine, a 1-byte request 0.5 ms / 2 ms after the last answer,
 * through -L): p50 122 → 68 µs and 173 → 107 µs, p99 3.4 → 0.35 ms and 2.3 → 0.65 ms. Each
 * wake-up in the hold costs ~50 µs of CPU (an event-loop turn), so the hold is short and in one
 * slice: a 50 ms hold in 5 ms slices cost ~1 ms of CPU per connection of a 10 conn/s trickle,
 * 10 ms in one slice ~0.2 ms. Before the sync wait, a short spin (SPIN_US of sync waits with
 * timeout 0) only while answers have been coming back that fast (#holdWait): a spin that always
 * ran burnt the CPU that the peers on the same cores needed (a host → guest UDP stream cost
 * twice the CPU per datagram), and no spin at all put 40 µs on every request/response (a
 * sleeping thread is woken slowly in a VM): bench, MTU 1500, p50 79 vs 118 µs; the UDP stream
 * host → guest still loses some (0.9–1.1 vs 1.4–1.5 Gbit/s), the price of that latency.
 */
const HOLD_MS = 10;
const HOLD_SLICE_MS = 10;
/** The spin before a hold's sync wait, µs, when the last answers came that fast (#holdWait). */
const SPIN_US = 50;
const SPIN_WHEN = 2;
const SPIN_MAX = 4;

export class Poller {
  /** ms after the last event during which the loop waits with sync slices (0 = never). */
  holdMs = HOLD_MS;
  /** How well spinning would have paid lately (0..SPIN_MAX); spin at SPIN_WHEN or more. */
  #quick = 0;
  readonly #ep: number;
  readonly #wake: number;
  readonly #events = new Uint8Array(MAX_EVENTS * EVENT_SIZE);
  readonly #ev = new DataView(this.#events.buffer);
  readonly #ctl = new Uint8Array(16);
  readonly #ctlDv = new DataView(this.#ctl.buffer);
  readonly #eight = new Uint8Array(8);
  // Indexed by fd, kept dense (filled with undefined) so V8 never turns it into a dictionary.
  #handlers: (PollHandler | undefined)[] = new Array(64).fill(undefined);
  #owners: unknown[] = new Array(64).fill(undefined);
  #gens = new Uint32Array(64);
  #running = false;
  #stopped = false;
  #logged = false;
  /** Exceptions thrown by handlers (and tick); the loop goes on. The first one is logged. */
  handlerErrors = 0;
  /** Nonblocking (sleeping) waits made: a measure of how often the loop went idle. */
  idleWaits = 0;

  constructor() {
    this.#ep = check(libc.epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    this.#wake = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wake < 0) {
      const e = errno();
      closeFd(this.#ep);
      throw new SyscallError("eventfd", e);
    }
    this.#ctlCall(EPOLL_CTL_ADD, this.#wake, EPOLLIN, 0, "eventfd");
  }

  /**
   * Watches `p.fd` for `events`; `h` gets the ready mask and `owner`. One registration per
   * fd.
   */
  add(p: Pollable, events: number, h: PollHandler, owner?: unknown): void {
    const fd = p.fd;
    if (fd < 0) throw new Error("Poller.add: closed fd");
    if (fd >= this.#gens.length) {
      const g = new Uint32Array(Math.max(fd + 1, this.#gens.length * 2));
      g.set(this.#gens);
      this.#gens = g;
      while (this.#handlers.length < g.length) {
        this.#handlers.push(undefined);
        this.#owners.push(undefined);
      }
    }
    const gen = (this.#gens[fd] + 1) >>> 0;
    this.#ctlCall(EPOLL_CTL_ADD, fd, events, gen, "EPOLL_CTL_ADD");
    this.#gens[fd] = gen;
    this.#handlers[fd] = h;
    this.#owners[fd] = owner;
  }

  /** Changes the event mask of a registered fd. */
  modify(p: Pollable, events: number): void {
    const fd = p.fd;
    this.#ctlCall(EPOLL_CTL_MOD, fd, events, this.#gens[fd], "EPOLL_CTL_MOD");
  }

  /**
   * Stops watching `p` (call before closing its fd; an fd already closed is tolerated).
   * `closing`: the caller closes the fd right after and it is not dup'ed anywhere, so the
   * kernel drops it from epoll itself; the EPOLL_CTL_DEL syscall is skipped.
   */
  remove(p: Pollable, closing = false): void {
    const fd = p.fd;
    if (fd < 0 || this.#handlers[fd] === undefined) return;
    this.#handlers[fd] = undefined;
    this.#owners[fd] = undefined;
    this.#gens[fd] = (this.#gens[fd] + 1) >>> 0; // events already fetched for it are dropped
    if (closing) return;
    if (libc.epoll_ctl(this.#ep, EPOLL_CTL_DEL, fd, this.#ctl) < 0) {
      const e = errno();
      if (e !== EBADF && e !== ENOENT) {
        throw new SyscallError("epoll_ctl", e, `EPOLL_CTL_DEL ${fd}`);
      }
    }
  }

  /**
   * Runs the loop until `stop()`. `tick()` runs after each round and returns the ms until it
   * wants to run again (-1: only on events). Resolves after stop; throws only if epoll fails.
   */
  async run(tick: () => number): Promise<void> {
    if (this.#running) throw new Error("Poller.run: already running");
    this.#running = true;
    let busy = 0;
    let lastActive = 0;
    try {
      while (!this.#stopped) {
        const n = this.#waitNow();
        if (n > 0) {
          this.#dispatch(n);
          lastActive = performance.now();
        }
        const t = this.#tick(tick);
        if (this.#stopped) break;
        if (n > 0 || t === 0) {
          if (++busy >= YIELD_EVERY) {
            busy = 0;
            await macrotask();
          }
          continue;
        }
        // Still close to activity: the hold (HOLD_MS above).
        const hold = lastActive + this.holdMs - performance.now();
        if (hold > 0) {
          const slice = Math.min(
            HOLD_SLICE_MS,
            Math.ceil(hold),
            t < 0 ? HOLD_SLICE_MS : Math.ceil(t),
          );
          const m = this.#holdWait(slice);
          if (m > 0) {
            this.#dispatch(m);
            lastActive = performance.now();
          }
          if (m === 0 || ++busy >= YIELD_EVERY) {
            busy = 0;
            await macrotask();
          }
          continue;
        }
        busy = 0;
        this.idleWaits++;
        const timeout = t < 0 ? -1 : Math.min(Math.ceil(t), 0x7fffffff);
        const m = await libc.epoll_wait_nb(this.#ep, this.#events, MAX_EVENTS, timeout);
        // errno of the nonblocking call is on another thread; a failure (EINTR) just loops,
        // and the sync wait at the top reports a persistent one.
        if (m > 0) {
          this.#dispatch(m);
          lastActive = performance.now();
        }
      }
    } finally {
      // Ready for another run(): forget this stop (a stop() before run() ends that run at once).
      this.#running = false;
      this.#stopped = false;
      libc.read(this.#wake, this.#eight, 8);
    }
  }

  /** Makes run() return after the current round; wakes a pending wait at once. */
  stop(): void {
    this.#stopped = true;
    this.#eight.fill(0);
    this.#eight[0] = 1; // eventfd counter += 1 (little-endian u64)
    libc.write(this.#wake, this.#eight, 8);
  }

  /** Closes the epoll set and the wake eventfd (after run() has resolved). */
  close(): void {
    closeFd(this.#ep);
    closeFd(this.#wake);
    this.#handlers.fill(undefined);
    this.#owners.fill(undefined);
  }

  /**
   * One wait of the hold: a short spin first while answers have been coming back within
   * SPIN_US (request/response: the host's answer is usually there in tens of µs, sooner than
   * a sleeping thread is woken in a VM), then the sync wait. Whether to spin is learnt from the
   * last waits (#quick), so a stream whose gaps are longer, or a loaded machine where the
   * peers need the core, stops the spinning by itself.
   */
  #holdWait(slice: number): number {
    const t0 = performance.now();
    let m = 0;
    if (this.#quick >= SPIN_WHEN) {
      const end = t0 + SPIN_US / 1000;
      while (m === 0 && performance.now() < end) m = this.#waitNow();
      if (m > 0) {
        if (this.#quick < SPIN_MAX) this.#quick++;
        return m;
      }
      this.#quick--;
      return this.#waitSync(slice);
    }
    m = this.#waitSync(slice);
    if (m > 0 && performance.now() - t0 < (2 * SPIN_US) / 1000) {
      if (this.#quick < SPIN_MAX) this.#quick++;
    } else if (this.#quick > 0) this.#quick--;
    return m;
  }

  /** A sync wait of up to `ms`; EINTR (a signal: its listener runs in the event loop) is 0. */
  #waitSync(ms: number): number {
    const n = libc.epoll_wait(this.#ep, this.#events, MAX_EVENTS, ms);
    return n > 0 ? n : 0;
  }

  #waitNow(): number {
    for (;;) {
      const n = libc.epoll_wait(this.#ep, this.#events, MAX_EVENTS, 0);
      if (n >= 0) return n;
      const e = errno();
      if (e !== EINTR) throw new SyscallError("epoll_wait", e);
    }
  }

  #tick(tick: () => number): number {
    try {
      return tick();
    } catch (e) {
      this.#failed(e);
      return 0;
    }
  }

  #dispatch(n: number): void {
    const ev = this.#ev;
    for (let i = 0, off = 0; i < n; i++, off += EVENT_SIZE) {
      const mask = ev.getUint32(off, true);
      const fd = ev.getUint32(off + DATA_OFF, true);
      if (fd === this.#wake) {
        libc.read(this.#wake, this.#eight, 8);
        continue;
      }
      const h = this.#handlers[fd];
      if (h === undefined || this.#gens[fd] !== ev.getUint32(off + DATA_OFF + 4, true)) continue;
      try {
        (h as (events: number, owner: unknown) => void)(mask, this.#owners[fd]);
      } catch (e) {
        this.#failed(e);
      }
    }
  }

  #failed(e: unknown): void {
    this.handlerErrors++;
    if (!this.#logged) {
      this.#logged = true;
      console.error("slirpd: event handler failed (further failures only counted):", e);
    }
  }

  #ctlCall(op: number, fd: number, events: number, gen: number, what: string): void {
    const dv = this.#ctlDv;
    dv.setUint32(0, events >>> 0, true);
    dv.setUint32(DATA_OFF, fd, true);
    dv.setUint32(DATA_OFF + 4, gen, true);
    if (libc.epoll_ctl(this.#ep, op, fd, this.#ctl) < 0) {
      throw new SyscallError("epoll_ctl", errno(), `${what} ${fd}`);
    }
  }
}
