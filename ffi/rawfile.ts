// A file written with sync libc calls, for the -pcap writer on the packet path: a record's
// header and the frame go out in one writev(2) straight from the frame's buffer, with no
// copy and no object made per frame (Deno's FsFile.writeSync wants one view per write).
//
// The frame buffers (the tap's RX buffer, Tx.buf) are large, so V8 keeps their bytes off
// its heap where they never move: their addresses are looked up once and cached.

import { check, errno, openLibc, SyscallError } from "./libc.ts";
import { O_CLOEXEC, openPath } from "./netns.ts";
import { EINTR } from "./errno.ts";

// Results as i32, not isize: an isize result comes back boxed (~24 B per call), and a pcap
// record is far below 2 GiB.
const libc = openLibc({
  write: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  writev: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
});

const O_WRONLY = 0o1;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const TWO32 = 2 ** 32;
/** Typed arrays this large always have their bytes off V8's heap (small ones may move). */
export const MIN_FIXED = 4096;

export class RawFile {
  #fd: number;
  /** struct iovec[2] { void *base; size_t len } as u32 halves (little-endian 64-bit hosts). */
  readonly #iov = new Uint32Array(8);
  readonly #iovBytes = new Uint8Array(this.#iov.buffer);
  readonly #addr = new WeakMap<ArrayBufferLike, number>();

  private constructor(fd: number, readonly path: string) {
    this.#fd = fd;
  }

  /** Creates or truncates `path` (mode 0644). Throws SyscallError naming the path. */
  static create(path: string): RawFile {
    return new RawFile(openPath(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644), path);
  }

  /** write(2) of p; returns the bytes written (maybe fewer) or throws. */
  writeSync(p: Uint8Array): number {
    const n = libc.write(this.#fd, p, p.length);
    if (n < 0) throw new SyscallError("write", errno(), this.path);
    return n;
  }

  /**
   * writev(2) of a[0, an) then b[bo, bo+bn): returns the bytes written (a short count is the
   * caller's to finish) or throws. `b` must be a large, fixed buffer (see the file comment).
   */
  writeTwo(a: Uint8Array, an: number, b: Uint8Array, bo: number, bn: number): number {
    if (a.buffer.byteLength < MIN_FIXED || b.buffer.byteLength < MIN_FIXED) {
      throw new RangeError("rawfile: writeTwo needs large (off-heap) buffers");
    }
    this.#set(0, this.#base(a) + a.byteOffset, an);
    this.#set(4, this.#base(b) + b.byteOffset + bo, bn);
    for (;;) {
      const n = libc.writev(this.#fd, this.#iovBytes, 2);
      if (n >= 0) return n;
      const e = errno();
      if (e !== EINTR) throw new SyscallError("writev", e, this.path);
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    check(libc.close(this.#fd), "close", this.path);
    this.#fd = -1;
  }

  #base(v: Uint8Array): number {
    const buf = v.buffer;
    let a = this.#addr.get(buf);
    if (a === undefined) {
      const p = Deno.UnsafePointer.of(new Uint8Array(buf));
      a = Number(Deno.UnsafePointer.value(p));
      this.#addr.set(buf, a);
    }
    return a;
  }

  #set(i: number, addr: number, len: number): void {
    const iov = this.#iov;
    iov[i] = addr % TWO32;
    iov[i + 1] = Math.floor(addr / TWO32);
    iov[i + 2] = len;
    iov[i + 3] = 0;
  }
}
