// Segments from the guest: RFC 9293 §3.10.7 "SEGMENT ARRIVES", in its order (sequence
// check, RST, SYN, ACK, data, FIN), with RFC 5961's challenge ACKs, RFC 7323's PAWS and
// TS.Recent rule, and RFC 2018 SACK blocks feeding the scoreboard.
//
// The flow lookup hashes the 4-tuple read in place from the frame; a SYN for no connection
// is a connection request (policy, then host connect(); a refusal is a RST, an unreachable
// destination ICMP network unreachable); anything else for no connection gets the RFC's RST.

import type { PacketMeta } from "../ip/meta.ts";
import { PROTO_ICMP, PROTO_ICMPV6 } from "../base/names.ts";
import { emitIcmpv4Unreachable, ICMP_NET_UNREACH } from "../wire/icmpv4.ts";
import { emitIcmpv6Unreachable, ICMPV6_NOROUTE } from "../wire/icmpv6.ts";
import { asSeq, type Seq, seqAdd, seqGt, seqInWindow, seqLe, seqLt } from "./seq.ts";
import {
  CLOSE_WAIT,
  CLOSING,
  type Conn,
  CONNECTING,
  ESTABLISHED,
  FIN_WAIT_1,
  FIN_WAIT_2,
  guestMaySend,
  LAST_ACK,
  SYN_RCVD,
  SYN_SENT,
  TIME_WAIT,
} from "./conn.ts";
import type { TcpEngine } from "./engine.ts";
import { enterTimeWait, evictTimeWait, finish, maybeClose, updateInterest } from "./host.ts";
import { initCongestion } from "./rto.ts";
import {
  ackLater,
  hostError,
  ourMss,
  pushData,
  sendAck,
  sendRst,
  sendRstReply,
  sendSyn,
  TH_ACK,
  TH_FIN,
  TH_RST,
  TH_SYN,
} from "./output.ts";
import { onDupAck, onNewAck, updateSacked } from "./retransmit.ts";
import { guestData, guestReset, hostShutdownIfDone, startConnect } from "./forwarder.ts";
import {
  DEFAULT_MSS_V4,
  DEFAULT_MSS_V6,
  HALF_OPEN_BUCKETS,
  HALF_OPEN_CONNECTING_EVICT_AGE_MS,
  HALF_OPEN_EVICT_AGE_MS,
  MIN_MSS,
  OUR_WSCALE,
  TS_OPTION_LEN,
} from "./tunables.ts";

/** Entry point: one TCP segment from the guest (IP layer already validated). */
export function tcpInput(t: TcpEngine, m: PacketMeta): void {
  const v = t.view;
  t.stats.segsIn++;
  if (!v.parse(m.b, m.l4Off, m.l4Len) || !v.parseOptions(t.opts)) {
    t.stats.dropMalformed++;
    return;
  }
  if (!m.csumTrusted && !v.verifyChecksum(m.family === 4 ? 4 : 16, m.srcOff, m.dstOff)) {
    t.stats.dropBadChecksum++;
    return;
  }
  const c = t.table.lookup(m.family, m.b, m.srcOff, v.srcPort, m.dstOff, v.dstPort);
  if (c === null) noConnection(t, m);
  else segmentArrives(t, c, m);
}

/** RFC 9293 §3.10.7.1/2: CLOSED (no connection) and LISTEN. */
function noConnection(t: TcpEngine, m: PacketMeta): void {
  const v = t.view;
  const flags = v.flags;
  if (flags & TH_RST) return;
  if ((flags & (TH_SYN | TH_ACK)) === TH_SYN && v.srcPort !== 0 && v.dstPort !== 0) {
    listen(t, m);
    return;
  }
  t.stats.noConnection++;
  replyRst(t, m);
}

function replyRst(t: TcpEngine, m: PacketMeta): void {
  const v = t.view;
  sendRstReply(
    t,
    m.family,
    m.b,
    m.srcOff,
    m.dstOff,
    v.srcPort,
    v.dstPort,
    v.seq,
    v.ack,
    v.flags,
    v.payloadLen,
  );
}

