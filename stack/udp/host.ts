// The host side of a routed UDP flow: one non-blocking UDP socket per guest (src, dst) pair,
// connect()ed to the destination, so the kernel does the rest of the tracking: only the
// destination's datagrams reach the socket, and they go back to the guest from the address
// and port it wrote to.
//
//  - host → guest: on EPOLLIN, one recvmmsg reads up to RX_BATCH datagrams into slots behind
//    tx's frame area (each slot larger than any datagram: none is ever cut); each is moved
//    into the frame with copyWithin (native, no allocation). A run of datagrams of one size
//    (the last may be shorter) that fit the guest's MTU leaves as one USO frame, UDP_L4 GSO:
//    the guest's kernel cuts it into the same datagrams again, so one tap write carries up to
//    RX_BATCH of them (where the tap cannot take USO, or for a datagram of another size,
//    one frame each; one larger than the MTU is fragmented);
//  - ICMP errors the host gets for the flow's datagrams (IP_RECVERR: the error queue, EPOLLERR)
//    are relayed to the guest as ICMP errors from the destination, quoting an IP + UDP header
//    rebuilt from the flow's tuple (plus the start of the payload the kernel hands back), which
//    is all the guest's stack needs to find its socket: a connected guest socket then gets
//    ECONNREFUSED like it would on a real network.

import { EAGAIN, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH } from "../../ffi/errno.ts";
import { SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6, type UdpSocket } from "../../ffi/dgram.ts";
import type { RecvBatch } from "../../ffi/mmsg.ts";
import { emitIpv4 } from "../wire/ipv4.ts";
import { emitIpv6 } from "../wire/ipv6.ts";
import { emitUdp } from "../wire/udp.ts";
import type { Fragmenter } from "../ip/frag.ts";
import { type Tx, TX_BUFFER_SIZE } from "../link/tx.ts";
import type { FlowTarget } from "../flow/outbound.ts";
import { Flow } from "../flow/datagram.ts";
import { addrPort, EPOLLERR, EPOLLIN } from "../base/names.ts";

/** Datagrams read from one socket per readiness event (then others get their turn). */
const RECV_BUDGET = 64;
/** Datagrams one recvmmsg reads (and at most one USO frame carries). */
export const RX_BATCH = 32;
/** One slot per datagram: more than any UDP payload (65527), so MSG_TRUNC cannot happen. */
const RX_SLOT = 65536;
/** What the slots take behind tx's frame area (virtual; pages are touched as datagrams land). */
export const RX_AREA = RX_BATCH * RX_SLOT;
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
  /** recvmmsg's preallocated headers (RX_BATCH). */
  readonly rx: RecvBatch;
  readonly stats: {
    toGuest: number;
    bytesToGuest: number;
    /** USO frames to the guest (several datagrams each). */
    segmentedToGuest: number;
    /** Datagrams cut by recvmmsg (slots are larger than any datagram: stays 0). */
    truncated: number;
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

/**
 * Host → guest: recvmmsg into the slots, then each datagram moved into the frame at the UDP
 * payload offset; runs of one size go out as one USO frame (see the file comment).
 */
function pull(t: UdpHostCtx, f: UdpFlow): void {
  const tx = t.tx;
  const b = tx.buf;
  const family = f.family;
  const po = tx.l4Offset(family) + 8;
  const max = family === 4 ? MAX_PAYLOAD4 : MAX_PAYLOAD6;
  // Datagrams that fit one frame at the guest's MTU may share a USO frame; the rest go alone.
  const fits = tx.uso ? tx.maxL4(family) - 8 : 0;
  // A udprpc flow ends with its first answer: read one only.
  const rpc = f.redirect !== null && f.redirect.rpc === true;
  const rx = t.rx;
  let left = RECV_BUDGET;
  while (left > 0) {
    const s = f.sock;
    if (s === null) return;
    const want = rpc ? 1 : left < RX_BATCH ? left : RX_BATCH;
    const n = rx.recv(s.fd, b, TX_BUFFER_SIZE, RX_SLOT, want);
    if (n <= 0) {
      if (n === -EAGAIN || n === 0) return;
      // A pending ICMP error reported once through recv (sk_err): relay what is queued.
      t.stats.hostErrors++;
      relayErrors(t, f);
      left--;
      continue;
    }
    left -= n;
    // The run being gathered at po: `count` datagrams of `seg` bytes (the last may be less).
    let count = 0, len = 0, seg = 0;
    for (let i = 0; i < n; i++) {
      const dl = rx.len(i);
      if (rx.truncated(i)) t.stats.truncated++;
      const at = TX_BUFFER_SIZE + i * RX_SLOT;
      if (count > 0 && (dl === 0 || dl > seg || count === RX_BATCH || len + dl > max)) {
        toGuest(t, f, count, len, seg);
        count = len = 0;
      }
      b.copyWithin(po + len, at, at + dl);
      if (count === 0) seg = dl;
      count++;
      len += dl;
      // Only the last datagram of a USO frame may be shorter; one that cannot share a frame
      // (empty, above the MTU, no USO) goes alone.
      if (dl < seg || dl === 0 || dl > fits) {
        toGuest(t, f, count, len, seg);
        count = len = 0;
      }
    }
    if (count > 0) toGuest(t, f, count, len, seg);
    if (rpc) {
      t.replied(f);
      return;
    }
    t.touch(f);
    if (n < want) return; // the queue is empty (or was, a moment ago)
  }
}

/** Sends the run at the payload offset: one frame (USO when count > 1) or its fragments. */
function toGuest(t: UdpHostCtx, f: UdpFlow, count: number, len: number, seg: number): void {
  const tx = t.tx;
  const family = f.family;
  emitUdp(tx.buf, tx.l4Offset(family), f.remotePort, f.guestPort, 8 + len);
  if (count === 1) t.frag.send(family, f.remoteAddr, f.guestAddr, 17, 8 + len);
  else if (tx.sendIp(family, f.remoteAddr, f.guestAddr, 17, 8 + len, seg)) {
    t.stats.segmentedToGuest++;
  }
  f.pktsIn += count;
  f.bytesIn += len;
  t.stats.toGuest += count;
  t.stats.bytesToGuest += len;
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
