// The host side of a routed UDP flow: one non-blocking UDP socket per guest (src, dst) pair,
// connect()ed to the destination, so the kernel does the rest of the tracking: only the
// destination's datagrams reach the socket, and they go back to the guest from the address
// and port it wrote to.
//
//  - host → guest: on EPOLLIN, recv() straight into tx.buf at the UDP payload offset, the UDP
//    header in front, one frame (or fragments when larger than the guest MTU);
//  - ICMP errors the host gets for the flow's datagrams (IP_RECVERR: the error queue, EPOLLERR)
//    are relayed to the guest as ICMP errors from the destination, quoting an IP + UDP header
//    rebuilt from the flow's tuple (plus the start of the payload the kernel hands back), which
//    is all the guest's stack needs to find its socket: a connected guest socket then gets
//    ECONNREFUSED like it would on a real network.

import { EAGAIN, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH } from "../../ffi/errno.ts";
import { SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6, type UdpSocket } from "../../ffi/dgram.ts";
import { emitIpv4 } from "../wire/ipv4.ts";
import { emitIpv6 } from "../wire/ipv6.ts";
import { emitUdp } from "../wire/udp.ts";
import type { Fragmenter } from "../ip/frag.ts";
import type { Tx } from "../link/tx.ts";
import type { FlowTarget } from "../flow/outbound.ts";
import { Flow } from "../flow/datagram.ts";
import { addrPort, EPOLLERR, EPOLLIN } from "../base/names.ts";

/** Datagrams read from one socket per readiness event (then others get their turn). */
const RECV_BUDGET = 64;
/** Payload bytes of the failed datagram quoted in a relayed ICMP error. */
const QUOTE_DATA = 64;
/** Largest UDP payload: 65535 minus the IPv4 + UDP headers; IPv6 minus the UDP header only. */
export const MAX_PAYLOAD4 = 65507;
export const MAX_PAYLOAD6 = 65527;

const ICMP_DEST_UNREACH = 3;
const ICMP_FRAG_NEEDED = 4;
const ICMP6_DEST_UNREACH = 1;

export class UdpFlow extends Flow {
  sock: UdpSocket | null = null;
  /** Where the host socket is connected when not to remoteAddr:remotePort (a redirect). */
  redirect: FlowTarget | null = null;
  onEvents: ((ev: number) => void) | null = null;
  /** UDP_SEGMENT failed for this flow's path: its datagrams go one by one (batch.ts). */
  noSegment = false;
  /** "HOSTLOCAL-HOSTREMOTE" for the log, filled when logging is on. */
  hostLabel = "";
}

/** What the host side needs of the UDP transport. */
export interface UdpHostCtx {
  readonly tx: Tx;
  readonly frag: Fragmenter;
  readonly stats: {
    toGuest: number;
    bytesToGuest: number;
    hostErrors: number;
    icmpRelayed: number;
  };
  touch(f: UdpFlow): void;
  /** Ends a flow whose one answer reached the guest (a -R udprpc:// forward). */
  replied(f: UdpFlow): void;
}

/** The host socket has datagrams (EPOLLIN) or an error queued (EPOLLERR). */
export function onHostEvents(t: UdpHostCtx, f: UdpFlow, ev: number): void {
  if (ev & EPOLLERR) relayErrors(t, f);
  if (ev & EPOLLIN) pull(t, f);
}

/** Host → guest: each datagram straight into tx.buf, headers in front, out to the tap. */
function pull(t: UdpHostCtx, f: UdpFlow): void {
  const tx = t.tx;
  const family = f.family;
  const l4 = tx.l4Offset(family);
  const max = family === 4 ? MAX_PAYLOAD4 : MAX_PAYLOAD6;
  for (let i = 0; i < RECV_BUDGET; i++) {
    const s = f.sock;
    if (s === null) return;
    const n = s.recv(tx.buf, l4 + 8, max);
    if (n < 0) {
      if (n === -EAGAIN) return;
      // A pending ICMP error reported once through recv (sk_err): relay what is queued.
      t.stats.hostErrors++;
      relayErrors(t, f);
      continue;
    }
    emitUdp(tx.buf, l4, f.remotePort, f.guestPort, 8 + n);
    t.frag.send(family, f.remoteAddr, f.guestAddr, 17, 8 + n);
    f.pktsIn++;
    f.bytesIn += n;
    t.stats.toGuest++;
    t.stats.bytesToGuest += n;
    if (f.redirect !== null && f.redirect.rpc === true) {
      t.replied(f);
      return;
    }
    t.touch(f);
  }
}