/**
 * ICMP network unreachable for the SYN `m`, from the address it was sent to, quoting its IP
 * header and the first 8 bytes of TCP (ports and sequence number: what the guest kernel
 * matches the error against). In SYN-SENT the guest's connect() then fails at once with
 * ENETUNREACH, as behind a router without a route.
 */
function replyNetUnreachable(t: TcpEngine, m: PacketMeta): void {
  const tx = t.tx;
  const l4 = tx.l4Offset(m.family);
  const quote = m.l4Off - m.ipOff + Math.min(m.l4Len, 8);
  let n: number;
  if (m.family === 4) {
    n = emitIcmpv4Unreachable(tx.buf, l4, ICMP_NET_UNREACH, m.b, m.ipOff, quote);
  } else {
    // The checksum is redone by tx.sendIpAt (pseudo header from the same addresses).
    const b = m.b;
    const src = b.subarray(m.dstOff, m.dstOff + 16), dst = b.subarray(m.srcOff, m.srcOff + 16);
    n = emitIcmpv6Unreachable(tx.buf, l4, ICMPV6_NOROUTE, src, dst, b, m.ipOff, quote);
  }
  if (n === 0) return;
  tx.sendIpAt(
    m.family,
    m.b,
    m.dstOff,
    m.b,
    m.srcOff,
    m.family === 4 ? PROTO_ICMP : PROTO_ICMPV6,
    n,
  );
}

/** A new connection request: policy, table room, then the host connect(). */
function listen(t: TcpEngine, m: PacketMeta): void {
  const v = t.view;
  const o = t.opts;
  const alen = m.family === 4 ? 4 : 16;
  // Addresses are copied once per flow (a SYN), never per segment, and shared (addrs.ts).
  const remote = t.addrs.get(m.b, m.dstOff, alen);
  const admission = t.cfg.admit(m.family, remote, v.dstPort);
  if (admission === "refused" || admission === "unreachable" || admission === "dropped") {
    if (admission === "dropped") {
      t.stats.silentDrops++;
    } else if (admission === "unreachable") {
      t.stats.unreachable++;
      replyNetUnreachable(t, m);
    } else {
      t.stats.policyRefused++;
      replyRst(t, m);
    }
    return;
  }
  // SYN flood bounds: a SYN is a real host connect(), so the half-open ones are bounded per
  // destination and in all; the oldest goes first (tunables.ts MAX_HALF_OPEN*).
  const bucket = halfOpenBucket(remote, v.dstPort);
  if (t.halfOpenIn(bucket) >= t.maxHalfOpenPerDst && !evictHalfOpen(t, t.halfOpenOldest(bucket))) {
    t.stats.synDropped++;
    return;
  }
  if (t.halfOpenCount >= t.maxHalfOpen && !evictHalfOpen(t, t.halfOpenOldest())) {
    t.stats.synDropped++;
    return;
  }
  if (t.table.full) evictTimeWait(t);
  if (t.table.full) {
    t.stats.tableFull++;
    replyRst(t, m);
    return;
  }
  const c = t.newConn(m.family, t.addrs.get(m.b, m.srcOff, alen), v.srcPort, remote, v.dstPort);
  const seq = asSeq(v.seq);
  c.irs = seq;
  c.rcvNxt =
    c.hostSeq =
    c.rcvAdv =
    c.lastAckSent =
      seqAdd(seq, 1);
  // Options (RFC 9293 §3.7.1 default MSS; RFC 7323 §2.2: scale only if both offer it).
  c.mss = negotiatedMss(t, m.family, o.mss, o.hasTimestamp);
  if (o.wscale >= 0) {
    c.sndWscale = o.wscale;
    c.rcvWscale = OUR_WSCALE;
  }
  c.sackOk = o.sackPermitted;
  c.tsOk = o.hasTimestamp;
  c.tsRecent = o.tsVal;
  c.sndWnd = v.window; // never scaled in a SYN
  c.sndWl1 = seq;
  c.iss = t.newIss();
  c.sndUna =
    c.sndNxt =
    c.sndMax =
    c.sndWl2 =
    c.recover =
      c.iss;
  initCongestion(c);
  c.state = CONNECTING;
  c.synAt = t.now();
  t.table.insert(c);
  t.halfOpenAdd(c, bucket);
  // Data or FIN on the SYN is not accepted now: the guest sends it again after the handshake.
  if (!startConnect(t, c, admission) && !c.finished) {
    replyRst(t, m);
    finish(t, c, false);
  }
}

