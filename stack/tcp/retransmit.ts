// Reliability toward the guest: what ACKs and the retransmission timer do (RFC 6298; the
// timer's arithmetic is rto.ts), congestion control with fast retransmit / NewReno fast
// recovery (RFC 5681, RFC 6582) using the guest's SACK blocks to pick holes (RFC 2018, a
// small subset of RFC 6675), tail loss probes (RFC 8985 §7), and the persist timer's probe
// of a zero window (RFC 9293 §3.8.6.1).
//
// Retransmission never needs a copy of the data: a timeout rewinds sndNxt to sndUna and
// SO_PEEK_OFF to 0 (go-back-N from the host socket's receive queue); a fast retransmit peeks
// one segment at its offset.

import { seqAdd, seqGe, seqGt, seqLt } from "./seq.ts";
import { type Conn, NO_SACKS, SYN_RCVD, SYN_SENT } from "./conn.ts";
import type { TcpEngine } from "./engine.ts";
import { pushData, resetConn, retransmitAt, sendProbe, sendSyn, tsNow } from "./output.ts";
import { rttSample, rtxDelay, timeout } from "./rto.ts";
import {
  DUP_THRESH,
  MAX_BACKOFF,
  MAX_BACKOFF_SHIFT,
  MAX_CWND,
  MAX_SYN_RETRIES,
  MAX_SYNACK_RETRIES,
  RACK_RTT_FACTOR,
  RACK_SLACK_MS,
  SCOREBOARD_BLOCKS,
} from "./tunables.ts";

/**
 * The guest acknowledged `acked` new bytes (sndUna already advanced). tsEcr: the echoed
 * timestamp, or -1. Updates RTT, cwnd and recovery state, re-arms the timer, and sends
 * whatever NewReno wants retransmitted; the caller then calls pushData for new data.
 */
export function onNewAck(t: TcpEngine, c: Conn, acked: number, tsEcr: number): void {
  // RTT: from the timestamp echo (RFC 7323 §4.1), else from the one timed segment (Karn).
  if (c.tsOk && tsEcr > 0) rttSample(c, (tsNow(t) - tsEcr) | 0);
  else if (c.rttTime >= 0 && seqGe(c.sndUna, c.rttSeq)) {
    rttSample(c, t.now() - c.rttTime);
    c.rttTime = -1;
  }
  c.backoff = 0;
  c.probeDone = false;
  pruneSacked(c);
  if (c.inRecovery) {
    if (seqGe(c.sndUna, c.recover)) {
      // Full ACK (RFC 6582 §3.2 step 3, option 2): deflate to ssthresh, leave recovery.
      c.cwnd = c.ssthresh;
      c.inRecovery = false;
      c.dupAcks = 0;
    } else {
      // Partial ACK: retransmit the next hole at once, deflate by what was acked.
      if (seqLt(c.rexmitNxt, c.sndUna)) c.rexmitNxt = c.sndUna;
      retransmitHole(t, c, true);
      c.cwnd = Math.max(c.mss, c.cwnd - acked + c.mss);
    }
  } else {
    c.dupAcks = 0;
    if (c.cwnd < c.ssthresh) c.cwnd += acked; // slow start (byte counting)
    else c.cwnd += Math.max(1, Math.floor((c.mss * acked) / c.cwnd));
    if (c.cwnd > MAX_CWND) c.cwnd = MAX_CWND;
    // This ACK moved sndUna but still SACKs data above a hole: that hole is lost (RACK,
    // no reordering on the tap).
    if (c.nSacked > 0 && seqLt(c.sndUna, c.sndNxt)) enterRecovery(t, c);
  }
  // RFC 6298 §5.2/5.3: stop the timer when all is acked, else restart it.
  t.wheel.cancel(c.rtx);
  c.persist = false;
  if (c.sndNxt !== c.sndUna || seqLt(c.sndNxt, c.sndMax)) t.wheel.arm(c.rtx, rtxDelay(c));
}

