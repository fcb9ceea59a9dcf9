// Non-blocking host sockets driven by sync FFI calls from the one epoll loop (pasta-style; see
// DESIGN.md "all host I/O through FFI"). This file: TCP (TcpSocket, TcpListener). Re-exported
// from here: ffi/dgram.ts (UdpSocket, PingSocket), ffi/tcpinfo.ts (TcpInfo, TcpState) and
// ffi/sockaddr.ts (Family, SockAddr, parseAddr, formatAddr). Underneath: ffi/sockio.ts, the
// msghdr-based syscall layer (read its header for why every data call is sendmsg/recvmsg).
//
// Conventions, for every class:
// - `fd` is a getter (satisfies Poller's `Pollable`); it reads -1 after close(), so a stale
//   object can never touch a reused descriptor number. close() is idempotent.
// - Hot-path calls (send, recv, peek, discard, sendTo, recvFrom) never allocate and never throw
//   for a runtime condition: they return a byte count >= 0 or a negative errno (-EAGAIN,
//   -ECONNRESET, ...). They throw only for programming errors (a range outside the buffer:
//   RangeError). Buffers are addressed as (buf, off, len) over a long-lived Uint8Array.
// - Setup calls (creating, binding, listening, options at creation) throw SyscallError.
// - Addresses are Uint8Array of 4 or 16 bytes matching the family, plus a port number.

import { errno, SyscallError } from "./libc.ts";
import { EADDRINUSE, EADDRNOTAVAIL, EAGAIN, EINPROGRESS, ENOBUFS } from "./errno.ts";
import { nextEphemeralPort, REUSE_TRIES } from "./ports.ts";
import { type Family, type SockAddr, writeSockaddr } from "./sockaddr.ts";
import { fillTcpInfo, TcpInfo, TcpState } from "./tcpinfo.ts";
import {
  bindTo,
  closeFd,
  getIntOpt,
  INFO,
  INFO_LEN,
  INT,
  ioctlInt,
  IP_BIND_ADDRESS_NO_PORT,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPPROTO_TCP,
  IPV6_V6ONLY,
  LEN,
  libc,
  localPortOf,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_PEEK,
  MSG_TRUNC,
  mustSetOpt,
  openSocket,
  P_INFO,
  P_INT,
  P_LEN,
  P_SA,
  POLLERR,
  POLLHUP,
  pollNow,
  POLLOUT,
  recvIov,
  s32,
  SA,
  scratch,
  sendIov,
  setIntOpt,
  setIov,
  setIovRaw,
  SHUT_WR,
  SIOCINQ,
  SIOCOUTQ,
  SIOCOUTQNSD,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_LINGER,
  SO_PEEK_OFF,
  SO_RCVBUF,
  SO_REUSEADDR,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockName,
  SOL_SOCKET,
  TCP_INFO,
  TCP_KEEPCNT,
  TCP_KEEPIDLE,
  TCP_KEEPINTVL,
  TCP_NODELAY,
} from "./sockio.ts";

export * from "./dgram.ts";
export { type Family, formatAddr, parseAddr, type SockAddr } from "./sockaddr.ts";
export { TcpInfo, TcpState } from "./tcpinfo.ts";

/** tcp states in which the peer's FIN has been received (for the emulated peek's EOF). */
const FIN_RECEIVED = (1 << TcpState.CLOSE_WAIT) | (1 << TcpState.LAST_ACK) |
  (1 << TcpState.CLOSING) | (1 << TcpState.TIME_WAIT) | (1 << TcpState.CLOSE);

// Scratch for the two fallbacks (allocated only if a fallback is ever used; grows rarely).
let spill = new Uint8Array(0);
function spillOf(n: number): Uint8Array {
  if (spill.length < n) spill = new Uint8Array(Math.max(n, 2 * spill.length, 65536));
  return spill;
}
/** Peek offsets beyond this are refused (-ENOBUFS) in emulation: no unbounded scratch. */
const EMULATED_PEEK_MAX = 64 << 20;
const EFAULT = 14;

/**
 * socket + SO_REUSEADDR + optional bind + non-blocking connect (see TcpSocket.connect).
 * SO_REUSEADDR on every host connection is what lets a later connect from an explicitly bound
 * port take over its TIME-WAIT entry (ffi/ports.ts).
 */
/** Connects that bind a port themselves before trying the kernel's choice again. */
const EXPLICIT_AFTER_EXHAUSTION = 1024;
/** A connect() slower than this (ms) means the kernel's port search is crowded. */
const SLOW_CONNECT_MS = 0.5;
/**
 * Slow connects in a row that mean a crowded range: a crowded search is slow every time, while
 * one slow connect is as often the thread being preempted (the listener it wakes, on two
 * cores): switching on one sent TCP_CRR's fresh first run into explicit binds, a bind()
 * syscall more per connection.
 */