/** The half-open bucket of a destination (FNV-1a over address and port). */
function halfOpenBucket(addr: Uint8Array, port: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < addr.length; i++) h = Math.imul(h ^ addr[i], 0x01000193);
  h = Math.imul(h ^ (port >> 8), 0x01000193);
  h = Math.imul(h ^ (port & 0xff), 0x01000193);
  return (h >>> 0) & (HALF_OPEN_BUCKETS - 1);
}

/**
 * Gives up a half-open connection for a newer SYN (RST to the guest, abort to the host) when
 * it is old enough (HALF_OPEN_EVICT_AGE_MS); false when it is not: the new SYN waits.
 */
function evictHalfOpen(t: TcpEngine, c: Conn | null): boolean {
  if (c === null) return false;
  const minAge = c.state === CONNECTING
    ? HALF_OPEN_CONNECTING_EVICT_AGE_MS
    : HALF_OPEN_EVICT_AGE_MS;
  if (t.now() - c.synAt < minAge) return false;
  t.stats.halfOpenEvicted++;
  c.doneNote = "half-open, evicted";
  sendRst(t, c); // in CONNECTING: RST|ACK acknowledging its SYN (RFC 9293 §3.10.7.1)
  finish(t, c, true);
  return true;
}

/**
 * RFC 9293 §3.10.7.4 (and .3 for SYN-SENT) for a segment of an existing connection, in the
 * RFC's order of steps, each a function below. A step that consumed the segment returns
 * false (or ACK_DONE): the rest is skipped.
 */
function segmentArrives(t: TcpEngine, c: Conn, m: PacketMeta): void {
  const v = t.view;
  const flags = v.flags;
  const seq = asSeq(v.seq);
  const len = v.payloadLen;
  c.lastHeard = t.now();
  c.kaProbes = 0;
  if (!byState(t, c, m, flags, seq)) return;
  // First: is the segment acceptable?
  if (!acceptable(t, c, flags, seq, len)) return;
  // Second: RST.
  if (flags & TH_RST) {
    rstArrives(t, c, seq);
    return;
  }
  // (Third, security and precedence: not used.) Fourth: SYN in a synchronized state.
  if (flags & TH_SYN) {
    synArrives(t, c);
    return;
  }
  // Fifth: ACK (a segment without it is dropped).
  if (!(flags & TH_ACK)) return;
  const acked = ackArrives(t, c, m, flags, seq, len);
  if (acked === ACK_DONE) return;
  // Sixth, URG: not used (the urgent pointer is ignored, the bytes go in line as data).
  // Seventh: segment text.
  if (!textArrives(t, c, m, seq, len)) return;
  // Eighth: FIN.
  if (!finArrives(t, c, flags, seq, len)) return;
  afterSegment(t, c, acked === ACK_MOVED);
}

/**
 * Before the sequence check, what depends on the state alone: a connection still connecting
 * to the host, the answer to our SYN, a repeated SYN, a new SYN reusing a TIME-WAIT 4-tuple.
 * False when that was all.
 */
function byState(t: TcpEngine, c: Conn, m: PacketMeta, flags: number, seq: Seq): boolean {
  switch (c.state) {
    case CONNECTING:
      // The host connect() is still running: a retransmitted SYN changes nothing (it must
      // not start a second connection); a RST abandons the attempt.
      if (flags & TH_RST && (seq === c.rcvNxt || seq === c.irs)) finish(t, c, true);
      return false;
    case SYN_SENT:
      synSent(t, c, m);
      return false;
    case SYN_RCVD:
      if ((flags & (TH_SYN | TH_ACK)) === TH_SYN && seq === c.irs) {
        sendSyn(t, c, true); // the guest did not get our SYN-ACK
        return false;
      }
      return true;
    case TIME_WAIT:
      // A new SYN reopens the 4-tuple (RFC 6191): by timestamp when the old incarnation
      // used them and the SYN carries one (newer than TS.Recent), else by sequence number
      // (above RCV.NXT). Anything else is an old duplicate and goes the usual way.
      if ((flags & (TH_SYN | TH_ACK)) === TH_SYN && reopens(t, c, seq)) {
        finish(t, c, false);
        listen(t, m);
        return false;
      }
      return true;
  }
  return true;
}

