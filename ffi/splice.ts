// splice(2) through a pipe: the calls behind the spliced port forwards (stack/forwards/splice.ts),
// which move a connection's bytes socket → pipe → socket inside the kernel, never through
// TypeScript memory (what pasta does for its loopback forwards).
//
// Same conventions as ffi/sockio.ts: the data call never allocates and never throws; it returns
// bytes >= 0 or -errno. splice's length is a size_t: it is passed as one BigInt constant
// (SPLICE_MAX; a fresh BigInt per call would allocate), which is fine because splice moves at
// most what the pipe holds or has room for. The ssize_t result is declared "i32": SPLICE_MAX
// keeps it below 2^31 (sockio.ts explains why results are never "isize").

import { EIO } from "./errno.ts";
import { errno, openLibc, SyscallError } from "./libc.ts";

const libc = openLibc({
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  splice: {
    parameters: ["i32", "pointer", "i32", "pointer", "u64", "u32"],
    result: "i32",
  },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
});

export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_F_MORE = 4;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;

/** Most bytes one splice call is asked to move (a constant: no BigInt per call). */
export const SPLICE_MAX = 1n << 30n;
const FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

/**
 * splice(from, NULL, to, NULL, SPLICE_MAX, MOVE|NONBLOCK): bytes moved, 0 at EOF of `from`
 * (a socket whose peer sent FIN), or -errno (-EAGAIN: nothing to read or no room to write).
 */
export function spliceMove(from: number, to: number): number {
  const n = libc.splice(from, null, to, null, SPLICE_MAX, FLAGS);
  return n >= 0 ? n : -(errno() || EIO);
}

const pair = new Int32Array(2);

/** A non-blocking, close-on-exec pipe: one direction of a spliced connection. */
export class Pipe {
  #r: number;
  #w: number;
  /** Capacity in bytes (F_GETPIPE_SZ after the resize attempt). */
  readonly size: number;

  /**
   * pipe2(O_NONBLOCK|O_CLOEXEC), then F_SETPIPE_SZ to `size` bytes when given (best effort:
   * an unprivileged user is capped by /proc/sys/fs/pipe-max-size). Throws SyscallError when
   * no pipe can be made (EMFILE, ENFILE).
   */
  constructor(size = 0) {
    if (libc.pipe2(pair, O_NONBLOCK | O_CLOEXEC) !== 0) throw new SyscallError("pipe2", errno());
    this.#r = pair[0];
    this.#w = pair[1];
    if (size > 0) libc.fcntl(this.#w, F_SETPIPE_SZ, size);
    const got = libc.fcntl(this.#w, F_GETPIPE_SZ, 0);
    this.size = got > 0 ? got : 65536;
  }

  /** The read end (-1 after close). */
  get r(): number {
    return this.#r;
  }

  /** The write end (-1 after close). */
  get w(): number {
    return this.#w;
  }

  /** Closes both ends; idempotent. Bytes still in the pipe are dropped. */
  close(): void {
    if (this.#r >= 0) libc.close(this.#r);
    if (this.#w >= 0) libc.close(this.#w);
    this.#r = this.#w = -1;
  }
}
