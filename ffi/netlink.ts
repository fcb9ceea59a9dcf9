// Guest-side configuration over rtnetlink, what slirp4netns --configure does: lo up, the tap
// up with its MTU (and --macaddress), the guest addresses, default routes via the gateways.
//
// The NETLINK_ROUTE socket comes from a `GuestNetns` (created inside the guest netns, so every
// request applies there), or, inside a `withNetns` window, is opened here. Each request asks for
// an ACK (NLM_F_ACK) and the ACK is read at once: rtnetlink handles a request synchronously in
// sendmsg(), so a blocking recv() returns immediately. A negative ACK becomes a SyscallError
// naming the operation: `netlink RTM_NEWADDR(10.0.2.100/24 on tap0): EEXIST`.
//
// IPv6 addresses are added with IFA_F_NODAD: no duplicate address detection, so the address is
// not "tentative" and is usable at once (ping -6 right after configuration works, and the kernel
// accepts the default route via fd00::2 because the on-link prefix route exists already).
// Messages are in host byte order: little-endian on x86_64 and (Linux) aarch64.

import { errno, openLibc, SyscallError } from "./libc.ts";
import { closeFd, GuestNetns, openRtnl } from "./netns.ts";
import { ifindexIn } from "./tap.ts";

const libc = openLibc({
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
});
const EINTR = 4;

// struct nlmsghdr (16): u32 nlmsg_len, u16 nlmsg_type, u16 nlmsg_flags, u32 nlmsg_seq, u32 nlmsg_pid
const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x01;
const NLM_F_ACK = 0x04;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;

export const RTM_NEWLINK = 16;
export const RTM_NEWADDR = 20;
export const RTM_NEWROUTE = 24;
const RTM_NAMES: Record<number, string> = {
  16: "RTM_NEWLINK",
  20: "RTM_NEWADDR",
  24: "RTM_NEWROUTE",
};

// struct ifinfomsg (16): u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change
const IFLA_ADDRESS = 1;
const IFLA_MTU = 4;
const IFLA_TXQLEN = 13;
/**
 * The tap's queue (the tun ring takes its size from txqueuelen): a guest opening thousands of
 * connections at once sends its SYNs in one burst, and the default 1000 drops the rest until
 * the guest retransmits them a second later. Ring slots cost 8 bytes each; the frames queued
 * are the guest's own socket memory.
 */
export const TAP_TXQLEN = 10000;
const IFF_UP = 0x1;
// struct ifaddrmsg (8): u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;
// struct rtmsg (12): u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3; // what `ip route add` uses
const RT_SCOPE_UNIVERSE = 0;
const RTN_UNICAST = 1;

const AF_INET = 2;
const AF_INET6 = 10;

export interface GuestAddr {
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  prefixLen: number;
}

export interface GuestConfig {
  /** The tap's name in the guest netns. */
  ifname: string;
  mtu: number;
  addrs: GuestAddr[];
  /** Default-route gateways (4 or 16 bytes each). */
  gateways?: Uint8Array[];
  /** Same as `gateways`, in the DESIGN.md spelling. */
  routes?: { gw: Uint8Array }[];
  /** The tap's MAC address (6 bytes; slirp4netns --macaddress); absent: the kernel's. */
  mac?: Uint8Array;
}

/** 10.0.2.100 / fd00::100 for messages. */
export function formatIp(a: Uint8Array): string {
  if (a.length === 4) return a.join(".");
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push((a[i] << 8) | a[i + 1]);
  // Longest run of zero words (length >= 2) becomes "::" (RFC 5952).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j > i ? j : i + 1;
  }
  const hex = (ws: number[]) => ws.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}

/** Builds and sends rtnetlink requests on one socket, checking each ACK. */
export class Rtnl {
  #buf = new Uint8Array(512);
  #dv = new DataView(this.#buf.buffer);
  #len = 0;
  #seq = 1;
  #ack = new Uint8Array(8192);
  #ackDv = new DataView(this.#ack.buffer);

  constructor(readonly fd: number) {}

  /** Sets a link up (and its MTU and MAC address when given; the kernel sets both first). */
  linkUp(
    ifindex: number,
    mtu: number | undefined,
    what: string,
    mac?: Uint8Array,
    txqlen?: number,
  ): void {
    this.#begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 16);
    const o = NLMSG_HDRLEN;
    this.#buf[o] = 0; // AF_UNSPEC
    this.#dv.setInt32(o + 4, ifindex, true);
    this.#dv.setUint32(o + 8, IFF_UP, true);
    this.#dv.setUint32(o + 12, IFF_UP, true); // ifi_change: only touch IFF_UP
    if (mtu !== undefined) this.#attrU32(IFLA_MTU, mtu);
    if (mac !== undefined) this.#attr(IFLA_ADDRESS, mac);
    if (txqlen !== undefined) this.#attrU32(IFLA_TXQLEN, txqlen);
    this.#transact(what);
  }

