// The retransmission timer's arithmetic (RFC 6298) and the initial congestion state: RTT
// samples, the RTO and its backoff, the probe timeout (RFC 8985 §7), arming the timer and
// the persist timer (RFC 9293 §3.8.6.1). Only connection state and the timer wheel: what
// happens when the timer fires is retransmit.ts.

import { type Conn, weMaySend } from "./conn.ts";
import type { TcpEngine } from "./engine.ts";
import {
  INITIAL_SSTHRESH,
  INITIAL_WINDOW_SEGMENTS,
  MAX_BACKOFF_SHIFT,
  MAX_RTO,
  MIN_RTO,
  PTO_DELAYED_ACK_MS,
  PTO_MIN_MS,
  PTO_SRTT_FACTOR,
} from "./tunables.ts";

/** Congestion state for a fresh connection (RFC 6928 initial window). */
export function initCongestion(c: Conn): void {
  c.cwnd = INITIAL_WINDOW_SEGMENTS * c.mss;
  c.ssthresh = INITIAL_SSTHRESH;
  c.dupAcks = 0;
  c.inRecovery = false;
  c.nSacked = 0;
}

/** The RTO backed off (RFC 6298 §5.5), at most MAX_RTO. */
export function timeout(c: Conn): number {
  let ms = c.rto * (1 << (c.backoff < MAX_BACKOFF_SHIFT ? c.backoff : MAX_BACKOFF_SHIFT));
  if (ms > MAX_RTO) ms = MAX_RTO;
  return ms;
}

/**
 * Delay for the retransmission timer. While no probe was sent for this flight it is a probe
 * timeout (RFC 8985 §7.2: 2*SRTT, more when a lone segment may sit in the guest's delayed-ACK
 * timer, at least PTO_MIN_MS): outside recovery a tail loss probe, which turns a lost tail
 * into SACK information; in recovery a second go at the holes (a retransmission was lost and
 * nothing came back to tell). Else the RTO. Both save a 200 ms+ timeout on the local link.
 */
export function rtxDelay(c: Conn): number {
  if (!c.probeDone && c.backoff === 0 && c.srtt > 0 && c.sackOk) {
    c.probe = true;
    let pto = PTO_SRTT_FACTOR * c.srtt;
    if (((c.sndMax - c.sndUna) | 0) <= c.mss) pto += PTO_DELAYED_ACK_MS;
    if (pto < PTO_MIN_MS) pto = PTO_MIN_MS;
    return pto < c.rto ? pto : c.rto;
  }
  c.probe = false;
  return timeout(c);
}

/** Arms the retransmission timer if something is in flight and it is not running. */
export function armRtx(t: TcpEngine, c: Conn): void {
  if (c.persist) {
    c.persist = false;
    t.wheel.cancel(c.rtx);
  }
  if (!c.rtx.armed && c.sndNxt !== c.sndUna) t.wheel.arm(c.rtx, rtxDelay(c));
}

/**
 * RFC 6298 §2: folds one RTT sample (ms) into srtt/rttvar and recomputes the RTO, with the
 * RFC's own constants (alpha = 1/8, beta = 1/4, K = 4, clock granularity G = 1 ms).
 */
export function rttSample(c: Conn, r: number): void {
  if (r < 0) return;
  if (c.srtt === 0) {
    c.srtt = r > 0 ? r : 0.5;
    c.rttvar = r / 2;
  } else {
    const d = c.srtt > r ? c.srtt - r : r - c.srtt;
    c.rttvar = 0.75 * c.rttvar + 0.25 * d;
    c.srtt = 0.875 * c.srtt + 0.125 * r;
  }
  let rto = c.srtt + Math.max(1, 4 * c.rttvar);
  if (rto < MIN_RTO) rto = MIN_RTO;
  if (rto > MAX_RTO) rto = MAX_RTO;
  c.rto = rto;
}

/**
 * Zero window with data waiting and nothing in flight: nothing will come back from the
 * guest on its own, so probe it (persist timer, backed off like the RTO, never gives up).
 */
export function persistIfStalled(t: TcpEngine, c: Conn): void {
  if (c.sndWnd !== 0 || c.sndNxt !== c.sndUna || c.rtx.armed) return;
  if (c.sock === null || c.hostEof || !weMaySend(c.state)) return;
  const q = c.sock.inq();
  if (q <= 0) return;
  c.persist = true;
  t.wheel.arm(c.rtx, timeout(c));
}
