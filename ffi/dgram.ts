// Datagram host sockets: UDP (UdpSocket) and unprivileged ICMP echo (PingSocket). Same
// conventions as ffi/socket.ts (which re-exports this file): `fd` getter, idempotent close(),
// allocation-free sendTo/recvFrom returning bytes or -errno.
//
// recvFrom reports the source of the datagram in reused fields (fromAddr/fromLen/fromPort)
// instead of returning an object. ICMP errors the host receives for our datagrams (port
// unreachable, fragmentation needed, ...) are read with readError() after setRecvErr(true),
// so the forwarder can relay them to the guest; that path is rare and allocates.

import { errno, SyscallError } from "./libc.ts";
import { EACCES, EAFNOSUPPORT, EAGAIN, EPERM, EPROTONOSUPPORT } from "./errno.ts";
import {
  afOf,
  type Family,
  readSockaddr,
  type SockAddr,
  SOCKADDR_STORAGE_LEN,
  sockaddrFamily,
  sockaddrPort,
  writeSockaddr,
} from "./sockaddr.ts";
import {
  bindTo,
  closeFd,
  CTL,
  get64,
  IP_RECVERR,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_RECVERR,
  IPV6_V6ONLY,
  libc,
  localPortOf,
  M_FLAGS,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  msgEControlLen,
  MSGN,
  mustSetOpt,
  openSocket,
  P_MSGE,
  P_MSGN,
  P_SA,
  recvIov,
  resetMsgE,
  s32,
  SA,
  scratch,
  sendIov,
  sendSegmentedIov,
  setIntOpt,
  setIov,
  setIovE,
  setNameLen,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  sockName,
  SOL_SOCKET,
} from "./sockio.ts";

/** sock_extended_err.ee_origin values. */
export const SO_EE_ORIGIN_LOCAL = 1;
export const SO_EE_ORIGIN_ICMP = 2;
export const SO_EE_ORIGIN_ICMP6 = 3;

/** One entry of a socket's error queue (IP_RECVERR / IPV6_RECVERR). */
export interface QueuedError {
  /** ee_errno: ECONNREFUSED (port unreachable), EHOSTUNREACH, EMSGSIZE (info = MTU), ... */
  errno: number;
  /** SO_EE_ORIGIN_*: ICMP / ICMP6 for errors from the network, LOCAL for local ones. */
  origin: number;
  /** ICMP type and code as received (e.g. 3/3 port unreachable, 1/4 for ICMPv6). */
  type: number;
  code: number;
  /** ee_info (the next-hop MTU for "fragmentation needed" / "packet too big"). */
  info: number;
  data: number;
  /** The address of the node that sent the ICMP error, when the kernel reports one. */
  offender: Uint8Array | null;
  /** Where the failed datagram was going (address + port). */
  dest: SockAddr | null;
  /** Bytes of the failed datagram's payload copied into the caller's buffer. */
  payloadLen: number;
}

const SA_V4 = scratch.subarray(SA + 4, SA + 8);
const SA_V6 = scratch.subarray(SA + 8, SA + 24);

/** The datagram socket core shared by UDP and ping sockets. */
export class DgramSocket {
  #fd: number;
  readonly family: Family;
  /** Source address of the last datagram recvFrom returned (first fromLen bytes valid). */
  readonly fromAddr: Uint8Array = new Uint8Array(16);
  fromLen: 4 | 16 = 4;
  fromPort = 0;
  /** Whether the last recvFrom/recv datagram was longer than the buffer (rest dropped). */
  truncated = false;

  protected constructor(fd: number, family: Family) {
    this.#fd = fd;
    this.family = family;
  }

  get fd(): number {
    return this.#fd;
  }

