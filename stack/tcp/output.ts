// Segments to the guest. Everything is built in place in the one Tx buffer: the payload is
// peeked from the host socket straight to its final offset (after room for the TCP header
// and options), then the header is written in front and Tx adds IP/Ethernet/vnet and does
// one write() to the tap. With the vnet header a segment carries up to ~64 KB as a GSO
// super-frame (gsoSize = the guest's MSS), which the guest kernel takes whole (GRO-like).
// Without it, small segments are cut from one peek of up to 64 KiB (a memmove each instead
// of a recv() each).
//
// Unacknowledged data is never copied anywhere: it stays in the host socket, and a
// retransmission peeks it again (SO_PEEK_OFF rewound to the segment's offset).

import { setU16, setU32 } from "../wire/bytes.ts";
import {
  emitTcp,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  writeTcpOptions,
  writeTcpSack,
  writeTcpTimestamp,
} from "../wire/tcp.ts";
import { EAGAIN, errnoName } from "../../ffi/errno.ts";
import { EPOLLIN, PROTO_TCP } from "../base/names.ts";
import { asSeq, type Seq, seqAdd, seqGt, seqLt } from "./seq.ts";
import {
  CLOSE_WAIT,
  type Conn,
  CONNECTING,
  ESTABLISHED,
  FIN_WAIT_1,
  type HostSocket,
  LAST_ACK,
  SYN_SENT,
  synchronized,
  TIME_WAIT,
  weMaySend,
} from "./conn.ts";
import type { TcpEngine } from "./engine.ts";
import { finish, receiveWindow, updateInterest } from "./host.ts";
import { armRtx, persistIfStalled } from "./rto.ts";
import { CUT_CHUNK, CUT_SEG_MAX, PUSH_ROUNDS_MAX, TS_OPTION_LEN } from "./tunables.ts";

export const TH_FIN = TCP_FIN;
export const TH_SYN = TCP_SYN;
export const TH_RST = TCP_RST;
const TH_PSH = TCP_PSH;
export const TH_ACK = TCP_ACK;

/** Our timestamp clock (RFC 7323 §5.4: 1 ms ticks), u32. */
export function tsNow(t: TcpEngine): number {
  return Math.floor(t.now()) >>> 0;
}

/** Payload per segment for a header of hdrLen: SMSS less the SACK blocks it carries. */
function segSize(c: Conn, hdrLen: number): number {
  return c.mss - (hdrLen - 20 - (c.tsOk ? TS_OPTION_LEN : 0));
}

/**
 * Header length of a non-SYN segment for c, with the SACK blocks it will carry computed into
 * t.sackOut/t.nSackOut (so the payload can be peeked to its place before the header exists).
 */
function dataHeaderLen(t: TcpEngine, c: Conn): number {
  let n = 20;
  if (c.tsOk) n += TS_OPTION_LEN;
  t.nSackOut = 0;
  if (c.sackOk && c.store.ranges > 0) {
    t.nSackOut = c.store.sackBlocks(c.hostSeq, c.rcvNxt, t.sackOut, c.tsOk ? 3 : 4);
    if (t.nSackOut > 0) n += 4 + 8 * t.nSackOut;
  }
  return n;
}

function writeBase(
  b: Uint8Array,
  o: number,
  c: Conn,
  seq: number,
  ack: number,
  flags: number,
  hdrLen: number,
  wnd: number,
): void {
  emitTcp(b, o, c.remotePort, c.guestPort, seq, ack, flags, wnd, hdrLen - 20);
}

/** The window field for c (scaled), recording the advertised right edge in c.rcvAdv. */
function windowField(c: Conn, syn: boolean): number {
  const shift = syn ? 0 : c.rcvWscale;
  let w = receiveWindow(c);
  // Never move the right edge left (RFC 9293 §3.8.6.2.2: a receiver should not shrink its
  // window): round up so the scaled value still reaches the old edge.
  if (seqLt(seqAdd(c.rcvNxt, w), c.rcvAdv)) {
    w = ((c.rcvAdv - c.rcvNxt) >>> 0) + (1 << shift) - 1;
  }
  let v = w >>> shift;
  if (v > 0xffff) v = 0xffff;
  const edge = seqAdd(c.rcvNxt, v * (1 << shift));
  if (seqGt(edge, c.rcvAdv)) c.rcvAdv = edge;
  return v;
}

