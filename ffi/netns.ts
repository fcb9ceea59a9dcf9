// Network namespaces: short synchronous windows in the guest netns, and the descriptors that
// outlive them.
//
// setns(2) moves only the calling thread. slirpd's main thread is the one that runs all JS, so
// `withNetns` moves it, runs `fn`, and moves it back before returning. `fn` must therefore be
// synchronous: an `await` inside it would let timers, promise callbacks and other modules run
// while the main thread is still in the guest netns (their sockets would be created there),
// and a thread Deno spawns during the window (nonblocking FFI, the blocking pool) would stay
// there for good. A Promise returned by `fn` is rejected for that reason.
//
// The kernel binds a tun fd and a socket to the netns that is current when they are created;
// everything done on them later (ioctls, netlink requests, reads, writes) happens in that
// netns no matter where the caller is. So a window only has to *create* descriptors:
// `GuestNetns` holds a /dev/net/tun fd and a NETLINK_ROUTE socket made inside the guest netns,
// and tap.ts / netlink.ts do the rest from the host netns. userns.ts obtains the same pair
// from a helper process when slirpd is not allowed to setns (the rootless case).

import { check, cstring, errno, openLibc, SyscallError } from "./libc.ts";

/** CLONE_NEWNET: the nstype argument of setns for a network namespace. */
export const CLONE_NEWNET = 0x40000000;
/** open(2) flags (same numbers on x86_64 and aarch64). */
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;

const libc = openLibc({
  // open is variadic (mode); passing it as a third int is what the C ABI does on both arches.
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
});

const AT_FDCWD = -100;
const STATX_INO = 0x100;
const STATX_INO_OFFSET = 32; // struct statx: the same layout on every architecture
const statxBuf = new Uint8Array(256);

/** open(path, flags) or throw `open(path): ENOENT`. */
export function openPath(path: string, flags: number, mode = 0): number {
  return check(libc.open(cstring(path), flags, mode), "open", path);
}

/** close(fd), ignoring errors (there is nothing useful to do about them). */
export function closeFd(fd: number): void {
  if (fd >= 0) libc.close(fd);
}

/** A NETLINK_ROUTE socket in the current thread's netns (blocking, close-on-exec). */
export function openRtnl(): number {
  return check(
    libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
    "socket",
    "AF_NETLINK, NETLINK_ROUTE",
  );
}

/** Inode of a namespace file (nsfs): equal inodes = the same namespace. */
export function nsInode(path: string): bigint {
  // statx, not Deno.statSync: Deno wants --allow-all for /proc/self/fd/N paths, and the
  // compiled binary runs with narrower permissions (scripts/permissions.ts).
  check(libc.statx(AT_FDCWD, cstring(path), 0, STATX_INO, statxBuf), "statx", path);
  return new DataView(statxBuf.buffer).getBigUint64(STATX_INO_OFFSET, true);
}

/** The path of the innermost open `withNetns` window, for messages. */
let windowPath: string | undefined;

/**
 * Runs `fn` with the main thread in the network namespace at `path` (e.g. /proc/PID/ns/net or
 * /run/netns/NAME) and always moves it back, also when `fn` throws. Errors name the call and
 * the path: `open(/proc/123/ns/net): ENOENT`, `setns(/proc/123/ns/net): EPERM`.
 * `fn` must be synchronous (see the file header).
 */
export function withNetns<T>(path: string, fn: () => T): T {
  const target = openPath(path, O_RDONLY | O_CLOEXEC);
  let home = -1;
  const outer = windowPath;
  try {
    home = openPath("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    check(libc.setns(target, CLONE_NEWNET), "setns", path);
    let result: T;
    windowPath = path;
    try {
      result = fn();
    } catch (e) {
      backHome();
      throw e;
    } finally {
      windowPath = outer;
    }
    backHome();
    if (result instanceof Promise) {
      result.catch(() => {}); // it ran partly in the guest netns; do not leave it unhandled
      throw new TypeError(`withNetns(${path}): fn must be synchronous`);
    }
    return result;
  } finally {
    closeFd(home);
    closeFd(target);
  }

  // If this fails the thread is stranded in the guest netns: every socket made from now on
  // would land there. Nothing can repair that, so this error replaces fn's (more serious).
  function backHome(): void {
    if (libc.setns(home, CLONE_NEWNET) < 0) {
      throw new SyscallError("setns", errno(), "/proc/thread-self/ns/net (back home)");
    }
  }
}

/**
 * The descriptors slirpd needs from a guest netns, created inside it: a fresh /dev/net/tun fd
 * (not yet attached to a device) and a NETLINK_ROUTE socket. Both stay bound to the guest netns
 * wherever they are used from. The tun fd is handed to one Tap (`takeTun`); `close` closes the
 * netlink socket and the tun fd if nobody took it.
 */
export class GuestNetns {
  #tun: number;
  #rtnl: number;

  constructor(
    /** The netns path given by the user, for messages. */
    readonly path: string,
    tunFd: number,
    rtnlFd: number,
    /** True when the fds came from a helper in the owner user namespace (userns.ts). */
    readonly viaHelper = false,
  ) {
    this.#tun = tunFd;
    this.#rtnl = rtnlFd;
  }

  /** The NETLINK_ROUTE socket (owned by this object). */
  get rtnl(): number {
    if (this.#rtnl < 0) throw new Error(`netns ${this.path}: already closed`);
    return this.#rtnl;
  }

  /** Hands over the /dev/net/tun fd; the caller owns it from now on. Once only. */
  takeTun(): number {
    const fd = this.#tun;
    if (fd < 0) throw new Error(`netns ${this.path}: tun fd already taken`);
    this.#tun = -1;
    return fd;
  }

  close(): void {
    closeFd(this.#tun);
    closeFd(this.#rtnl);
    this.#tun = this.#rtnl = -1;
  }
}

/**
 * Opens /dev/net/tun and a NETLINK_ROUTE socket in the *current* netns. Inside a `withNetns`
 * window this gives the guest's descriptors.
 */
export function guestHere(path = windowPath ?? "(current netns)"): GuestNetns {
  const tun = openPath("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  try {
    return new GuestNetns(path, tun, openRtnl());
  } catch (e) {
    closeFd(tun);
    throw e;
  }
}

/** `withNetns(path, guestHere)`: needs CAP_SYS_ADMIN over the netns (root, or same userns). */
export function openGuestNetnsDirect(path: string): GuestNetns {
  return withNetns(path, () => guestHere(path));
}
