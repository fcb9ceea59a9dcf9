// Raw file-descriptor calls for descriptors slirpd inherits (the slirp4netns --ready-fd and
// --exit-fd contracts): Deno has no API to adopt an fd number.

import { check, cstring, openLibc } from "./libc.ts";
import type { Pollable } from "./poller.ts";

const libc = openLibc({
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  tcgetpgrp: { parameters: ["i32"], result: "i32" },
  getpgrp: { parameters: [], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
});

const RLIMIT_NOFILE = 7;

/**
 * Raises the soft limit on open descriptors to the hard one; returns the limit now in force.
 * Every guest TCP connection and UDP flow is a host socket, and services usually start with a
 * soft limit of 1024 (systemd's default, so that select() users stay safe) and a much higher
 * hard one, expecting a program that needs more to raise its own. `deno run` happens to do this
 * for us; slirpd does it itself so that it does not depend on the runtime (a compiled binary).
 */
export function raiseFdLimit(): number {
  // struct rlimit { rlim_t rlim_cur, rlim_max } (64-bit on every target slirpd builds for).
  const lim = new BigUint64Array(2);
  const buf = new Uint8Array(lim.buffer);
  if (libc.getrlimit(RLIMIT_NOFILE, buf) !== 0) return -1;
  if (lim[0] < lim[1]) {
    lim[0] = lim[1];
    if (libc.setrlimit(RLIMIT_NOFILE, buf) !== 0) libc.getrlimit(RLIMIT_NOFILE, buf);
  }
  return Number(lim[0]);
}

/** glibc's malloc_trim(0): free heap pages go back to the system (daemon/memory.ts). */
export function mallocTrim(): void {
  libc.malloc_trim(0n);
}

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Writes `data` to an inherited descriptor and closes it. */
export function writeAndClose(fd: number, data: string, what: string): void {
  const bytes = new TextEncoder().encode(data);
  try {
    check(Number(libc.write(fd, bytes, BigInt(bytes.length))), "write", `${what} ${fd}`);
  } finally {
    libc.close(fd);
  }
}

/**
 * An inherited descriptor the poller watches (slirp4netns' --exit-fd: slirpd ends when it
 * becomes readable or its other end is closed, EPOLLIN/EPOLLHUP). Only polled, never read.
 * Throws SyscallError (EBADF) when `fd` is not open. Marked close-on-exec so helpers slirpd
 * starts do not keep it.
 */
/** Throws `fcntl(WHAT FD): EBADF` unless fd is an open descriptor. */
export function checkFd(fd: number, what: string): void {
  check(libc.fcntl(fd, F_GETFD, 0), "fcntl", `${what} ${fd}`);
}

export class WatchedFd implements Pollable {
  #fd: number;

  constructor(fd: number, what: string) {
    const flags = check(libc.fcntl(fd, F_GETFD, 0), "fcntl", `${what} ${fd}`);
    libc.fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  /** close(2); idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    libc.close(this.#fd);
    this.#fd = -1;
  }
}

/** mkfifo(3): a named pipe at `path` (Deno has no API for one). */
export function makeFifo(path: string, mode = 0o600): void {
  check(libc.mkfifo(cstring(path), mode), "mkfifo", path);
}

/**
 * Whether `fd` is a terminal whose foreground process group is ours: then a Ctrl-C (SIGINT)
 * from it reached every process of the group, not only us.
 */
export function inTerminalForeground(fd: number): boolean {
  const fg = libc.tcgetpgrp(fd);
  return fg > 0 && fg === libc.getpgrp();
}