/** RFC 6191: may this SYN (sequence number `seq`) start a new incarnation in TIME-WAIT? */
function reopens(t: TcpEngine, c: Conn, seq: Seq): boolean {
  const o = t.opts;
  if (c.tsOk && o.hasTimestamp) return ((o.tsVal - c.tsRecent) | 0) > 0;
  return seqGt(seq, c.rcvNxt);
}

/**
 * First step: the sequence check (RFC 9293 §3.10.7.4, the four cases) and PAWS. An
 * unacceptable segment is answered with an ACK (unless it is a RST) and dropped.
 */
function acceptable(t: TcpEngine, c: Conn, flags: number, seq: Seq, len: number): boolean {
  let segLen = len;
  if (flags & TH_SYN) segLen++;
  if (flags & TH_FIN) segLen++;
  const wnd = (c.rcvAdv - c.rcvNxt) | 0;
  let ok: boolean;
  if (segLen === 0 || wnd <= 0) {
    // A zero window still takes ACKs and RSTs (its data is clipped away later).
    ok = wnd <= 0 ? seq === c.rcvNxt : seqInWindow(seq, c.rcvNxt, wnd);
  } else {
    ok = seqInWindow(seq, c.rcvNxt, wnd) || seqInWindow(seqAdd(seq, segLen - 1), c.rcvNxt, wnd);
  }
  // PAWS (RFC 7323 §5.3): an old timestamp marks an old duplicate.
  const o = t.opts;
  if (ok && c.tsOk && o.hasTimestamp && !(flags & TH_RST) && seqLt(o.tsVal, c.tsRecent)) {
    t.stats.pawsDrops++;
    ok = false;
  }
  if (!ok) {
    t.stats.outOfWindow++;
    if (!(flags & TH_RST)) sendAck(t, c);
  }
  return ok;
}

/** Second step, RST (RFC 5961 §3.2: only an exact match resets, the rest gets a challenge ACK). */
function rstArrives(t: TcpEngine, c: Conn, seq: Seq): void {
  if (seq === c.rcvNxt) guestReset(t, c);
  else {
    t.stats.challengeAcks++;
    sendAck(t, c);
  }
}

/** Fourth step, SYN in a synchronized state (RFC 5961 §4): a challenge ACK. */
function synArrives(t: TcpEngine, c: Conn): void {
  t.stats.challengeAcks++;
  sendAck(t, c);
}

/** ackArrives' answers: the segment is consumed; go on; go on, and send what it made room for. */
const ACK_DONE = 0, ACK_OK = 1, ACK_MOVED = 2;

/**
 * Fifth step, ACK: TS.Recent, the handshake's end, new data acknowledged (RTT, congestion
 * control), duplicate ACKs, the send window, our FIN acknowledged, and TIME-WAIT's one case.
 */
function ackArrives(
  t: TcpEngine,
  c: Conn,
  m: PacketMeta,
  flags: number,
  seq: Seq,
  len: number,
): number {
  const v = t.view;
  const o = t.opts;
  // TS.Recent (RFC 7323 §4.3): from a segment covering the last ACK we sent.
  if (c.tsOk && o.hasTimestamp && seqLe(seq, c.lastAckSent)) c.tsRecent = o.tsVal;
  const ack = asSeq(v.ack);
  if (c.state === SYN_RCVD) {
    if (!seqGt(ack, c.sndUna) || seqGt(ack, c.sndMax)) {
      replyRst(t, m);
      return ACK_DONE;
    }
    established(t, c);
  }
  if (seqGt(ack, c.sndMax)) {
    sendAck(t, c); // acknowledges something not yet sent
    return ACK_DONE;
  }
  const segWnd = v.window * (1 << c.sndWscale);
  const newSack = c.sackOk && o.sackCount > 0 && updateSacked(c, o.sackBlocks, o.sackCount);
  let moved = false;
  if (seqGt(ack, c.sndUna)) {
    if (!ackNewData(t, c, ack, o.hasTimestamp ? o.tsEcr : -1)) return ACK_DONE;
    moved = true;
  } else if (
    ack === c.sndUna && len === 0 && !(flags & TH_FIN) && c.sndMax !== c.sndUna &&
    (newSack || (o.sackCount === 0 && segWnd === c.sndWnd))
  ) {
    // A duplicate ACK: RFC 6675 (new SACK information) or RFC 5681 (same window, no SACK).
    t.stats.dupAcks++;
    onDupAck(t, c);
  }
  if (updateSendWindow(c, seq, ack, segWnd)) moved = true;
  if (c.finSent && c.sndUna === seqAdd(c.finSeq, 1) && !ourFinAcked(t, c)) return ACK_DONE;
  if (c.state === TIME_WAIT) {
    // Only a retransmitted FIN is expected here: ACK it and restart the 2*MSL wait.
    if (flags & TH_FIN) {
      sendAck(t, c);
      enterTimeWait(t, c);
    }
    return ACK_DONE;
  }
  return moved ? ACK_MOVED : ACK_OK;
}