const SLOW_CONNECTS = 3;
let explicitLeft = 0;
let slowInARow = 0;

function connectFrom(
  family: Family,
  addr: Uint8Array,
  port: number,
  bindAddr: Uint8Array | undefined,
  bindPort: number,
): TcpSocket {
  const fd = openSocket(family, SOCK_STREAM, 0);
  try {
    // An IPv6 client socket reaches IPv6 only: ::ffff:a.b.c.d must never become an IPv4
    // connection behind the firewall's back (firewall/decide.ts decides those as IPv4).
    if (family === 6) mustSetOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (bindAddr !== undefined || bindPort) {
      // Source address without a port: let connect() pick the port, so the 4-tuple (not
      // the bare port) has to be unique and bind() does not eat the ephemeral range.
      if (!bindPort) setIntOpt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
      const r = bindTo(fd, family, bindAddr ?? null, bindPort);
      if (r < 0) throw new SyscallError("bind", -r, "tcp source");
    }
    const len = writeSockaddr(scratch, SA, family, addr, port);
    const r = libc.connect(fd, P_SA, len);
    const s = new TcpSocket(fd, family);
    if (r !== 0) {
      const e = errno();
      if (e !== EINPROGRESS) s.pendingError = e;
    }
    return s;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/** A connected (or connecting) non-blocking TCP socket. */
export class TcpSocket {
  /**
   * Whether the kernel supports SO_PEEK_OFF on TCP (Linux 6.9+): null until the first
   * socket probes it. Set false to force the emulation (used by the tests; older kernels).
   */
  static peekOffSupported: boolean | null = null;
  /** Whether recv(NULL, n, MSG_TRUNC) discards on TCP (true since Linux 2.4.4). */
  static truncDiscard = true;

  #fd: number;
  readonly family: Family;
  /** Error of an immediate connect() failure (ENETUNREACH, ECONNREFUSED, ...), else 0. */
  pendingError = 0;
  #peekMode = 0; // 0: not set up, 1: kernel SO_PEEK_OFF, 2: emulated with #peekOff
  #peekOff = 0;
  #sndbuf = 0;
  #info: TcpInfo | null = null;

  /** Adopts a connected or connecting TCP socket fd (closed by close()/abort()). */
  constructor(fd: number, family: Family) {
    this.#fd = fd;
    this.family = family;
  }

  get fd(): number {
    return this.#fd;
  }

  /**
   * socket + optional bind (source address/port) + non-blocking connect. Throws SyscallError
   * when the socket cannot be created or bound; a connect() that fails at once (ENETUNREACH,
   * EHOSTUNREACH, ECONNREFUSED, EADDRNOTAVAIL, EACCES, ...) is not thrown but recorded in
   * `pendingError` (and returned by connectResult()). Otherwise wait for EPOLLOUT.
   */
  static connect(
    family: Family,
    addr: Uint8Array,
    port: number,
    opts: { bindAddr?: Uint8Array; bindPort?: number } = {},
  ): TcpSocket {
    if (opts.bindPort || explicitLeft <= 0) {
      const t0 = performance.now();
      const s = connectFrom(family, addr, port, opts.bindAddr, opts.bindPort ?? 0);
      if (opts.bindPort) return s;
      if (s.pendingError !== EADDRNOTAVAIL) {
        // A slow connect() is the kernel searching a range crowded with TIME-WAIT entries
        // (measured: 3 ms each with 14k of them to one destination, where it is ~30 µs
        // otherwise): bind the ports ourselves for a while, which is O(1).
        if (performance.now() - t0 <= SLOW_CONNECT_MS) slowInARow = 0;
        else if (++slowInARow >= SLOW_CONNECTS) {
          slowInARow = 0;
          explicitLeft = EXPLICIT_AFTER_EXHAUSTION;
        }
        return s;
      }
      s.close();
    } else explicitLeft--;
    // No free 4-tuple: the range is full of (mostly our own) TIME-WAIT entries. Take one
    // over from an explicitly bound port (ffi/ports.ts says why that is safe). The next
    // connects start here too: the kernel's own search scans the whole range each time
    // while it is full, which costs more than the bind.
    explicitLeft = EXPLICIT_AFTER_EXHAUSTION;
    let s: TcpSocket | null = null;
    for (let i = 0; i < REUSE_TRIES; i++) {
      try {
        s?.close();
        s = connectFrom(family, addr, port, opts.bindAddr, nextEphemeralPort());
      } catch (e) {
        s = null;
        if (e instanceof SyscallError && e.errno === EADDRINUSE) continue; // port busy
        throw e;
      }
      if (s.pendingError !== EADDRNOTAVAIL) return s;
    }
    // Nothing reusable (e.g. the peer does not use timestamps): the plain answer.
    s?.close();
    return connectFrom(family, addr, port, opts.bindAddr, 0);
  }

  /**
   * A TCP socket not connected yet (non-blocking, close-on-exec), for `connectTo` later: its
   * network namespace is the one current now (ffi/nssock.ts makes them in the guest's).
   * Throws SyscallError.
   */
  static open(family: Family): TcpSocket {
    return new TcpSocket(openSocket(family, SOCK_STREAM, 0), family);
  }

  /**
   * Non-blocking connect of a socket from open(), as connect() does it: an immediate failure
   * is recorded in `pendingError`, otherwise wait for EPOLLOUT.
   */
  connectTo(addr: Uint8Array, port: number): void {
    const len = writeSockaddr(scratch, SA, this.family, addr, port);
    if (libc.connect(this.#fd, P_SA, len) !== 0) {
      const e = errno();
      if (e !== EINPROGRESS) this.pendingError = e;
    }
  }

  /**
   * Whether the connect has finished, asked without waiting (one poll()): 1 connected, -1
   * failed (connectResult() says why), 0 still in progress (wait for EPOLLOUT). A connect to
   * an address of this host has usually finished when connect() returns: the loopback
   * handshake runs inside the syscall.
   */
  connectDone(): number {
    if (this.pendingError !== 0) return -1;
    const r = pollNow(this.#fd, POLLOUT);
    if (r <= 0) return 0; // (a failed poll: epoll will tell)
    if ((r & (POLLERR | POLLHUP)) !== 0) return -1;
    return (r & POLLOUT) !== 0 ? 1 : 0;
  }

  /**
   * Outcome of the connect: 0 when connected (call it on EPOLLOUT/EPOLLERR/EPOLLHUP; before
   * that 0 only means "no error yet"), else the errno (ECONNREFUSED, ETIMEDOUT, ...).
   * Reading SO_ERROR clears it, so the answer is given once.
   */
  connectResult(): number {
    if (this.pendingError !== 0) return this.pendingError;
    const v = getIntOpt(this.#fd, SOL_SOCKET, SO_ERROR);
    return v < 0 ? -v : v;
  }

  /** send(MSG_NOSIGNAL|MSG_DONTWAIT): bytes accepted by the kernel, or -errno (-EAGAIN). */
  send(buf: Uint8Array, off: number, len: number): number {
    setIov(0, buf, off, len);
    return sendIov(this.#fd, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  /** recv: bytes read, 0 at EOF, or -errno (-EAGAIN, -ECONNRESET). */
  recv(buf: Uint8Array, off: number, len: number): number {
    setIov(0, buf, off, len);
    const n = recvIov(this.#fd, MSG_DONTWAIT);
    if (n > 0 && this.#peekMode === 2) this.#peekOff = Math.max(0, this.#peekOff - n);
    return n;
  }

  /**
   * Copies the next not-yet-peeked bytes without consuming them: successive calls return
   * successive data (SO_PEEK_OFF), so data stays in the kernel until discard() once the
   * guest has ACKed it. Returns bytes, 0 when everything queued has been peeked and the peer
   * sent FIN, or -EAGAIN when nothing new is queued yet.
   */
  peek(buf: Uint8Array, off: number, len: number): number {
    if (this.#peekMode !== 1) {
      if (this.#peekMode === 0) this.#setupPeek();
      if (this.#peekMode === 2) return this.#peekEmulated(buf, off, len);
    }
    setIov(0, buf, off, len);
    return recvIov(this.#fd, MSG_PEEK | MSG_DONTWAIT);
  }

  /** Moves the peek offset to `n` bytes past the first unconsumed byte (0: rewind fully). */
  setPeekOffset(n: number): void {
    if (this.#peekMode === 0) this.#setupPeek();
    if (this.#peekMode === 2) {
      this.#peekOff = n;
      return;
    }
    const r = setIntOpt(this.#fd, SOL_SOCKET, SO_PEEK_OFF, n);
    if (r < 0) throw new SyscallError("setsockopt", -r, "SO_PEEK_OFF");
  }

  /** Current peek offset (bytes peeked and not consumed). */
  peekOffset(): number {
    if (this.#peekMode === 0) this.#setupPeek();
    if (this.#peekMode === 2) return this.#peekOff;
    s32[LEN >>> 2] = 4;
    if (libc.getsockopt(this.#fd, SOL_SOCKET, SO_PEEK_OFF, P_INT, P_LEN) !== 0) {
      throw new SyscallError("getsockopt", errno(), "SO_PEEK_OFF");
    }
    return s32[INT >>> 2] | 0;
  }

  /**
   * Drops up to n bytes from the front of the receive queue without copying them
   * (recv MSG_TRUNC); the peek offset moves back with them. Bytes dropped, or -errno.
   */
  discard(n: number): number {
    if (TcpSocket.truncDiscard) {
      setIovRaw(0, 0, n);
      const r = recvIov(this.#fd, MSG_TRUNC | MSG_DONTWAIT);
      if (r !== -EFAULT) {
        if (r > 0 && this.#peekMode === 2) this.#peekOff = Math.max(0, this.#peekOff - r);
        return r;
      }
      TcpSocket.truncDiscard = false; // a kernel that copies into NULL: copy out instead
    }
    let done = 0;
    const sp = spillOf(65536);
    while (done < n) {
      const r = this.recv(sp, 0, Math.min(n - done, sp.length));
      if (r <= 0) return done > 0 ? done : r;
      done += r;
    }
    return done;
  }

  #setupPeek(): void {
    if (TcpSocket.peekOffSupported !== false) {
      const r = setIntOpt(this.#fd, SOL_SOCKET, SO_PEEK_OFF, 0);
      if (r === 0) {
        TcpSocket.peekOffSupported = true;
        this.#peekMode = 1;
        return;
      }
      TcpSocket.peekOffSupported = false;
    }
    this.#peekMode = 2;
    this.#peekOff = 0;
  }

  // Without SO_PEEK_OFF (Linux < 6.9), peek from the start with the already-peeked part going
  // into a spill buffer as iov[0], the new data into iov[1] (what passt does on such kernels).
  #peekEmulated(buf: Uint8Array, off: number, len: number): number {
    const skip = this.#peekOff;
    if (skip > EMULATED_PEEK_MAX) return -ENOBUFS;
    setIov(0, spillOf(skip), 0, skip);
    setIov(1, buf, off, len);
    const n = recvIov(this.#fd, MSG_PEEK | MSG_DONTWAIT, true);
    if (n < 0) return n;
    if (n > skip) {
      this.#peekOff = n;
      return n - skip;
    }
    if (n === 0 && skip === 0) return 0; // EOF with nothing queued
    // Nothing beyond the offset: EOF if the peer's FIN is in, else nothing new yet.
    const state = this.#tcpState();
    return state > 0 && (FIN_RECEIVED & (1 << state)) !== 0 ? 0 : -EAGAIN;
  }

  #tcpState(): number {
    s32[LEN >>> 2] = 1;
    return libc.getsockopt(this.#fd, IPPROTO_TCP, TCP_INFO, P_INFO, P_LEN) === 0
      ? scratch[INFO]
      : -1;
  }

  /** shutdown(SHUT_WR): the peer reads EOF once the queued data is delivered. 0 or -errno. */
  shutdownWrite(): number {
    return libc.shutdown(this.#fd, SHUT_WR) === 0 ? 0 : -errno();
  }

  /** Closes with SO_LINGER {1, 0}: queued data is dropped and the peer gets a RST. */
  abort(): void {
    if (this.#fd < 0) return;
    s32[INT >>> 2] = 1; // l_onoff
    s32[(INT >>> 2) + 1] = 0; // l_linger
    libc.setsockopt(this.#fd, SOL_SOCKET, SO_LINGER, P_INT, 8);
    this.close();
  }

  /** close(2); idempotent. A FIN follows any queued data (unless unread data forces RST). */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  /** Bytes in the send queue not yet ACKed by the peer (SIOCOUTQ), or -errno. */
  outq(): number {
    return ioctlInt(this.#fd, SIOCOUTQ);
  }

  /** Bytes in the send queue not yet sent at all (SIOCOUTQNSD), or -errno. */
  unsentq(): number {
    return ioctlInt(this.#fd, SIOCOUTQNSD);
  }

  /** Bytes in the receive queue, including peeked ones (SIOCINQ), or -errno. */
  inq(): number {
    return ioctlInt(this.#fd, SIOCINQ);
  }

  /**
   * SO_SNDBUF, read once and cached (refresh: read again; the kernel autotunes it upwards
   * while the connection runs unless it was set explicitly). The kernel counts overhead in
   * it: roughly half is payload. -errno on failure.
   */
  sendBufSize(refresh = false): number {
    if (this.#sndbuf <= 0 || refresh) this.#sndbuf = getIntOpt(this.#fd, SOL_SOCKET, SO_SNDBUF);
    return this.#sndbuf;
  }

  /** Sets SO_SNDBUF (the kernel doubles it and stops autotuning); throws on failure. */
  setSendBufSize(bytes: number): void {
    mustSetOpt(this.#fd, SOL_SOCKET, SO_SNDBUF, bytes, "SO_SNDBUF");
    this.#sndbuf = 0;
  }

  /** Sets SO_RCVBUF (the kernel doubles it and stops autotuning); throws on failure. */
  setRecvBufSize(bytes: number): void {
    mustSetOpt(this.#fd, SOL_SOCKET, SO_RCVBUF, bytes, "SO_RCVBUF");
  }

  /** TCP_NODELAY; throws on failure. */
  setNoDelay(on: boolean): void {
    mustSetOpt(this.#fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "TCP_NODELAY");
  }

  /** SO_KEEPALIVE, with optional idle/interval seconds and probe count; throws on failure. */
  setKeepalive(on: boolean, idleS?: number, intervalS?: number, count?: number): void {
    mustSetOpt(this.#fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, "SO_KEEPALIVE");
    if (!on) return;
    if (idleS) mustSetOpt(this.#fd, IPPROTO_TCP, TCP_KEEPIDLE, idleS, "TCP_KEEPIDLE");
    if (intervalS) mustSetOpt(this.#fd, IPPROTO_TCP, TCP_KEEPINTVL, intervalS, "TCP_KEEPINTVL");
    if (count) mustSetOpt(this.#fd, IPPROTO_TCP, TCP_KEEPCNT, count, "TCP_KEEPCNT");
  }

  /** getsockname (allocates; for logs): null when it fails. */
  localAddress(): SockAddr | null {
    return sockName(this.#fd, false);
  }

  /** getpeername (allocates; for logs): null when not connected. */
  remoteAddress(): SockAddr | null {
    return sockName(this.#fd, true);
  }

  /**
   * Reads TCP_INFO into `into` (default: one object per socket, reused): no allocation after
   * the first call. null when getsockopt fails (closed socket).
   */
  tcpInfo(into?: TcpInfo): TcpInfo | null {
    const t = into ?? (this.#info ??= new TcpInfo());
    s32[LEN >>> 2] = INFO_LEN;
    if (libc.getsockopt(this.#fd, IPPROTO_TCP, TCP_INFO, P_INFO, P_LEN) !== 0) return null;
    fillTcpInfo(t, s32[LEN >>> 2]);
    return t;
  }
}

/** A non-blocking listening TCP socket. */
export class TcpListener {
  #fd: number;
  readonly family: Family;
  /** errno of the last accept() that returned null (EAGAIN: drained; others: transient). */
  lastError = 0;

  private constructor(fd: number, family: Family) {
    this.#fd = fd;
    this.family = family;
  }

  get fd(): number {
    return this.#fd;
  }

  /**
   * socket + SO_REUSEADDR (unless reuseAddr: false) + IPV6_V6ONLY (v6, when v6only is given;
   * otherwise the system default) + bind + listen. Port 0 picks a free port (localPort()).
   * Throws SyscallError on any failure (EADDRINUSE, EACCES, ...).
   */
  static listen(
    family: Family,
    addr: Uint8Array,
    port: number,
    backlog = 128,
    opts: { v6only?: boolean; reuseAddr?: boolean } = {},
  ): TcpListener {
    const fd = openSocket(family, SOCK_STREAM, 0);
    try {
      if (opts.reuseAddr !== false) mustSetOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
      if (family === 6 && opts.v6only !== undefined) {
        mustSetOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts.v6only ? 1 : 0, "IPV6_V6ONLY");
      }
      const r = bindTo(fd, family, addr, port);
      if (r < 0) throw new SyscallError("bind", -r, `tcp port ${port}`);
      if (libc.listen(fd, backlog) !== 0) throw new SyscallError("listen", errno());
      return new TcpListener(fd, family);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /**
   * accept4(NONBLOCK|CLOEXEC): the new connection, or null with `lastError` set (EAGAIN when
   * the queue is drained; ECONNABORTED, EMFILE, ENOBUFS, ... otherwise; never thrown).
   */
  accept(): TcpSocket | null {
    const fd = libc.accept4(this.#fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      this.lastError = errno();
      return null;
    }
    return new TcpSocket(fd, this.family);
  }

  /** The bound port, or -errno. */
  localPort(): number {
    return localPortOf(this.#fd);
  }

  /** getsockname (allocates). */
  localAddress(): SockAddr | null {
    return sockName(this.#fd, false);
  }

  /** close(2); idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