  /** sendto(addr, port): bytes sent or -errno (-EAGAIN, -EMSGSIZE, -ECONNREFUSED, ...). */
  sendTo(buf: Uint8Array, off: number, len: number, addr: Uint8Array, port: number): number {
    setIov(0, buf, off, len);
    setNameLen(writeSockaddr(scratch, SA, this.family, addr, port));
    const n = libc.sendmsg(this.#fd, P_MSGN, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n >= 0 ? n : -errno();
  }

  /**
   * recvfrom: datagram bytes copied (at most len; `truncated` tells if more was dropped), or
   * -errno (-EAGAIN; or a pending ICMP error such as -ECONNREFUSED, reported once). The source
   * goes to fromAddr/fromLen/fromPort (a v4-mapped ::ffff:a.b.c.d stays 16 bytes).
   */
  recvFrom(buf: Uint8Array, off: number, len: number): number {
    setIov(0, buf, off, len);
    setNameLen(SOCKADDR_STORAGE_LEN);
    const n = libc.recvmsg(this.#fd, P_MSGN, MSG_DONTWAIT);
    if (n < 0) return -errno();
    this.truncated = (s32[(MSGN + M_FLAGS) >>> 2] & MSG_TRUNC) !== 0;
    const f = sockaddrFamily(scratch, SA);
    if (f === 4) {
      this.fromAddr.set(SA_V4);
      this.fromLen = 4;
    } else if (f === 6) {
      this.fromAddr.set(SA_V6);
      this.fromLen = 16;
    }
    this.fromPort = sockaddrPort(scratch, SA);
    return n;
  }

  /** connect(2) for a fixed peer (routing lookup only): 0 or -errno (-ENETUNREACH, ...). */
  connect(addr: Uint8Array, port: number): number {
    const len = writeSockaddr(scratch, SA, this.family, addr, port);
    return libc.connect(this.#fd, P_SA, len) === 0 ? 0 : -errno();
  }

  /** send on a connected socket: bytes or -errno. */
  send(buf: Uint8Array, off: number, len: number): number {
    setIov(0, buf, off, len);
    return sendIov(this.#fd, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  /**
   * send on a connected socket as datagrams of seg bytes each (UDP_SEGMENT, one syscall; the
   * last may be shorter): bytes or -errno (-EINVAL/-EIO where the kernel or path cannot).
   */
  sendSegmented(buf: Uint8Array, off: number, len: number, seg: number): number {
    setIov(0, buf, off, len);
    return sendSegmentedIov(this.#fd, seg, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  /** recv on a connected socket: bytes (at most len) or -errno. */
  recv(buf: Uint8Array, off: number, len: number): number {
    setIov(0, buf, off, len);
    return recvIov(this.#fd, MSG_DONTWAIT);
  }

  /** The bound port (auto-bound after the first send), or -errno. */
  localPort(): number {
    return localPortOf(this.#fd);
  }

  /** getsockname (allocates). */
  localAddress(): SockAddr | null {
    return sockName(this.#fd, false);
  }

  /**
   * IP_RECVERR / IPV6_RECVERR: ICMP errors for datagrams from this socket are queued for
   * readError() (EPOLLERR signals them). Throws SyscallError on failure.
   */
  setRecvErr(on: boolean): void {
    if (this.family === 4) {
      mustSetOpt(this.#fd, IPPROTO_IP, IP_RECVERR, on ? 1 : 0, "IP_RECVERR");
      return;
    }
    mustSetOpt(this.#fd, IPPROTO_IPV6, IPV6_RECVERR, on ? 1 : 0, "IPV6_RECVERR");
    setIntOpt(this.#fd, IPPROTO_IP, IP_RECVERR, on ? 1 : 0); // v4-mapped traffic; best effort
  }

  /**
   * Dequeues one error (recvmsg MSG_ERRQUEUE): null when the queue is empty. The failed
   * datagram's payload is copied into payload[off, off+len) when a buffer is given. Throws
   * SyscallError only for unexpected failures (EBADF). Allocates (rare path).
   */
  readError(
    payload: Uint8Array | null = null,
    off = 0,
    len = payload === null ? 0 : payload.length - off,
  ): QueuedError | null {
    setIovE(payload, off, len);
    resetMsgE();
    const n = libc.recvmsg(this.#fd, P_MSGE, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) {
      const e = errno();
      if (e === EAGAIN) return null;
      throw new SyscallError("recvmsg", e, "MSG_ERRQUEUE");
    }
    const dest = readSockaddr(scratch, SA);
    const ctlLen = msgEControlLen();
    // struct cmsghdr { size_t len; int level; int type; } then data, 8-byte aligned.
    for (let o = 0; o + 16 <= ctlLen;) {
      const clen = get64(CTL + o);
      if (clen < 16 || o + clen > ctlLen) break;
      const level = s32[(CTL + o + 8) >>> 2];
      const type = s32[(CTL + o + 12) >>> 2];
      if (
        (level === IPPROTO_IP && type === IP_RECVERR) ||
        (level === IPPROTO_IPV6 && type === IPV6_RECVERR)
      ) {
        // struct sock_extended_err { u32 errno; u8 origin, type, code, pad; u32 info, data; }
        // followed by the offender's sockaddr (SO_EE_OFFENDER) when the cmsg has room for it.
        const d = CTL + o + 16;
        const offender = clen >= 16 + 16 + 4 ? readSockaddr(scratch, d + 16) : null;
        return {
          errno: s32[d >>> 2],
          origin: scratch[d + 4],
          type: scratch[d + 5],
          code: scratch[d + 6],
          info: s32[(d + 8) >>> 2],
          data: s32[(d + 12) >>> 2],
          offender: offender?.addr ?? null,
          dest,
          payloadLen: n,
        };
      }
      o += (clen + 7) & ~7;
    }
    // Dequeued an entry without the expected cmsg (should not happen): report it as unknown.
    return {
      errno: 0,
      origin: 0,
      type: 0,
      code: 0,
      info: 0,
      data: 0,
      offender: null,
      dest,
      payloadLen: n,
    };
  }

  /** close(2); idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** A non-blocking UDP socket. */
export class UdpSocket extends DgramSocket {
  /**
   * socket(SOCK_DGRAM) + options + bind when bindAddr or bindPort is given (bindAddr alone:
   * port 0, the kernel picks; bindPort alone: the wildcard address). Unbound sockets are
   * auto-bound by the first send. v6only/reuseAddr are set only when given. Throws
   * SyscallError on failure (EADDRINUSE, EADDRNOTAVAIL, ...).
   */
  static open(
    family: Family,
    opts: { bindAddr?: Uint8Array; bindPort?: number; v6only?: boolean; reuseAddr?: boolean } = {},
  ): UdpSocket {
    const fd = openSocket(family, SOCK_DGRAM, 0);
    try {
      if (opts.reuseAddr) mustSetOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
      if (family === 6 && opts.v6only !== undefined) {
        mustSetOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts.v6only ? 1 : 0, "IPV6_V6ONLY");
      }
      if (opts.bindAddr !== undefined || opts.bindPort !== undefined) {
        const r = bindTo(fd, family, opts.bindAddr ?? null, opts.bindPort ?? 0);
        if (r < 0) throw new SyscallError("bind", -r, `udp port ${opts.bindPort ?? 0}`);
      }
      return new UdpSocket(fd, family);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }
}

/**
 * An unprivileged ICMP echo socket (socket(SOCK_DGRAM, IPPROTO_ICMP/ICMPV6), Linux 3.0+).
 * sendTo takes an ICMP echo request header + data (type 8 / 128, code 0; the kernel fills in
 * the checksum and overwrites the identifier with the socket's "port", its ident); recvFrom
 * returns echo replies for that ident: ICMP header + data, without the IP header.
 *
 * Permission comes from net.ipv4.ping_group_range (both families; per network namespace):
 * the caller's group must be in it, else socket() fails with EACCES.
 */
export class PingSocket extends DgramSocket {
  /** errno of the last open() that returned null (EACCES: ping_group_range forbids). */
  static lastError = 0;

  /**
   * The socket, or null when the system does not allow or support unprivileged ping
   * (EACCES/EPERM from ping_group_range, EAFNOSUPPORT/EPROTONOSUPPORT); the reason is in
   * PingSocket.lastError. Other failures (EMFILE, ...) throw SyscallError.
   */
  static open(family: Family): PingSocket | null {
    const proto = family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
    const fd = libc.socket(afOf(family), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0) {
      const e = errno();
      PingSocket.lastError = e;
      if (e === EACCES || e === EPERM || e === EAFNOSUPPORT || e === EPROTONOSUPPORT) {
        return null;
      }
      throw new SyscallError("socket", e, "ping");
    }
    PingSocket.lastError = 0;
    return new PingSocket(fd, family);
  }

  /** sendto; the port is ignored by ping sockets. Bytes or -errno. */
  override sendTo(
    buf: Uint8Array,
    off: number,
    len: number,
    addr: Uint8Array,
    port = 0,
  ): number {
    return super.sendTo(buf, off, len, addr, port);
  }

  /**
   * Binds the ident: echo requests then leave with identifier `id` (as the guest sent it)
   * and replies to `id` come here. 0, or -EADDRINUSE when another ping socket holds the id
   * (fall back to an unbound socket and rewrite the id). Must precede the first send.
   * `addr` also binds the source address (--outbound-addr); id 0 lets the kernel pick one.
   */
  bindId(id: number, addr: Uint8Array | null = null): number {
    return bindTo(this.fd, this.family, addr, id);
  }

  /** The identifier the kernel puts in requests (auto-assigned at the first send), or -errno. */
  ident(): number {
    return this.localPort();
  }
}
