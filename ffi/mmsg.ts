// recvmmsg(2): many datagrams from one socket in one syscall and one sync FFI call (~0.2 µs),
// instead of one recvmsg each. Each datagram lands in its own slot of the caller's buffer
// (slot i at base + i * slot); the kernel reports each one's length and flags (MSG_TRUNC when
// the slot was too small: the caller sizes slots so that cannot happen, and counts it if it
// does). The mmsghdr array and its iovecs are preallocated here; only the iovec addresses are
// written per call (a few array stores), so nothing is allocated per call or per datagram.
//
// struct mmsghdr { struct msghdr msg_hdr (56 bytes, LP64); unsigned int msg_len; } → 64
// bytes with padding; msghdr: name, namelen, iov, iovlen, control, controllen, flags. No name
// (the sockets are connected) and no control.

import { errno, openLibc } from "./libc.ts";
import { EIO } from "./errno.ts";
import { bufAddr, checkRange, MSG_DONTWAIT, MSG_TRUNC } from "./sockio.ts";

const libc = openLibc({
  recvmmsg: { parameters: ["i32", "pointer", "u32", "i32", "pointer"], result: "i32" },
});

const MMSG_SIZE = 64;
const M_IOV = 16, M_IOVLEN = 24, M_FLAGS = 48, M_LEN = 56;

/** Preallocated mmsghdr + iovec arrays for up to `max` datagrams per call. */
export class RecvBatch {
  readonly #area: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #ptr: Deno.PointerObject;
  readonly #iovAt: number;
  /** Datagrams the last recv() returned. */
  count = 0;

  constructor(readonly max: number) {
    this.#iovAt = max * MMSG_SIZE;
    this.#area = new Uint8Array(max * (MMSG_SIZE + 16));
    // Reading .buffer moves a small typed array off the V8 heap: its address is fixed from here.
    this.#u32 = new Uint32Array(this.#area.buffer);
    this.#ptr = Deno.UnsafePointer.of(this.#area)!;
    const base = Number(Deno.UnsafePointer.value(this.#ptr));
    for (let i = 0; i < max; i++) {
      this.#put64(i * MMSG_SIZE + M_IOV, base + this.#iovAt + 16 * i);
      this.#put64(i * MMSG_SIZE + M_IOVLEN, 1);
    }
  }

  /**
   * Reads up to `n` (≤ max) datagrams from `fd` into buf: datagram i at base + i * slot, at
   * most `slot` bytes. Returns how many (also in `count`), or -errno (-EAGAIN: none queued;
   * a pending socket error such as -ECONNREFUSED is reported once, as by recv).
   */
  recv(fd: number, buf: Uint8Array, base: number, slot: number, n: number): number {
    if (n > this.max) n = this.max;
    checkRange(buf, base, slot * n);
    const a = bufAddr(buf) + base;
    for (let i = 0; i < n; i++) {
      const o = this.#iovAt + 16 * i;
      this.#put64(o, a + i * slot);
      this.#put64(o + 8, slot);
    }
    const r = libc.recvmmsg(fd, this.#ptr, n, MSG_DONTWAIT, null);
    if (r < 0) {
      this.count = 0;
      return -(errno() || EIO);
    }
    this.count = r;
    return r;
  }

  /** Length of datagram i of the last recv(). */
  len(i: number): number {
    return this.#u32[(i * MMSG_SIZE + M_LEN) >>> 2];
  }

  /** Whether datagram i of the last recv() was longer than its slot (the rest is lost). */
  truncated(i: number): boolean {
    return (this.#u32[(i * MMSG_SIZE + M_FLAGS) >>> 2] & MSG_TRUNC) !== 0;
  }

  #put64(o: number, v: number): void {
    this.#u32[o >>> 2] = v >>> 0;
    this.#u32[(o >>> 2) + 1] = (v / 0x100000000) >>> 0;
  }
}