/**
 * The send window from a newer segment (RFC 9293 §3.10.7.4: SND.UNA =< SEG.ACK, and the
 * SND.WL1/SND.WL2 rule). True when the window changed (there may be room to send). A window
 * that reopens ends the persist timer's backoff (the guest answered; Linux clears it the same
 * way): the first retransmission timeout afterwards starts from the plain RTO again.
 */
function updateSendWindow(c: Conn, seq: Seq, ack: Seq, segWnd: number): boolean {
  if (seqLt(ack, c.sndUna)) return false; // an old ACK says nothing about the window now
  if (!(seqLt(c.sndWl1, seq) || (c.sndWl1 === seq && seqLe(c.sndWl2, ack)))) return false;
  if (c.sndWnd === 0 && segWnd > 0) {
    c.backoff = 0;
    c.probeDone = false;
  }
  const changed = segWnd !== c.sndWnd;
  c.sndWnd = segWnd;
  c.sndWl1 = seq;
  c.sndWl2 = ack;
  return changed;
}

/**
 * Our FIN is acknowledged: FIN-WAIT-1 → FIN-WAIT-2, CLOSING → TIME-WAIT, LAST-ACK → closed
 * (once the host side is done too). False when that consumed the segment.
 */
function ourFinAcked(t: TcpEngine, c: Conn): boolean {
  if (c.state === FIN_WAIT_1) c.state = FIN_WAIT_2;
  else if (c.state === CLOSING) {
    enterTimeWait(t, c);
    return false;
  } else if (c.state === LAST_ACK) {
    maybeClose(t, c);
    if (c.finished) return false;
  }
  return true;
}

/** Seventh step, segment text: to the host socket. False when the connection went away. */
function textArrives(t: TcpEngine, c: Conn, m: PacketMeta, seq: Seq, len: number): boolean {
  if (len > 0 && guestMaySend(c.state) && !c.finRcvd) {
    guestData(t, c, m.b, t.view.payloadOffset, len, seq);
    if (c.finished) return false;
  }
  return true;
}

/**
 * Eighth step, FIN, once everything before it has been received: carried over to the host
 * (half-close) and acknowledged. False when that consumed the segment.
 */
function finArrives(t: TcpEngine, c: Conn, flags: number, seq: Seq, len: number): boolean {
  if (!(flags & TH_FIN) || c.finRcvd || seqAdd(seq, len) !== c.rcvNxt) return true;
  c.finRcvd = true;
  c.rcvNxt = seqAdd(c.rcvNxt, 1);
  t.stats.finsRcvd++;
  if (c.state === ESTABLISHED || c.state === SYN_RCVD) c.state = CLOSE_WAIT;
  else if (c.state === FIN_WAIT_1) c.state = CLOSING;
  hostShutdownIfDone(t, c);
  if (c.finished) return false;
  if (c.state === FIN_WAIT_2) {
    sendAck(t, c);
    enterTimeWait(t, c);
    return false;
  }
  // Acknowledged at the end of the batch (afterSegment): a guest that closes and connects
  // again at once (TCP_CRR) has its next SYN in the same batch, and that SYN's host connect
  // should not wait behind this ACK's tap write.
  return true;
}

/**
 * After the steps: send what the ACK made room for (this also carries our ACK), then settle
 * the ACK (at once after ackEveryBytes, else at the end of the batch) and the epoll interest.
 */