/** A duplicate ACK (RFC 5681 §2 definition) arrived. */
export function onDupAck(t: TcpEngine, c: Conn): void {
  c.dupAcks++;
  if (c.inRecovery) {
    c.cwnd += c.mss; // each dup ACK: one segment left the network
    // The hole at sndUna is still there although data sent after its retransmission has
    // been SACKed, or an RTT has passed since: the retransmission was lost too (RACK's
    // idea, RFC 8985; the tap never reorders). Go over the holes again.
    if (
      c.nSacked > 0 &&
      (seqGt(c.sacked[2 * c.nSacked - 1], c.rexmitMark) ||
        t.now() - c.rexmitTime > RACK_RTT_FACTOR * c.srtt + RACK_SLACK_MS)
    ) {
      c.rexmitNxt = c.sndUna;
      c.rexmitMark = c.sndMax;
    }
    retransmitHole(t, c, false);
    return;
  }
  // Lost: three dup ACKs (RFC 5681), or any SACK above sndUna: the guest's tap link does not
  // reorder, so a hole below SACKed data is a loss (RACK with a zero reordering window).
  const lost = c.dupAcks >= DUP_THRESH || c.nSacked > 0;
  if (!lost) return;
  // RFC 6582 §4.1 (without SACK only): dup ACKs for data below the last recovery point
  // (after a timeout's go-back-N) likely come from our own unnecessary retransmissions.
  if (!c.sackOk && seqLt(c.sndUna, c.recover)) return;
  // During a go-back-N after a timeout only holes below sndNxt (resent and lost again)
  // count; pushData resends the rest.
  if (!seqLt(c.sndUna, c.sndNxt)) return;
  enterRecovery(t, c);
}

/** Fast retransmit and the start of fast recovery (RFC 5681 §3.2, RFC 6582 §3.2). */
function enterRecovery(t: TcpEngine, c: Conn): void {
  const flight = (c.sndMax - c.sndUna) | 0;
  c.ssthresh = Math.max(flight >>> 1, 2 * c.mss);
  c.recover = c.sndMax;
  c.inRecovery = true;
  c.rexmitNxt = c.sndUna;
  c.rexmitMark = c.sndMax;
  t.stats.fastRetransmits++;
  retransmitHole(t, c, true);
  c.cwnd = c.ssthresh + 3 * c.mss;
  // The timer now watches the retransmission (a recovery probe first).
  c.probeDone = false;
  t.wheel.arm(c.rtx, rtxDelay(c));
}

/**
 * Retransmits the first segment at or after rexmitNxt that the guest has not SACKed. Without
 * SACK information only the segment at sndUna goes (force, NewReno); with it, a hole is
 * retransmitted only if SACKed data lies above it (it is then presumed lost).
 */
function retransmitHole(t: TcpEngine, c: Conn, force: boolean): void {
  let s: number = seqLt(c.rexmitNxt, c.sndUna) ? c.sndUna : c.rexmitNxt;
  // Without SACK information above it, one segment (NewReno); a hole below SACKed data is
  // lost as a whole and goes at once (one GSO frame when the tap takes them).
  let limit = c.mss;
  for (let i = 0; i < c.nSacked; i++) {
    const l = c.sacked[2 * i], r = c.sacked[2 * i + 1];
    if (seqGe(s, l) && seqLt(s, r)) s = r;
    else if (seqGt(l, s)) {
      limit = (l - s) | 0;
      break;
    }
  }
  const high = c.nSacked > 0 ? c.sacked[2 * c.nSacked - 1] : c.sndUna;
  if (!force && !seqLt(s, high)) return;
  // Not at or past sndNxt: below sndMax that is a go-back-N's job (pushData).
  if (!seqLt(s, c.sndNxt)) return;
  if (limit > ((c.sndNxt - s) | 0)) limit = (c.sndNxt - s) | 0;
  if (s === c.sndUna) {
    c.rexmitMark = c.sndMax;
    c.rexmitTime = t.now();
  }
  const n = retransmitAt(t, c, s, limit);
  if (n > 0) {
    c.rexmitNxt = seqAdd(s, n);
    t.stats.retransmits++;
  }
}

/**
 * Merges the guest's SACK blocks (left/right pairs in blocks[0..2n)) into the scoreboard.
 * Returns true when they told something new (RFC 6675's DupAck definition).
 */
