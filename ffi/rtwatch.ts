// rtnetlink for the firewall's host-prefix watcher: dump the host's addresses and routes, and a
// socket that reports their changes. (The policy built on it is firewall/hostprefixes.ts.)
//
// A dump is one request (NLM_F_DUMP) and replies until NLMSG_DONE. rtnetlink produces the first
// reply inside sendmsg() and each further one inside the recvmsg() that empties the previous,
// so the replies are always queued when we ask: the blocking recv() never waits in practice
// (SO_RCVTIMEO bounds it anyway). The change socket is non-blocking and subscribed to the
// IPv4/IPv6 address and route groups; its messages only mean "dump again".
//
// What counts as "on this host" (see hostprefixes.ts): every local address (/32, /128) and the
// prefixes of routes in the main and local tables that lead to an interface directly (no
// gateway): connected subnets, device routes, local/broadcast/anycast entries. Default routes
// and routes via a gateway lead away from the host and are left out. Messages are in host byte
// order (little-endian on x86_64 and Linux aarch64).

import { check, errno, openLibc, SyscallError } from "./libc.ts";
import { closeFd } from "./netns.ts";
import { EAGAIN, EINTR, ENOBUFS } from "./errno.ts";
import { cstring } from "./libc.ts";

const libc = openLibc({
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
});

const AF_NETLINK = 16;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const MSG_DONTWAIT = 0x40;

const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;

// Multicast groups (the RTMGRP_* bit masks of the RTNLGRP_* groups).
const RTMGRP_IPV4_IFADDR = 0x10;
const RTMGRP_IPV4_ROUTE = 0x40;
const RTMGRP_IPV6_IFADDR = 0x100;
const RTMGRP_IPV6_ROUTE = 0x400;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const RTA_DST = 1;
const RTA_GATEWAY = 5;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
const RTA_VIA = 18;
const RT_TABLE_MAIN = 254;
const RT_TABLE_LOCAL = 255;
const RTN_UNICAST = 1;
const RTN_LOCAL = 2;
const RTN_BROADCAST = 3;
const RTN_ANYCAST = 4;
const RT_SCOPE_UNIVERSE = 0;

/** A prefix of the host: 4 or 16 bytes, prefix length. */
export interface HostPrefix {
  addr: Uint8Array;
  len: number;
}

/** An address of an interface (for --outbound-addr IFNAME). */
export interface IfAddr {
  ifindex: number;
  addr: Uint8Array;
  len: number;
  /** RT_SCOPE_*: 0 universe (global), 253 link, 254 host. */
  scope: number;
}

export interface HostDump {
  /** Local addresses (/32, /128) and directly reachable route prefixes, default excluded. */
  prefixes: HostPrefix[];
  addrs: IfAddr[];
}

const BUF_SIZE = 64 * 1024;
let buf: Uint8Array | null = null;
let seq = Math.floor(Math.random() * 0x7fffffff);

/** Opens the change socket (non-blocking, subscribed to address and route changes). */
export function openRouteMonitor(): number {
  const fd = check(
    libc.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE),
    "socket",
    "AF_NETLINK, NETLINK_ROUTE",
  );
  try {
    // A bigger queue makes an overflow (ENOBUFS) under route churn rarer; it is handled anyway.
    const size = new Int32Array([1 << 20]);
    libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, new Uint8Array(size.buffer), 4);
    const sa = new Uint8Array(12);
    const dv = new DataView(sa.buffer);
    dv.setUint16(0, AF_NETLINK, true);
    dv.setUint32(
      8,
      RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE,
      true,
    );
    check(libc.bind(fd, sa, 12), "bind", "NETLINK_ROUTE address and route groups");
    return fd;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/**
 * Reads everything queued on the change socket. Returns the number of messages read, or -1
 * when the kernel dropped some (ENOBUFS: changes were lost, so dump again anyway).
 */
export function drainMonitor(fd: number): number {
  const b = buffer();
  let n = 0;
  for (let i = 0; i < 4096; i++) {
    const r = Number(libc.recv(fd, b, b.length, MSG_DONTWAIT));
    if (r > 0) {
      n++;
      continue;
    }
    if (r === 0) return n;
    const e = errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return n;
    if (e === ENOBUFS) return -1;
    throw new SyscallError("recv", e, "NETLINK_ROUTE monitor");
  }
  return n;
}

function buffer(): Uint8Array {
  if (buf === null) buf = new Uint8Array(BUF_SIZE);
  return buf;
}

/** Dumps the current netns's addresses and routes (a few ms; at start and on changes). */
export function dumpHost(): HostDump {
  const fd = check(
    libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
    "socket",
    "AF_NETLINK, NETLINK_ROUTE",
  );
  try {
    const tv = new BigInt64Array([1n, 0n]); // struct timeval { 1 s, 0 µs }
    libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(tv.buffer), 16);
    const out: HostDump = { prefixes: [], addrs: [] };
    dump(fd, RTM_GETADDR, 8, (type, m, o, end) => {
      if (type === RTM_NEWADDR) onAddr(m, o, end, out);
    });
    dump(fd, RTM_GETROUTE, 12, (type, m, o, end) => {
      if (type === RTM_NEWROUTE) onRoute(m, o, end, out);
    });
    return out;
  } finally {
    closeFd(fd);
  }
}

