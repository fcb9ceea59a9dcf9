// The syscall layer under ffi/socket.ts and ffi/dgram.ts: libc symbols, one preallocated
// scratch area for the kernel structs, and the allocation-free data calls.
//
// Why every data call is sendmsg/recvmsg: Deno's FFI only stays on its fast, allocation-free
// path for i32/u32/f64/"pointer"/"buffer" arguments and non-64-bit results. send(fd, buf+off,
// len) would need either a fresh Uint8Array/pointer object per call (for buf+off) or a BigInt
// (size_t len), and an "isize" result always comes back as a BigInt. sendmsg(fd, &msghdr,
// flags) takes only an int, a constant pointer and an int: the address and length go into a
// preallocated msghdr/iovec through a Uint32Array, so a data call is a few array stores plus
// one fast FFI call (measured: ~6 ns of FFI overhead, zero GC).
//
// Results are declared "i32": ssize_t comes back in rax/x0 and its low 32 bits are the exact
// value for anything below 2 GiB; lengths are clamped to MAX_IO so that always holds.
//
// Buffer addresses: the kernel needs the address of buf[off]. Deno.UnsafePointer.of() costs an
// object per call, so the numeric base address of each Uint8Array is cached (two most-recent
// entries, then a WeakMap). This is safe because an ArrayBuffer's backing store never moves once
// it is off the V8 heap (reading `.buffer` first forces small on-heap arrays off it); a view
// whose buffer is transferred or detached reports byteLength 0, which the bounds check rejects
// before any address is used. Pass the long-lived buffer plus an offset, not a fresh subarray.
//
// Single-threaded by construction: the scratch area is shared by all sockets, and every call
// that uses it completes synchronously before the next one starts.

import { errno, openLibc, SyscallError } from "./libc.ts";
import { EIO } from "./errno.ts";
import {
  afOf,
  type Family,
  readSockaddr,
  type SockAddr,
  SOCKADDR_STORAGE_LEN,
  sockaddrPort,
  writeAnySockaddr,
  writeSockaddr,
} from "./sockaddr.ts";

export const libc = openLibc({
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "pointer", "pointer"], result: "i32" },
  getpeername: { parameters: ["i32", "pointer", "pointer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "pointer", "pointer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "pointer", "u32"], result: "i32" },
  sendmsg: { parameters: ["i32", "pointer", "i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "pointer", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // The request is unsigned long; BigInt constants keep it on the fast path.
  ioctl: { parameters: ["i32", "u64", "pointer"], result: "i32" },
  // nfds_t is unsigned long: a BigInt constant, as for ioctl.
  poll: { parameters: ["pointer", "u64", "i32"], result: "i32" },
});

// Kernel constants (asm-generic values; identical on x86_64 and aarch64).
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_IP = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ICMPV6 = 58;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_KEEPALIVE = 9;
export const SO_LINGER = 13;
export const SO_PEEK_OFF = 42;
export const TCP_NODELAY = 1;
export const TCP_KEEPIDLE = 4;
export const TCP_KEEPINTVL = 5;
export const TCP_KEEPCNT = 6;
export const TCP_INFO = 11;
export const IP_RECVERR = 11;
export const IP_BIND_ADDRESS_NO_PORT = 24;
export const IPV6_RECVERR = 25;
export const IPV6_V6ONLY = 26;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_ERRQUEUE = 0x2000;
export const MSG_NOSIGNAL = 0x4000;
export const SHUT_WR = 1;
export const SIOCOUTQ = 0x5411n; // TIOCOUTQ: bytes not yet acked by the peer (incl. unsent)
export const SIOCINQ = 0x541bn; // FIONREAD: bytes readable (TCP: incl. already peeked)
export const SIOCOUTQNSD = 0x894bn; // bytes not yet sent at all

/** Largest length passed to one call, so the ssize_t result fits the "i32" result type. */
export const MAX_IO = 0x7ffff000;

// Scratch layout (byte offsets into one 4 KiB area; all structs 8-byte aligned).
export const MSG = 0; // msghdr, no name, iov → IOV, 1 entry (send/recv/peek/discard)
export const MSG2 = 64; // msghdr, no name, iov → IOV, 2 entries (emulated peek offset)
export const MSGN = 128; // msghdr, name → SA, iov → IOV, 1 entry (sendTo/recvFrom)
export const MSGE = 192; // msghdr, name → SA, iov → IOVE, control → CTL (error queue)
export const IOV = 256; // 2 × iovec
export const IOVE = 288; // 1 × iovec
export const SA = 320; // sockaddr_storage (128)
export const INT = 448; // int / struct linger / struct pollfd (8)
export const LEN = 456; // socklen_t
export const CTL = 512; // control buffer for MSG_ERRQUEUE
export const CTL_LEN = 512;
export const INFO = 1024; // struct tcp_info
export const INFO_LEN = 512;
export const MSGG = 1536; // msghdr, no name, iov → IOV, 1 entry, control → CTLG (UDP_SEGMENT)
const CTLG = 1600; // one cmsghdr (16) + u16 gso_size, CMSG_SPACE(2) = 24
const SCRATCH_LEN = 4096;