/** Drains the socket's error queue, relaying ICMP errors from the network to the guest. */
export function relayErrors(t: UdpHostCtx, f: UdpFlow): void {
  const tx = t.tx;
  const family = f.family;
  const hl = family === 4 ? 20 : 40;
  const quote = tx.l4Offset(family) + 8 + hl + 8; // where the failed payload's start goes
  for (let i = 0; i < 16; i++) {
    const s = f.sock;
    if (s === null) return;
    let e;
    try {
      e = s.readError(tx.buf, quote, QUOTE_DATA);
    } catch {
      return;
    }
    if (e === null) return;
    // The host socket's family: a redirect may lead to the other one (its errors' codes are
    // then translated through their errno).
    const r = f.redirect;
    const hostFamily = r === null ? family : r.family;
    if (hostFamily === 4) {
      // Fragmentation needed is the host kernel's business (it fragments for us).
      if (e.origin !== SO_EE_ORIGIN_ICMP || e.type !== ICMP_DEST_UNREACH) continue;
      if (e.code === ICMP_FRAG_NEEDED) continue;
    } else if (e.origin !== SO_EE_ORIGIN_ICMP6 || e.type !== ICMP6_DEST_UNREACH) continue;
    const code = hostFamily === family ? e.code : unreachCode(family, e.errno);
    if (code < 0) continue;
    // A redirected flow's errors come from where the guest sent to (its target, often the
    // host's loopback, is none of the guest's business).
    const from = r === null && e.offender !== null && e.offender.length === f.remoteAddr.length
      ? e.offender
      : f.remoteAddr;
    sendUnreachable(t, f, code, e.payloadLen, from);
  }
}

/** An errno from send()/connect() as an ICMP unreachable code, -1 when none fits. */
export function unreachCode(family: 4 | 6, err: number): number {
  if (err === ECONNREFUSED) return family === 4 ? 3 : 4;
  if (err === EHOSTUNREACH) return family === 4 ? 1 : 3;
  if (err === ENETUNREACH) return 0;
  return -1;
}

/**
 * Sends destination unreachable `code` to the guest from `from`, quoting the flow's datagram:
 * an IP + UDP header rebuilt from its tuple, then `dataLen` payload bytes the caller left at
 * the quote position in tx.buf (0: none).
 */
export function sendUnreachable(
  t: UdpHostCtx,
  f: UdpFlow,
  code: number,
  dataLen: number,
  from: Uint8Array = f.remoteAddr,
): void {
  const tx = t.tx;
  const b = tx.buf;
  const family = f.family;
  const l4 = tx.l4Offset(family);
  const q = l4 + 8;
  const n = dataLen > QUOTE_DATA ? QUOTE_DATA : dataLen;
  if (family === 4) emitIpv4(b, q, 0, 28 + n, 0, 0, 64, 17, f.guestAddr, f.remoteAddr);
  else emitIpv6(b, q, 0, 0, 8 + n, 17, 64, f.guestAddr, f.remoteAddr);
  emitUdp(b, q + (family === 4 ? 20 : 40), f.guestPort, f.remotePort, 8 + n);
  b[l4] = family === 4 ? ICMP_DEST_UNREACH : ICMP6_DEST_UNREACH;
  b[l4 + 1] = code;
  b[l4 + 2] = b[l4 + 3] = 0;
  b[l4 + 4] =
    b[l4 + 5] =
    b[l4 + 6] =
    b[l4 + 7] =
      0;
  // tx.sendIp fills the ICMP checksum (with the pseudo header for ICMPv6).
  const len = 8 + (family === 4 ? 20 : 40) + 8 + n;
  if (tx.sendIp(family, from, f.guestAddr, family === 4 ? 1 : 58, len)) t.stats.icmpRelayed++;
}

/** "udp://GUEST:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT" (the TCP log's form). */
export function flowLabel(f: UdpFlow): string {
  const g = addrPort(f.guestAddr, f.guestPort);
  return `udp://${g}/${f.hostLabel || addrPort(f.remoteAddr, f.remotePort)}`;
}

/** Fills f.hostLabel from the socket (allocates: only when logging). */
export function labelHost(f: UdpFlow): void {
  const l = f.sock?.localAddress();
  if (l) {
    const r = f.redirect;
    const to = r === null ? addrPort(f.remoteAddr, f.remotePort) : addrPort(r.addr, r.port);
    f.hostLabel = `${addrPort(l.addr, l.port)}-${to}`;
  }
}