/**
 * Writes the header of a non-SYN segment (payload already at hdrLen after the L4 offset,
 * hdrLen from dataHeaderLen) and sends it. Every segment carries the current ACK and window,
 * so it also settles any pending ACK.
 */
function sendSegment(
  t: TcpEngine,
  c: Conn,
  flags: number,
  seq: number,
  payloadLen: number,
  hdrLen: number,
  gsoSize: number,
): boolean {
  const tx = t.tx;
  const b = tx.buf;
  const o = tx.l4Offset(c.family);
  const wnd = windowField(c, false);
  writeBase(b, o, c, seq, c.rcvNxt, flags, hdrLen, wnd);
  let p = o + 20;
  if (c.tsOk) p += writeTcpTimestamp(b, p, tsNow(t), c.tsRecent);
  if (t.nSackOut > 0) writeTcpSack(b, p, t.sackOut, t.nSackOut);
  t.stats.segsOut++;
  if (!tx.sendIp(c.family, c.remoteAddr, c.guestAddr, PROTO_TCP, hdrLen + payloadLen, gsoSize)) {
    return false; // the ACK it carried was not sent: still pending
  }
  c.lastAckSent = c.rcvNxt;
  c.ackPending = false;
  return true;
}

/** A pure ACK (with SACK blocks when out-of-order data is held). */
export function sendAck(t: TcpEngine, c: Conn): void {
  c.wndCache = -1;
  const hdr = dataHeaderLen(t, c);
  sendSegment(t, c, TH_ACK, c.sndNxt, 0, hdr, 0);
}

/**
 * A probe the guest must answer with an ACK (keepalive, zero-window probe): an old sequence
 * number (sndUna - 1) and no data, as Linux sends them; nothing new enters the sequence space.
 */
export function sendProbe(t: TcpEngine, c: Conn): void {
  const hdr = dataHeaderLen(t, c);
  sendSegment(t, c, TH_ACK, seqAdd(c.sndUna, -1), 0, hdr, 0);
}

/** SYN (active open) or SYN-ACK, with the options the guest offered (or all of ours). */
export function sendSyn(t: TcpEngine, c: Conn, withAck: boolean): void {
  const tx = t.tx;
  const b = tx.buf;
  const o = tx.l4Offset(c.family);
  c.wndCache = -1;
  const so = t.synOpts;
  so.mss = ourMss(t, c.family);
  so.sackPermitted = c.sackOk;
  so.hasTimestamp = c.tsOk;
  so.tsVal = tsNow(t);
  so.tsEcr = withAck ? c.tsRecent : 0;
  // Window scaling only when the guest offered it (RFC 7323 §2.2), or in our own SYN.
  so.wscale = c.rcvWscale > 0 || c.state === SYN_SENT ? c.rcvWscale : -1;
  const hdrLen = 20 + writeTcpOptions(b, o + 20, so);
  const wnd = windowField(c, true);
  writeBase(b, o, c, c.iss, withAck ? c.rcvNxt : 0, TH_SYN | (withAck ? TH_ACK : 0), hdrLen, wnd);
  t.stats.segsOut++;
  if (!tx.sendIp(c.family, c.remoteAddr, c.guestAddr, PROTO_TCP, hdrLen, 0)) return;
  c.lastAckSent = c.rcvNxt;
  c.ackPending = false;
}

/** RST|ACK for an existing connection (host reset, abort, timeout). */
export function sendRst(t: TcpEngine, c: Conn): void {
  const tx = t.tx;
  const o = tx.l4Offset(c.family);
  writeBase(tx.buf, o, c, c.sndNxt, c.rcvNxt, TH_RST | TH_ACK, 20, 0);
  t.stats.resetsSent++;
  tx.sendIp(c.family, c.remoteAddr, c.guestAddr, PROTO_TCP, 20, 0);
}