export function updateSacked(c: Conn, blocks: Uint32Array, n: number): boolean {
  const before = sackedBytes(c);
  const sc = SCRATCH;
  let k = 0;
  for (let i = 0; i < c.nSacked; i++) {
    sc[2 * k] = c.sacked[2 * i];
    sc[2 * k + 1] = c.sacked[2 * i + 1];
    k++;
  }
  for (let i = 0; i < n; i++) {
    const l = blocks[2 * i], r = blocks[2 * i + 1];
    // Only blocks above sndUna and within what was sent (D-SACK and junk are ignored).
    if (!seqGt(r, l) || !seqGt(l, c.sndUna) || seqGt(r, c.sndMax)) continue;
    sc[2 * k] = l;
    sc[2 * k + 1] = r;
    k++;
  }
  if (k > 0 && c.sacked === NO_SACKS) c.sacked = new Uint32Array(2 * SCOREBOARD_BLOCKS);
  // Insertion sort by left edge, then merge overlaps; keep the lowest SCOREBOARD_BLOCKS.
  for (let i = 1; i < k; i++) {
    const l = sc[2 * i], r = sc[2 * i + 1];
    let j = i - 1;
    while (j >= 0 && seqGt(sc[2 * j], l)) {
      sc[2 * j + 2] = sc[2 * j];
      sc[2 * j + 3] = sc[2 * j + 1];
      j--;
    }
    sc[2 * j + 2] = l;
    sc[2 * j + 3] = r;
  }
  let m = 0;
  for (let i = 0; i < k; i++) {
    const l = sc[2 * i], r = sc[2 * i + 1];
    if (m > 0 && !seqGt(l, c.sacked[2 * m - 1])) {
      if (seqGt(r, c.sacked[2 * m - 1])) c.sacked[2 * m - 1] = r;
    } else if (m < SCOREBOARD_BLOCKS) {
      c.sacked[2 * m] = l;
      c.sacked[2 * m + 1] = r;
      m++;
    }
  }
  c.nSacked = m;
  return sackedBytes(c) !== before;
}
const SCRATCH = new Uint32Array(32);

function sackedBytes(c: Conn): number {
  let n = 0;
  for (let i = 0; i < c.nSacked; i++) n += (c.sacked[2 * i + 1] - c.sacked[2 * i]) | 0;
  return n;
}

/** Drops scoreboard blocks at or below sndUna. */
function pruneSacked(c: Conn): void {
  let m = 0;
  for (let i = 0; i < c.nSacked; i++) {
    const l = c.sacked[2 * i], r = c.sacked[2 * i + 1];
    if (!seqGt(r, c.sndUna)) continue;
    c.sacked[2 * m] = seqGt(l, c.sndUna) ? l : c.sndUna;
    c.sacked[2 * m + 1] = r;
    m++;
  }
  c.nSacked = m;
}

/** The retransmission timer fired. */
export function rtxTimeout(t: TcpEngine, c: Conn): void {
  if (c.probe) {
    c.probe = false;
    c.probeDone = true;
    if (c.sndNxt !== c.sndUna && c.sock !== null) {
      t.stats.probes++;
      if (c.inRecovery) {
        // Nothing came back since the holes were retransmitted: send the first again.
        c.rexmitNxt = c.sndUna;
        retransmitHole(t, c, true);
      } else if (c.finSent && c.sndNxt === seqAdd(c.finSeq, 1)) {
        retransmitAt(t, c, c.finSeq, 1);
      } else {
        // The last segment sent goes again (RFC 8985 §7.3), so the guest SACKs it.
        const back = Math.min((c.sndNxt - c.sndUna) | 0, c.mss);
        retransmitAt(t, c, seqAdd(c.sndNxt, -back), back);
      }
    }
    t.wheel.arm(c.rtx, timeout(c));
    return;
  }
  if (c.persist) {
    // Zero-window probe: the guest answers with its current window.
    sendProbe(t, c);
    t.stats.windowProbes++;
    if (c.backoff < MAX_BACKOFF_SHIFT) c.backoff++;
    t.wheel.arm(c.rtx, timeout(c));
    return;
  }
  if (c.state === SYN_RCVD || c.state === SYN_SENT) {
    if (c.backoff >= (c.state === SYN_RCVD ? MAX_SYNACK_RETRIES : MAX_SYN_RETRIES)) {
      t.stats.timeouts++;
      resetConn(t, c, "timeout");
      return;
    }
    c.backoff++;
    sendSyn(t, c, c.state === SYN_RCVD);
    t.wheel.arm(c.rtx, timeout(c));
    return;
  }
  if (c.sndNxt === c.sndUna && !seqLt(c.sndNxt, c.sndMax)) return; // nothing outstanding
  if (c.backoff >= MAX_BACKOFF) {
    t.stats.timeouts++;
    resetConn(t, c, "timeout");
    return;
  }
  t.stats.rtoTimeouts++;
  // RFC 5681 §3.1 eq. 4, and go back to sndUna (RFC 6298 §5.4-5.6).
  const flight = (c.sndMax - c.sndUna) | 0;
  c.ssthresh = Math.max(flight >>> 1, 2 * c.mss);
  c.cwnd = c.mss;
  c.inRecovery = false;
  c.dupAcks = 0;
  c.recover = c.sndMax;
  c.nSacked = 0;
  c.rttTime = -1;
  c.backoff++;
  c.sndNxt = c.sndUna;
  if (c.sock !== null) c.sock.setPeekOffset(0);
  t.stats.retransmits++;
  pushData(t, c);
  if (!c.rtx.armed) t.wheel.arm(c.rtx, timeout(c));
}