  /** Adds an address (v4: IFA_LOCAL + IFA_ADDRESS; v6: IFA_ADDRESS with IFA_F_NODAD). */
  addAddr(ifindex: number, a: GuestAddr, what: string): void {
    const v6 = a.addr.length === 16;
    this.#begin(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 8);
    const o = NLMSG_HDRLEN;
    this.#buf[o] = v6 ? AF_INET6 : AF_INET;
    this.#buf[o + 1] = a.prefixLen;
    this.#buf[o + 2] = v6 ? IFA_F_NODAD : 0;
    this.#buf[o + 3] = RT_SCOPE_UNIVERSE;
    this.#dv.setUint32(o + 4, ifindex, true);
    if (!v6) this.#attr(IFA_LOCAL, a.addr);
    this.#attr(IFA_ADDRESS, a.addr);
    this.#transact(what);
  }

  /** Adds a default route via `gw` out of `ifindex`. */
  addDefaultRoute(ifindex: number, gw: Uint8Array, what: string): void {
    this.#begin(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 12);
    const o = NLMSG_HDRLEN;
    this.#buf.set([gw.length === 16 ? AF_INET6 : AF_INET, 0, 0, 0], o); // family, dst/src len, tos
    this.#buf.set([RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST], o + 4);
    this.#dv.setUint32(o + 8, 0, true); // rtm_flags
    this.#attr(RTA_GATEWAY, gw);
    this.#attrU32(RTA_OIF, ifindex);
    this.#transact(what);
  }

  #begin(type: number, flags: number, bodyLen: number): void {
    this.#buf.fill(0, 0, NLMSG_HDRLEN + bodyLen);
    this.#dv.setUint16(4, type, true);
    this.#dv.setUint16(6, flags, true);
    this.#dv.setUint32(8, ++this.#seq, true);
    this.#len = NLMSG_HDRLEN + bodyLen;
  }

  // struct rtattr (4): u16 rta_len, u16 rta_type; payload padded to 4 bytes.
  #attr(type: number, data: Uint8Array): void {
    this.#dv.setUint16(this.#len, 4 + data.length, true);
    this.#dv.setUint16(this.#len + 2, type, true);
    this.#buf.set(data, this.#len + 4);
    this.#len += (4 + data.length + 3) & ~3;
  }

  #attrU32(type: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.#attr(type, b);
  }

  #transact(what: string): void {
    const type = this.#dv.getUint16(4, true);
    const call = `netlink ${RTM_NAMES[type] ?? type}`;
    this.#dv.setUint32(0, this.#len, true);
    if (Number(libc.send(this.fd, this.#buf, this.#len, 0)) < 0) {
      throw new SyscallError(call, errno(), what);
    }
    const seq = this.#seq;
    // Bounded: the ACK is queued before send() returns; anything else (a stale message from a
    // previous user of the socket) is skipped.
    for (let tries = 0; tries < 64; tries++) {
      const n = Number(libc.recv(this.fd, this.#ack, this.#ack.length, 0));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new SyscallError(`${call} (reading the ACK)`, e, what);
      }
      for (let o = 0; o + NLMSG_HDRLEN <= n;) {
        const len = this.#ackDv.getUint32(o, true);
        if (len < NLMSG_HDRLEN) break;
        if (
          this.#ackDv.getUint16(o + 4, true) === NLMSG_ERROR &&
          this.#ackDv.getUint32(o + 8, true) === seq
        ) {
          const err = -this.#ackDv.getInt32(o + NLMSG_HDRLEN, true);
          if (err !== 0) throw new SyscallError(call, err, what);
          return;
        }
        o += (len + 3) & ~3;
      }
    }
    throw new Error(`${call}(${what}): no ACK from the kernel`);
  }
}

/**
 * Configures the guest side: lo up; `ifname` up with `mtu` (and txqueuelen TAP_TXQLEN); the
 * addresses; a default route via
 * each gateway. With `ns`, its netlink socket is used (works from any netns); without, the call
 * must run inside `withNetns` and opens (and closes) its own socket.
 */
export function configureGuest(cfg: GuestConfig, ns?: GuestNetns): void {
  const fd = ns ? ns.rtnl : openRtnl();
  try {
    const nl = new Rtnl(fd);
    const lo = ifindexIn(fd, "lo");
    if (lo !== 0) nl.linkUp(lo, undefined, "lo up");
    const ifindex = ifindexIn(fd, cfg.ifname);
    if (ifindex === 0) {
      throw new Error(`--interface ${cfg.ifname}: no such device in the namespace`);
    }
    const mac = cfg.mac === undefined
      ? ""
      : `, address ${[...cfg.mac].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
    nl.linkUp(ifindex, cfg.mtu, `${cfg.ifname} up, mtu ${cfg.mtu}${mac}`, cfg.mac, TAP_TXQLEN);
    for (const a of cfg.addrs) {
      nl.addAddr(ifindex, a, `${formatIp(a.addr)}/${a.prefixLen} on ${cfg.ifname}`);
    }
    const gws = [...(cfg.gateways ?? []), ...(cfg.routes ?? []).map((r) => r.gw)];
    for (const gw of gws) {
      const def = gw.length === 16 ? "::/0" : "0.0.0.0/0";
      nl.addDefaultRoute(ifindex, gw, `${def} via ${formatIp(gw)} on ${cfg.ifname}`);
    }
  } finally {
    if (!ns) closeFd(fd);
  }
}