/**
 * The reply to a segment that belongs to no connection (RFC 9293 §3.10.7.1): RST with
 * seq = SEG.ACK if the segment had ACK, else RST|ACK with ack = SEG.SEQ + SEG.LEN. Addresses
 * and ports are read in place from the received packet.
 */
export function sendRstReply(
  t: TcpEngine,
  family: 4 | 6,
  b: Uint8Array,
  srcOff: number,
  dstOff: number,
  srcPort: number,
  dstPort: number,
  segSeq: number,
  segAck: number,
  segFlags: number,
  segLen: number,
): void {
  const tx = t.tx;
  const ob = tx.buf;
  const o = tx.l4Offset(family);
  setU16(ob, o, dstPort);
  setU16(ob, o + 2, srcPort);
  if (segFlags & TH_ACK) {
    setU32(ob, o + 4, segAck);
    setU32(ob, o + 8, 0);
    ob[o + 13] = TH_RST;
  } else {
    let len = segLen;
    if (segFlags & TH_SYN) len++;
    if (segFlags & TH_FIN) len++;
    setU32(ob, o + 4, 0);
    setU32(ob, o + 8, seqAdd(segSeq, len));
    ob[o + 13] = TH_RST | TH_ACK;
  }
  ob[o + 12] = 5 << 4;
  setU16(ob, o + 14, 0);
  setU16(ob, o + 16, 0);
  setU16(ob, o + 18, 0);
  t.stats.resetsSent++;
  tx.sendIpAt(family, b, dstOff, b, srcOff, PROTO_TCP, 20, 0);
}

/** The MSS we announce: what fits one frame of our MTU. */
export function ourMss(t: TcpEngine, family: 4 | 6): number {
  return Math.min(0xffff, t.tx.maxL4(family) - 20);
}

/**
 * Payload bytes one send may carry: one segment, or with GSO a super-frame of whole
 * segments. seg is the payload per segment: the MSS minus the options (RFC 6691).
 */
function maxSegment(t: TcpEngine, c: Conn, seg: number): number {
  if (!t.tx.gso) return seg;
  // IPv4 total length / IPv6 payload length are 16 bits; 60 = the largest TCP header.
  const room = 0xffff - (c.family === 4 ? 20 : 0) - 60;
  const n = Math.floor(room / seg);
  return n > 0 ? n * seg : seg;
}

/**
 * Sends what the guest's window and cwnd allow, from sndNxt: new host data, a retransmission
 * (sndNxt < sndMax after a timeout), and our FIN once the host socket is at EOF. Data is
 * peeked straight into the Tx buffer.
 */