// msghdr field offsets (LP64).
const M_NAME = 0, M_NAMELEN = 8, M_IOV = 16, M_IOVLEN = 24, M_CONTROL = 32, M_CONTROLLEN = 40;
export const M_FLAGS = 48;

export const scratch = new Uint8Array(SCRATCH_LEN);
export const s32 = new Uint32Array(scratch.buffer);
const basePtr = Deno.UnsafePointer.of(scratch)!;
const base = Number(Deno.UnsafePointer.value(basePtr));
const ptrAt = (o: number) => Deno.UnsafePointer.offset(basePtr, o)!;
export const P_MSG = ptrAt(MSG);
export const P_MSG2 = ptrAt(MSG2);
export const P_MSGN = ptrAt(MSGN);
export const P_MSGE = ptrAt(MSGE);
export const P_SA = ptrAt(SA);
export const P_INT = ptrAt(INT);
export const P_LEN = ptrAt(LEN);
export const P_INFO = ptrAt(INFO);
const P_MSGG = ptrAt(MSGG);

/** Stores a 64-bit unsigned value (an address or size_t) at byte offset `o` of the scratch. */
export function put64(o: number, v: number): void {
  s32[o >>> 2] = v >>> 0;
  s32[(o >>> 2) + 1] = (v / 0x100000000) >>> 0;
}

/** Reads a 64-bit unsigned value at `o` (exact below 2^53). */
export function get64(o: number): number {
  return s32[(o >>> 2) + 1] * 0x100000000 + s32[o >>> 2];
}

function initMsg(m: number, name: number, iov: number, iovlen: number, ctl: number): void {
  put64(m + M_NAME, name === 0 ? 0 : base + name);
  put64(m + M_IOV, base + iov);
  put64(m + M_IOVLEN, iovlen);
  put64(m + M_CONTROL, ctl === 0 ? 0 : base + ctl);
}
initMsg(MSG, 0, IOV, 1, 0);
initMsg(MSG2, 0, IOV, 2, 0);
initMsg(MSGN, SA, IOV, 1, 0);
initMsg(MSGE, SA, IOVE, 1, CTL);
initMsg(MSGG, 0, IOV, 1, CTLG);
put64(MSGG + M_CONTROLLEN, 24);
put64(CTLG, 18); // cmsg_len = CMSG_LEN(sizeof(u16))
s32[(CTLG + 8) >>> 2] = 17; // SOL_UDP
s32[(CTLG + 12) >>> 2] = 103; // UDP_SEGMENT

/**
 * sendmsg of iov[0] (set by setIov) with UDP_SEGMENT = seg (Linux 4.18+): the kernel sends it
 * as datagrams of seg bytes (the last one may be shorter). Bytes or -errno.
 */
export function sendSegmentedIov(fd: number, seg: number, flags: number): number {
  scratch[CTLG + 16] = seg & 0xff; // u16, host (little-endian) order
  scratch[CTLG + 17] = seg >>> 8;
  const n = libc.sendmsg(fd, P_MSGG, flags);
  return n >= 0 ? n : -(errno() || EIO);
}

// --- buffer addresses -----------------------------------------------------------------------

let mru0: Uint8Array | null = null;
let mru0Addr = 0;
let mru1: Uint8Array | null = null;
let mru1Addr = 0;
const addrCache = new WeakMap<Uint8Array, number>();

/** Numeric address of buf[0] (cached; see the header for why this is safe). */
export function bufAddr(buf: Uint8Array): number {
  if (buf === mru0) return mru0Addr;
  let a: number | undefined;
  if (buf === mru1) {
    a = mru1Addr;
  } else {
    a = addrCache.get(buf);
    if (a === undefined) {
      if (buf.byteLength === 0) return 0;
      void buf.buffer; // materializes an on-heap typed array off-heap: its address is now fixed
      a = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
      addrCache.set(buf, a);
    }
  }
  mru1 = mru0;
  mru1Addr = mru0Addr;
  mru0 = buf;
  mru0Addr = a;
  return a;
}

/** Throws RangeError unless [off, off+len) lies inside buf (also rejects NaN and detached). */
export function checkRange(buf: Uint8Array, off: number, len: number): void {
  if (!(off >= 0 && len >= 0 && off + len <= buf.length)) {
    throw new RangeError(`range [${off}, ${off}+${len}) outside buffer of ${buf.length}`);
  }
}

/** Points iovec `i` (of IOV) at buf[off, off+len). */
export function setIov(i: number, buf: Uint8Array, off: number, len: number): void {
  checkRange(buf, off, len);
  const o = IOV + 16 * i;
  put64(o, len === 0 ? 0 : bufAddr(buf) + off);
  put64(o + 8, len > MAX_IO ? MAX_IO : len);
}

/** Points iovec `i` at raw memory (addr 0 = NULL, e.g. for MSG_TRUNC discards). */
export function setIovRaw(i: number, addr: number, len: number): void {
  const o = IOV + 16 * i;
  put64(o, addr);
  put64(o + 8, len > MAX_IO ? MAX_IO : len);
}

