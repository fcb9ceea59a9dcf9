// The host socket's bookkeeping that sends no segment, shared by every layer of the engine
// above it: the window the socket allows the guest, its epoll interest, the log lines, and
// the end of a connection (finish, TIME-WAIT, closing the socket). The data paths between the
// guest and the socket are in forwarder.ts.

import { addrPort, EPOLLET, EPOLLIN, EPOLLOUT } from "../base/names.ts";
import {
  CLOSED,
  type Conn,
  CONNECTING,
  LAST_ACK,
  NOT_POLLED,
  polled,
  TIME_WAIT,
  TO_POLL,
  weMaySend,
} from "./conn.ts";
import type { TcpEngine } from "./engine.ts";

/**
 * slirpnetstack's log form: "tcp://GUEST:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT", and for a
 * remote forward "tcp://GUEST:PORT-BIND:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT" (before the
 * connect succeeded: the host side is the destination, or the remote forward's target).
 */
export function connLabel(c: Conn): string {
  const g = addrPort(c.guestAddr, c.guestPort);
  const d = addrPort(c.remoteAddr, c.remotePort);
  return c.fwd === null ? `tcp://${g}/${c.hostLabel || d}` : `tcp://${g}-${d}/${c.hostLabel}`;
}

/** "Routing conn", or "remote-fwd conn" for a remote forward's connection (slirpnetstack's). */
export function kind(c: Conn): string {
  return c.fwd === null ? "Routing conn" : "remote-fwd conn";
}

export function logLine(t: TcpEngine, line: string): void {
  if (!t.cfg.quiet) t.cfg.log(line);
}

function logDone(t: TcpEngine, c: Conn): void {
  if (c.loggedNew && !c.loggedDone) {
    c.loggedDone = true;
    const note = c.doneNote ? ` (${c.doneNote})` : "";
    logLine(
      t,
      `[-] ${connLabel(c)} ${kind(c)} done: l=${c.bytesFromGuest} r=${c.bytesFromHost}${note}`,
    );
  }
}

/**
 * The window to advertise to the guest: the host socket's free send space (SO_SNDBUF minus
 * what is queued, SIOCOUTQ) minus what the RecvStore still has to write. When that is small,
 * EPOLLOUT is watched so a window update follows as soon as the host peer drains the socket.
 * Without a socket it is 0: before the connect succeeded nothing is sent to the guest (the
 * SYN-ACK waits for it), and after the close nothing more is accepted.
 */
export function receiveWindow(c: Conn): number {
  if (c.wndCache >= 0) return c.wndCache;
  const s = c.sock;
  if (s === null) return 0;
  if (c.finRcvd || c.hostWriteShut) return 0; // nothing more will be accepted
  const q = s.outq();
  if (q < 0) return 0;
  let buf = s.sendBufSize();
  // Autotuning grows SO_SNDBUF while the connection runs: re-read it when it looks tight.
  if (q > buf >>> 1) buf = s.sendBufSize(true);
  let free = buf - q - c.store.prefix;
  if (free < 0) free = 0;
  // Hysteresis, so the epoll interest does not flap around one threshold.
  if (free < buf >>> 2) c.wantWindowUpdate = true;
  else if (free > buf >>> 1) c.wantWindowUpdate = false;
  const max = 0xffff * (1 << c.rcvWscale);
  return (c.wndCache = free < max ? free : max);
}

/** Sets the epoll interest for what the connection is waiting for (one syscall on change). */
export function updateInterest(t: TcpEngine, c: Conn): void {
  if (c.sock === null || c.events === NOT_POLLED) return;
  let want = 0;
  if (c.state === CONNECTING) want = EPOLLOUT;
  else {
    // Host data is only read (peeked) while the guest can take it.
    const limit = c.cwnd < c.sndWnd ? c.cwnd : c.sndWnd;
    if (!c.hostEof && weMaySend(c.state) && limit - c.inFlight > 0) want |= EPOLLIN;
    // Held bytes need EPOLLOUT, unless the end-of-batch flush is about to write them.
    const held = c.store.prefix > 0 && !c.listed;
    if (!c.hostWriteShut && (held || c.wantWindowUpdate)) want |= EPOLLOUT;
    // Peeked to the end: what is left in the receive queue waits for the guest's ACK, and
    // level-triggered EPOLLIN would report that queue on every wait until then (a request/
    // response guest acknowledges an answer only with its next request: the loop spun a whole
    // core in between). Edge-triggered, epoll reports only new data (or the EOF, or an error).
    // Only without EPOLLOUT: the window update's EPOLLOUT needs level-triggering (an edge
    // comes only after a send that found the socket full).
    if (want === EPOLLIN && c.hostDry) want |= EPOLLET;
  }
  if (c.events === TO_POLL) t.poller.add(c.sock, want, t.onHost, c);
  else if (want !== c.events) t.poller.modify(c.sock, want);
  c.events = want;
}

/**
 * Closes the host socket once both directions are finished: the guest's FIN is carried over
 * and the host's EOF has been delivered and acknowledged (so its receive queue is empty and
 * close() sends a FIN, not a RST). A connection in LAST-ACK/CLOSED then goes away; one in
 * TIME-WAIT stays (without a socket) until its timer.
 */
export function maybeClose(t: TcpEngine, c: Conn): void {
  if (c.sock === null) return;
  if (!c.hostWriteShut || !c.finSent || c.sndUna !== ((c.finSeq + 1) >>> 0)) return;
  if (c.state === TIME_WAIT) {
    closeSocket(t, c, false);
    logDone(t, c);
  } else if (c.state === CLOSED || c.state === LAST_ACK) {
    c.state = CLOSED;
    finish(t, c, false);
  }
}

function closeSocket(t: TcpEngine, c: Conn, abort: boolean): void {
  const s = c.sock;
  if (s === null) return;
  // close() drops the fd from epoll itself (it is never shared): no EPOLL_CTL_DEL.
  if (polled(c)) t.poller.remove(s, true);
  c.events = NOT_POLLED;
  if (abort) s.abort();
  else s.close();
  c.sock = null;
  if (c.onHostClosed !== null) c.onHostClosed(c);
}

/**
 * Removes the connection: timers, socket (abort: RST to the host peer), store, table entry.
 * Nothing of it is left afterwards.
 */
export function finish(t: TcpEngine, c: Conn, abort: boolean): void {
  if (c.finished) return;
  c.finished = true;
  closeSocket(t, c, abort);
  logDone(t, c);
  t.wheel.cancel(c.rtx);
  t.wheel.cancel(c.life);
  c.store.clear();
  c.ackPending = false;
  if (c.state === TIME_WAIT) t.timeWaitRemove(c);
  t.halfOpenRemove(c);
  c.state = CLOSED;
  t.table.remove(c);
  t.stats.closed++;
}

/** Enters TIME-WAIT (2*MSL, scaled down): the socket goes once its work is done. */
export function enterTimeWait(t: TcpEngine, c: Conn): void {
  if (c.state !== TIME_WAIT) {
    c.state = TIME_WAIT;
    t.timeWaitAdd(c);
  }
  t.wheel.cancel(c.rtx);
  t.wheel.arm(c.life, t.timeWaitMs);
  maybeClose(t, c);
}

/** Frees the oldest TIME-WAIT entry (table full); false when there is none. */
export function evictTimeWait(t: TcpEngine): boolean {
  const c = t.timeWaitOldest;
  if (c === null) return false;
  t.stats.timeWaitEvicted++;
  finish(t, c, false);
  return true;
}