export function pushData(t: TcpEngine, c: Conn): void {
  const sock = c.sock;
  if (sock === null || !synchronized(c.state)) return;
  const tx = t.tx;
  const l4 = tx.l4Offset(c.family);
  c.wndCache = -1; // one window computation per push, not per segment
  for (let round = 0; round < PUSH_ROUNDS_MAX; round++) {
    if (c.finSent && c.sndNxt === seqAdd(c.finSeq, 1)) break; // everything is out
    // Retransmitting below sndMax is allowed in any state; new data only before our FIN.
    if (!weMaySend(c.state) && !seqLt(c.sndNxt, c.sndMax)) break;
    const inFlight = (c.sndNxt - c.sndUna) | 0;
    const limit = c.cwnd < c.sndWnd ? c.cwnd : c.sndWnd;
    let wnd = limit - inFlight;
    if (c.finSent && c.sndNxt === c.finSeq) wnd = wnd > 0 ? wnd : 0; // only the FIN is left
    else if (wnd <= 0) break;
    // Sender SWS avoidance (RFC 9293 §3.8.6.2.1): no slivers while data is in flight.
    if (wnd < c.mss && wnd < (c.sndWnd >>> 1) && inFlight > 0) break;
    const hdr = dataHeaderLen(t, c);
    const seg = segSize(c, hdr);
    let n: number;
    if (c.finSent && c.sndNxt === c.finSeq) n = 0; // known EOF: no need to peek
    else {
      // Without GSO, small segments are cut from one peek of up to 64 KiB (see sendCut).
      const cut = !tx.gso && seg <= CUT_SEG_MAX;
      let maxSeg = cut ? Math.floor(CUT_CHUNK / seg) * seg : maxSegment(t, c, seg);
      if (!cut) {
        // At least two frames per cwnd (like Linux's TSO autosizing): the loss of one is
        // then seen from the SACK for the next, not after a probe timeout.
        const half = Math.floor((c.cwnd >>> 1) / seg) * seg;
        if (half < maxSeg) maxSeg = half > seg ? half : seg;
      }
      let len = wnd < maxSeg ? wnd : maxSeg;
      if (c.nSacked > 0 && seqLt(c.sndNxt, c.sndMax)) {
        // Resending after a timeout: what the guest SACKed since is not sent again.
        len = skipSacked(c, sock, len);
        if (len <= 0) continue;
      }
      // The last peek found nothing and epoll watches for more: it will say when (a peek per
      // guest ACK would be a syscall each, answered EAGAIN).
      if (c.hostDry && (c.events & EPOLLIN) !== 0 && c.sndNxt === c.sndMax) break;
      n = sock.peek(tx.buf, cut ? tx.buf.length - CUT_CHUNK : l4 + hdr, len);
      if (n > 0) {
        const ok = cut
          ? sendCut(t, c, hdr, seg, n, n < len)
          : sendOne(t, c, TH_ACK | (n < len ? TH_PSH : 0), n, hdr, n > seg ? seg : 0);
        if (!ok) {
          // The tap is full: sndNxt stays where the guest got to, and so must the kernel's
          // peek offset (the rest goes again later).
          sock.setPeekOffset((c.sndNxt - c.sndUna) >>> 0);
          armRtx(t, c);
          break;
        }
        continue; // (after a short read the next peek finds EOF, or EAGAIN)
      }
      if (n === -EAGAIN) {
        c.hostDry = true;
        break;
      }
      if (n < 0) {
        hostError(t, c, -n);
        return;
      }
    }
    // n === 0: the host socket is at EOF and every byte before it has been sent: FIN.
    c.hostEof = true;
    if (!c.finSent) {
      c.finSent = true;
      c.finSeq = c.sndNxt;
      if (c.state === ESTABLISHED) c.state = FIN_WAIT_1;
      else if (c.state === CLOSE_WAIT) c.state = LAST_ACK;
    }
    sendSegment(t, c, TH_FIN | TH_ACK, c.finSeq, 0, hdr, 0);
    c.sndNxt = seqAdd(c.finSeq, 1);
    if (seqGt(c.sndNxt, c.sndMax)) c.sndMax = c.sndNxt;
    armRtx(t, c);
    break;
  }
  persistIfStalled(t, c);
  updateInterest(t, c);
}

/** Sends n bytes already in place as one segment or GSO frame at sndNxt, and books them. */
function sendOne(t: TcpEngine, c: Conn, flags: number, n: number, hdr: number, gso: number) {
  const seq = c.sndNxt;
  if (!sendSegment(t, c, flags, seq, n, hdr, gso)) return false;
  sent(t, c, seq, n);
  return true;
}

/**
 * Without GSO every segment is its own frame. Rather than one recv(MSG_PEEK) per segment,
 * n bytes were peeked at once into the upper half of the Tx buffer; each segment's payload
 * is moved in front (copyWithin: a memmove, no allocation) and sent. False when the tap
 * refused a frame (sndNxt then stops there).
 */
function sendCut(t: TcpEngine, c: Conn, hdr: number, seg: number, n: number, push: boolean) {
  const b = t.tx.buf;
  const src = b.length - CUT_CHUNK;
  const dst = t.tx.l4Offset(c.family) + hdr;
  for (let o = 0; o < n; o += seg) {
    const k = n - o < seg ? n - o : seg;
    b.copyWithin(dst, src + o, src + o + k);
    if (!sendOne(t, c, TH_ACK | (push && o + k === n ? TH_PSH : 0), k, hdr, 0)) return false;
  }
  return true;
}