type OnMsg = (type: number, m: Uint8Array, off: number, end: number) => void;

function dump(fd: number, type: number, bodyLen: number, onMsg: OnMsg): void {
  const req = new Uint8Array(NLMSG_HDRLEN + bodyLen); // body all zero: AF_UNSPEC, every table
  const dv = new DataView(req.buffer);
  const mySeq = seq = (seq + 1) >>> 0;
  dv.setUint32(0, req.length, true);
  dv.setUint16(4, type, true);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  dv.setUint32(8, mySeq, true);
  const what = type === RTM_GETADDR ? "RTM_GETADDR dump" : "RTM_GETROUTE dump";
  if (Number(libc.send(fd, req, req.length, 0)) < 0) throw new SyscallError("send", errno(), what);
  const b = buffer();
  const bv = new DataView(b.buffer);
  // Bounded: a dump of a million routes is ~2000 replies of 32 KiB.
  for (let reads = 0; reads < 1_000_000; reads++) {
    const n = Number(libc.recv(fd, b, b.length, 0));
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      throw new SyscallError("recv", e, what);
    }
    for (let o = 0; o + NLMSG_HDRLEN <= n;) {
      const len = bv.getUint32(o, true);
      if (len < NLMSG_HDRLEN || o + len > n) break;
      const t = bv.getUint16(o + 4, true);
      if (bv.getUint32(o + 8, true) === mySeq) {
        if (t === NLMSG_DONE) return;
        if (t === NLMSG_ERROR) {
          const err = -bv.getInt32(o + NLMSG_HDRLEN, true);
          if (err !== 0) throw new SyscallError("netlink", err, what);
          return;
        }
        onMsg(t, b, o + NLMSG_HDRLEN, o + len);
      }
      o += (len + 3) & ~3;
    }
  }
  throw new Error(`${what}: no NLMSG_DONE`);
}

/** Calls fn(type, dataOff, dataLen) for each rtattr in [o, end). */
function attrs(
  m: Uint8Array,
  o: number,
  end: number,
  fn: (t: number, d: number, n: number) => void,
) {
  while (o + 4 <= end) {
    const len = m[o] | (m[o + 1] << 8);
    const type = (m[o + 2] | (m[o + 3] << 8)) & 0x3fff; // without NLA_F_NESTED/BYTEORDER
    if (len < 4 || o + len > end) return;
    fn(type, o + 4, len - 4);
    o += (len + 3) & ~3;
  }
}

function familyBytes(family: number): number {
  return family === AF_INET ? 4 : family === AF_INET6 ? 16 : 0;
}

// struct ifaddrmsg (8): u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index
function onAddr(m: Uint8Array, o: number, end: number, out: HostDump): void {
  const bytes = familyBytes(m[o]);
  if (bytes === 0) return;
  const prefixLen = m[o + 1];
  const scope = m[o + 3];
  const ifindex = new DataView(m.buffer, m.byteOffset).getUint32(o + 4, true);
  // (`as`: assigned in the callback, which TypeScript's narrowing does not follow)
  let local = null as Uint8Array | null;
  let address = null as Uint8Array | null;
  attrs(m, o + 8, end, (t, d, n) => {
    if (n !== bytes) return;
    if (t === IFA_LOCAL) local = m.slice(d, d + n);
    else if (t === IFA_ADDRESS) address = m.slice(d, d + n);
  });
  // IPv4: IFA_LOCAL is ours (IFA_ADDRESS is the peer on point-to-point links). IPv6: only
  // IFA_ADDRESS, and it is ours.
  const mine = local ?? address;
  if (mine === null) return;
  out.prefixes.push({ addr: mine, len: bytes * 8 });
  out.addrs.push({ ifindex, addr: mine, len: prefixLen, scope });
}

// struct rtmsg (12): u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
function onRoute(m: Uint8Array, o: number, end: number, out: HostDump): void {
  const bytes = familyBytes(m[o]);
  if (bytes === 0) return;
  const dstLen = m[o + 1];
  const type = m[o + 7];
  if (dstLen === 0) return; // a default route: "everything", not "this host"
  if (
    type !== RTN_UNICAST && type !== RTN_LOCAL && type !== RTN_BROADCAST && type !== RTN_ANYCAST
  ) {
    return; // multicast, blackhole, unreachable, prohibit, ...
  }
  let table = m[o + 4];
  let dst = null as Uint8Array | null;
  let viaGateway = false as boolean;
  attrs(m, o + 12, end, (t, d, n) => {
    if (t === RTA_DST && n === bytes) dst = m.slice(d, d + n);
    else if (t === RTA_TABLE && n === 4) {
      table = new DataView(m.buffer, m.byteOffset).getUint32(d, true);
    } else if (t === RTA_GATEWAY || t === RTA_VIA || t === RTA_MULTIPATH) viaGateway = true;
  });
  if (table !== RT_TABLE_MAIN && table !== RT_TABLE_LOCAL) return;
  if (viaGateway || dst === null) return;
  out.prefixes.push({ addr: dst, len: dstLen });
}

/** ifindex of an interface in the current netns, 0 when there is none. */
export function ifIndex(name: string): number {
  return libc.if_nametoindex(cstring(name));
}

export { RT_SCOPE_UNIVERSE };