/** Points the error-queue iovec at buf[off, off+len) (len 0: payload dropped). */
export function setIovE(buf: Uint8Array | null, off: number, len: number): void {
  if (buf === null || len === 0) {
    put64(IOVE, 0);
    put64(IOVE + 8, 0);
    return;
  }
  checkRange(buf, off, len);
  put64(IOVE, bufAddr(buf) + off);
  put64(IOVE + 8, len > MAX_IO ? MAX_IO : len);
}

/** sendmsg on MSG (iov already set): byte count or -errno. */
export function sendIov(fd: number, flags: number): number {
  const n = libc.sendmsg(fd, P_MSG, flags);
  return n >= 0 ? n : -(errno() || EIO);
}

/** recvmsg on MSG or MSG2 (iov already set): byte count or -errno. */
export function recvIov(fd: number, flags: number, two = false): number {
  const n = libc.recvmsg(fd, two ? P_MSG2 : P_MSG, flags);
  // A failure whose errno reads 0 must not look like EOF (0) to a caller: call it EIO.
  return n >= 0 ? n : -(errno() || EIO);
}

/** Sets MSGN's name length (the sockaddr written at SA, or the room for one on receive). */
export function setNameLen(len: number): void {
  s32[(MSGN + M_NAMELEN) >>> 2] = len;
}

/** Resets MSGE for one error-queue read. */
export function resetMsgE(): void {
  s32[(MSGE + M_NAMELEN) >>> 2] = 128;
  put64(MSGE + M_CONTROLLEN, CTL_LEN);
}

/** msg_controllen the kernel wrote back into MSGE. */
export function msgEControlLen(): number {
  return get64(MSGE + M_CONTROLLEN);
}

// --- socket options and ioctls ----------------------------------------------------------------

/** setsockopt with an int value: 0 or -errno. */
export function setIntOpt(fd: number, level: number, name: number, v: number): number {
  s32[INT >>> 2] = v;
  return libc.setsockopt(fd, level, name, P_INT, 4) === 0 ? 0 : -errno();
}

/** getsockopt of an int: the value (>= 0 for the options used here) or -errno. */
export function getIntOpt(fd: number, level: number, name: number): number {
  s32[LEN >>> 2] = 4;
  if (libc.getsockopt(fd, level, name, P_INT, P_LEN) !== 0) return -errno();
  return s32[INT >>> 2] | 0;
}

export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

/** poll() of one fd without waiting: its revents (0: nothing yet), or -errno. */
export function pollNow(fd: number, events: number): number {
  // struct pollfd { int fd; short events; short revents; } in the 8-byte INT slot.
  s32[INT >>> 2] = fd;
  s32[(INT + 4) >>> 2] = events & 0xffff;
  if (libc.poll(P_INT, 1n, 0) < 0) return -errno();
  return s32[(INT + 4) >>> 2] >>> 16;
}

/** ioctl with an int out-parameter: the value or -errno. */
export function ioctlInt(fd: number, req: bigint): number {
  if (libc.ioctl(fd, req, P_INT) !== 0) return -errno();
  return s32[INT >>> 2] | 0;
}

/** close(2), ignoring the result (EINTR on Linux still closes the fd). */
export function closeFd(fd: number): void {
  libc.close(fd);
}

// --- setup helpers shared by socket.ts and dgram.ts -----------------------------------------

/** Creates a socket or throws; the shared first step of every constructor here. */
export function openSocket(family: Family, type: number, proto: number): number {
  const fd = libc.socket(afOf(family), type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0) throw new SyscallError("socket", errno(), `${family === 4 ? "inet" : "inet6"}`);
  return fd;
}

/** setsockopt at creation: throws SyscallError on failure. */
export function mustSetOpt(fd: number, level: number, name: number, v: number, what: string): void {
  const r = setIntOpt(fd, level, name, v);
  if (r < 0) throw new SyscallError("setsockopt", -r, what);
}

/** bind to addr/port (addr null = wildcard): 0 or -errno. */
export function bindTo(fd: number, family: Family, addr: Uint8Array | null, port: number): number {
  const len = addr === null
    ? writeAnySockaddr(scratch, SA, family, port)
    : writeSockaddr(scratch, SA, family, addr, port);
  return libc.bind(fd, P_SA, len) === 0 ? 0 : -errno();
}

/** getsockname/getpeername into a new SockAddr (allocates); null on failure. */
export function sockName(fd: number, peer: boolean): SockAddr | null {
  s32[LEN >>> 2] = SOCKADDR_STORAGE_LEN;
  const r = peer ? libc.getpeername(fd, P_SA, P_LEN) : libc.getsockname(fd, P_SA, P_LEN);
  return r === 0 ? readSockaddr(scratch, SA) : null;
}

/** Local port of a socket (allocation-free); -errno on failure. */
export function localPortOf(fd: number): number {
  s32[LEN >>> 2] = SOCKADDR_STORAGE_LEN;
  if (libc.getsockname(fd, P_SA, P_LEN) !== 0) return -errno();
  return sockaddrPort(scratch, SA);
}