/** Books n bytes sent at seq: sndNxt/sndMax, the RTT timing (Karn), the timer. */
function sent(t: TcpEngine, c: Conn, seq: Seq, n: number): void {
  if (!c.tsOk && c.rttTime < 0 && !seqLt(seq, c.sndMax)) {
    c.rttSeq = seqAdd(seq, n);
    c.rttTime = t.now();
  }
  c.sndNxt = seqAdd(seq, n);
  if (seqGt(c.sndNxt, c.sndMax)) {
    c.bytesFromHost += (c.sndNxt - c.sndMax) | 0;
    c.sndMax = c.sndNxt;
  } else t.stats.retransmittedBytes += n;
  armRtx(t, c);
}

/**
 * Moves sndNxt past a SACKed block it is in (and the peek offset with it); returns len
 * clamped to end at the next SACKed block, or 0 when sndNxt moved (the caller loops).
 */
function skipSacked(c: Conn, sock: HostSocket, len: number): number {
  for (let i = 0; i < c.nSacked; i++) {
    const l = c.sacked[2 * i], r = c.sacked[2 * i + 1];
    if (!seqLt(c.sndNxt, l) && seqLt(c.sndNxt, r)) {
      c.sndNxt = seqLt(r, c.sndMax) ? asSeq(r) : c.sndMax;
      sock.setPeekOffset((c.sndNxt - c.sndUna) >>> 0);
      return 0;
    }
    if (seqGt(l, c.sndNxt)) {
      const gap = (l - c.sndNxt) | 0;
      return gap < len ? gap : len;
    }
  }
  return len;
}

/**
 * Retransmits from `seq` (at most `maxLen` bytes, not past sndMax; with GSO a whole hole can
 * go as one super-frame) without moving sndNxt: fast retransmit, SACK hole filling, tail
 * loss probes. Returns the bytes sent (1 for a lone FIN).
 */
export function retransmitAt(t: TcpEngine, c: Conn, seq: number, maxLen: number): number {
  const sock = c.sock;
  if (sock === null) return 0;
  if (c.finSent && seq === c.finSeq) {
    const hdr = dataHeaderLen(t, c);
    sendSegment(t, c, TH_FIN | TH_ACK, seq, 0, hdr, 0);
    return 1;
  }
  const end = c.finSent ? c.finSeq : c.sndMax;
  const hdr = dataHeaderLen(t, c);
  const seg = segSize(c, hdr);
  const most = maxSegment(t, c, seg);
  let len = (end - seq) | 0;
  if (len > maxLen) len = maxLen;
  if (len > most) len = most;
  if (len <= 0) return 0;
  const l4 = t.tx.l4Offset(c.family);
  sock.setPeekOffset((seq - c.sndUna) >>> 0);
  const n = sock.peek(t.tx.buf, l4 + hdr, len);
  sock.setPeekOffset((c.sndNxt - c.sndUna) >>> 0);
  if (n <= 0) return 0;
  sendSegment(t, c, TH_ACK, seq, n, hdr, n > seg ? seg : 0);
  t.stats.retransmittedBytes += n;
  if (c.rttTime >= 0 && seqGt(c.rttSeq, seq)) c.rttTime = -1; // Karn: that sample is void
  return n;
}

/** An ACK is owed: sent by the flush at the end of the current batch (or piggybacked). */
export function ackLater(t: TcpEngine, c: Conn): void {
  c.ackPending = true;
  flushLater(t, c);
}

/** Puts c on the end-of-batch list (gathered host writes, deferred ACKs). */
export function flushLater(t: TcpEngine, c: Conn): void {
  if (c.listed) return;
  c.listed = true;
  c.ackNext = t.ackList;
  t.ackList = c;
}

/** A host socket error (ECONNRESET, EPIPE, ...): RST to the guest, connection gone. */
export function hostError(t: TcpEngine, c: Conn, err: number): void {
  t.stats.hostResets++;
  if (!t.cfg.quiet) c.doneNote = errnoName(err);
  if (c.state !== CONNECTING && c.state !== TIME_WAIT) sendRst(t, c);
  finish(t, c, true);
}

/**
 * Gives up on the connection (retransmission or keepalive timeout, a port forward removed):
 * RST both ways.
 */
export function resetConn(t: TcpEngine, c: Conn, why: string): void {
  c.doneNote = why;
  if (c.state !== CONNECTING && c.state !== TIME_WAIT) sendRst(t, c);
  finish(t, c, true);
}