function afterSegment(t: TcpEngine, c: Conn, moved: boolean): void {
  if (moved && c.sock !== null) pushData(t, c);
  if (c.finished) return;
  if (c.rcvNxt !== c.lastAckSent) {
    if (((c.rcvNxt - c.lastAckSent) | 0) >= t.ackEveryBytes) sendAck(t, c);
    else ackLater(t, c);
  }
  updateInterest(t, c);
}

/**
 * Payload per segment toward the guest (SMSS, RFC 5681): its MSS option (RFC 9293 §3.7.1
 * defaults) within our MTU, minus the timestamp option every segment carries (RFC 6691).
 */
function negotiatedMss(t: TcpEngine, family: 4 | 6, offered: number, ts: boolean): number {
  const mss = offered > 0 ? offered : family === 4 ? DEFAULT_MSS_V4 : DEFAULT_MSS_V6;
  return Math.max(MIN_MSS, Math.min(mss, ourMss(t, family))) - (ts ? TS_OPTION_LEN : 0);
}

/** The handshake's last ACK: ESTABLISHED; host data may flow now. */
function established(t: TcpEngine, c: Conn): void {
  c.state = ESTABLISHED;
  t.halfOpenRemove(c);
  c.sndUna = seqAdd(c.iss, 1);
  if (seqLt(c.sndNxt, c.sndUna)) c.sndNxt = c.sndUna;
  c.backoff = 0;
  t.wheel.cancel(c.rtx);
  t.wheel.arm(c.life, t.keepIdleMs);
  t.stats.established++;
  // Host data is read from now on: registered (edge-triggered while hostDry) before the
  // first pushData, which then does not peek a socket the host has not written to yet.
  updateInterest(t, c);
}

/**
 * sndUna moves to ack: the acknowledged host bytes leave the host socket (MSG_TRUNC, no
 * copy), the FIN's sequence number excepted. False when the connection went away.
 */
function ackNewData(t: TcpEngine, c: Conn, ack: Seq, tsEcr: number): boolean {
  const acked = (ack - c.sndUna) | 0;
  let data = acked;
  if (c.finSent && seqGt(ack, c.finSeq)) data--; // our FIN takes one sequence number
  if (data > 0 && c.sock !== null) {
    const r = c.sock.discard(data);
    if (r < 0) {
      hostError(t, c, -r);
      return false;
    }
  }
  c.sndUna = ack;
  if (seqLt(c.sndNxt, ack)) c.sndNxt = ack; // after a go-back-N rewind
  onNewAck(t, c, acked, tsEcr);
  return true;
}

/** RFC 9293 §3.10.7.3: our SYN to the guest (a port forward) is answered. */
function synSent(t: TcpEngine, c: Conn, m: PacketMeta): void {
  const v = t.view;
  const o = t.opts;
  const flags = v.flags;
  const ack = asSeq(v.ack);
  const hasAck = (flags & TH_ACK) !== 0;
  if (hasAck && (seqLe(ack, c.iss) || seqGt(ack, c.sndMax))) {
    if (!(flags & TH_RST)) replyRst(t, m);
    return;
  }
  if (flags & TH_RST) {
    if (hasAck) guestReset(t, c);
    return;
  }
  if (!(flags & TH_SYN)) return;
  const seq = asSeq(v.seq);
  c.irs = seq;
  c.rcvNxt =
    c.hostSeq =
    c.rcvAdv =
    c.lastAckSent =
      seqAdd(seq, 1);
  c.mss = negotiatedMss(t, c.family, o.mss, o.hasTimestamp);
  if (o.wscale >= 0) c.sndWscale = o.wscale;
  else c.rcvWscale = 0;
  c.sackOk = o.sackPermitted;
  c.tsOk = o.hasTimestamp;
  c.tsRecent = o.tsVal;
  c.sndWnd = v.window;
  c.sndWl1 = seq;
  c.sndWl2 = ack;
  initCongestion(c);
  if (hasAck) {
    established(t, c);
    sendAck(t, c);
    pushData(t, c);
    updateInterest(t, c);
  } else {
    c.state = SYN_RCVD; // simultaneous open
    sendSyn(t, c, true);
  }
}
