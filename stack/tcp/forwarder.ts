// Where a guest connection meets its host socket (pasta's model, see DESIGN.md):
//
//  - connect: the guest's SYN starts a non-blocking connect(); the SYN-ACK goes out only
//    when it succeeded, a refusal or timeout becomes a RST, so the guest sees what a real
//    peer would have done;
//  - guest → host: payload goes into send() straight from the tap buffer (TSO frames), or
//    small segments are gathered and written once per batch; what is acknowledged is what
//    the socket took plus what the bounded RecvStore holds, and the window advertised to the
//    guest is the socket's free send space minus that: a slow host reader slows the guest;
//  - host → guest: EPOLLIN is watched only while the guest's window has room, so a slow
//    guest leaves the data in the host socket and slows the host sender;
//  - FIN either way is a half-close (shutdown(SHUT_WR) / our FIN once peek sees EOF), RST
//    either way is carried over (abort() / RST to the guest).

import { EAGAIN, ECONNRESET, errnoName, ETIMEDOUT } from "../../ffi/errno.ts";
import { formatIp } from "../wire/bytes.ts";
import {
  CLOSED,
  type Conn,
  CONNECTING,
  ESTABLISHED,
  LAST_ACK,
  SYN_RCVD,
  TIME_WAIT,
  weMaySend,
} from "./conn.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, type HostSocket, type TcpStack } from "./stack.ts";
import { flushLater, pushData, sendAck, sendProbe, sendRst, sendSyn } from "./output.ts";

/** Window offered before the host socket exists (never: the SYN-ACK waits for connect). */
const DEFAULT_WINDOW = 65535;

function addrPort(family: 4 | 6, addr: Uint8Array, port: number): string {
  return family === 4 ? `${formatIp(addr)}:${port}` : `[${formatIp(addr)}]:${port}`;
}

/**
 * slirpnetstack's log form: "tcp://GUEST:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT", and for a
 * remote forward "tcp://GUEST:PORT-BIND:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT" (before the
 * connect succeeded: the host side is the destination, or the remote forward's target).
 */
export function connLabel(c: Conn): string {
  const g = addrPort(c.family, c.guestAddr, c.guestPort);
  const d = addrPort(c.family, c.remoteAddr, c.remotePort);
  return c.fwd === null ? `tcp://${g}/${c.hostLabel || d}` : `tcp://${g}-${d}/${c.hostLabel}`;
}

/** "Routing conn", or "remote-fwd conn" for a remote forward's connection (slirpnetstack's). */
function kind(c: Conn): string {
  return c.fwd === null ? "Routing conn" : "remote-fwd conn";
}

/** Starts the host connect() for a new guest connection; false when it failed at once. */
export function startConnect(t: TcpStack, c: Conn): boolean {
  t.cfg.tag?.(c);
  let sock: HostSocket;
  try {
    sock = t.connectHost(c.family, c.remoteAddr, c.remotePort);
  } catch (e) {
    // No socket at all (EMFILE, ENOBUFS): the guest gets a RST, as for a refusal.
    t.stats.connectErrors++;
    logLine(t, `[!] ${connLabel(c)} ${kind(c)} error: ${(e as Error).message}`);
    return false;
  }
  c.sock = sock;
  if (sock.pendingError !== 0) {
    connectFailed(t, c, sock.pendingError);
    return false;
  }
  c.onEvents = (ev: number) => onHostEvents(t, c, ev);
  c.events = EPOLLOUT;
  t.poller.add(sock, EPOLLOUT, c.onEvents);
  t.wheel.arm(c.life, t.cfg.connectTimeoutMs);
  return true;
}

function connected(t: TcpStack, c: Conn): void {
  const s = c.sock as HostSocket;
  // Nagle already ran in the guest (or was turned off there on purpose); slirpd writes what
  // the guest sent, gathered per batch, and must not hold it back for the host peer's ACK.
  try {
    s.setNoDelay?.(true);
  } catch { /* not fatal */ }
  const l = s.localAddress(), r = s.remoteAddress();
  if (l && r) {
    // Of the host socket's family, which a remote forward may change (IPv4 guest → ::1).
    const f = l.addr.length === 4 ? 4 : 6;
    c.hostLabel = `${addrPort(f, l.addr, l.port)}-${addrPort(f, r.addr, r.port)}`;
  }
  t.wheel.cancel(c.life);
  c.lastHeard = t.now();
  c.state = SYN_RCVD;
  t.stats.opened++;
  c.loggedNew = !t.cfg.quiet;
  logLine(t, `[+] ${connLabel(c)} ${kind(c)} new`);
  sendSyn(t, c, true);
  c.sndNxt = (c.iss + 1) >>> 0;
  c.sndMax = c.sndNxt;
  t.wheel.arm(c.rtx, c.rto);
  updateInterest(t, c);
}

/** The host connect() failed (refused, unreachable, timed out): RST to the guest. */
export function connectFailed(t: TcpStack, c: Conn, err: number): void {
  t.stats.connectErrors++;
  if (err === ETIMEDOUT) t.stats.connectTimeouts++;
  logLine(t, `[!] ${connLabel(c)} ${kind(c)} error: ${errnoName(err)}`);
  // The guest's SYN has not been answered: RST|ACK acknowledging it (RFC 9293 §3.10.7.1).
  sendRst(t, c);
  finish(t, c, false);
}

/** The host socket has something for us. */
export function onHostEvents(t: TcpStack, c: Conn, ev: number): void {
  const s = c.sock;
  if (s === null) return;
  if (c.state === CONNECTING) {
    const err = s.connectResult();
    if (err !== 0) connectFailed(t, c, err);
    else if (ev & EPOLLOUT) connected(t, c);
    else if (ev & (EPOLLERR | EPOLLHUP)) connectFailed(t, c, ECONNRESET);
    return;
  }
  if (ev & EPOLLERR) {
    const err = s.connectResult();
    hostError(t, c, err !== 0 ? err : ECONNRESET);
    return;
  }
  if (ev & EPOLLOUT) {
    flushStore(t, c);
    if (c.sock === null) return;
    if (c.wantWindowUpdate) {
      c.wantWindowUpdate = false;
      if (c.state !== SYN_RCVD) sendAck(t, c); // recomputes the window (and may re-arm)
    }
  }
  if (ev & (EPOLLIN | EPOLLHUP)) pushData(t, c);
  if (c.sock === null) return;
  if ((ev & EPOLLHUP) && c.events >= 0) {
    // Both directions of the host socket are shut: nothing more can come from it, and
    // EPOLLHUP is level-triggered. Stop polling; the guest's ACKs drive the rest (the
    // remaining data is still in the receive queue for pushData).
    t.poller.remove(s);
    c.events = -1;
  }
  updateInterest(t, c);
  maybeClose(t, c);
}

/**
 * The window to advertise to the guest: the host socket's free send space (SO_SNDBUF minus
 * what is queued, SIOCOUTQ) minus what the RecvStore still has to write. When that is small,
 * EPOLLOUT is watched so a window update follows as soon as the host peer drains the socket.
 */
export function receiveWindow(_t: TcpStack, c: Conn): number {
  if (c.wndCache >= 0) return c.wndCache;
  const s = c.sock;
  if (s === null) return c.state === CONNECTING ? DEFAULT_WINDOW : 0;
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
export function updateInterest(t: TcpStack, c: Conn): void {
  if (c.sock === null || c.events < 0) return;
  let want = 0;
  if (c.state === CONNECTING) want = EPOLLOUT;
  else {
    // Host data is only read (peeked) while the guest can take it.
    const limit = c.cwnd < c.sndWnd ? c.cwnd : c.sndWnd;
    if (!c.hostEof && weMaySend(c.state) && limit - c.inFlight > 0) want |= EPOLLIN;
    // Held bytes need EPOLLOUT, unless the end-of-batch flush is about to write them.
    const held = c.store.prefix > 0 && !c.listed;
    if (!c.hostWriteShut && (held || c.wantWindowUpdate)) want |= EPOLLOUT;
  }
  if (want !== c.events) {
    t.poller.modify(c.sock, want);
    c.events = want;
  }
}

/**
 * Guest payload b[off, off+len) at sequence seq (already validated against the window).
 * Writes what it can to the host straight from the tap buffer, holds out-of-order or
 * refused bytes in the store, and schedules the ACK.
 */
export function guestData(
  t: TcpStack,
  c: Conn,
  b: Uint8Array,
  off: number,
  len: number,
  seq: number,
): void {
  const s = c.sock;
  if (s === null || c.hostWriteShut) return;
  // Trim what was already received (a retransmission overlapping the left edge).
  const dup = (c.rcvNxt - seq) | 0;
  if (dup > 0) {
    if (dup >= len) {
      t.stats.dupSegments++;
      sendAck(t, c); // RFC 9293: an old duplicate is answered with an ACK
      return;
    }
    off += dup;
    len -= dup;
    seq = c.rcvNxt;
  }
  // Nothing beyond the window we advertised is accepted.
  const room = (c.rcvAdv - seq) | 0;
  if (len > room) {
    t.stats.beyondWindow++;
    len = room > 0 ? room : 0;
    if (len === 0) {
      sendAck(t, c);
      return;
    }
  }
  if (seq !== c.rcvNxt) {
    // Out of order: hold it (bounded) and answer at once with a duplicate ACK carrying SACK,
    // which is what makes the guest retransmit the hole quickly (RFC 5681 §4.2).
    const got = c.store.put(b, off, len, (seq - c.hostSeq) | 0);
    t.stats.oooSegments++;
    if (got < len) t.stats.oooDropped++;
    sendAck(t, c);
    return;
  }
  if (c.hostSeq === c.rcvNxt && (len >= COALESCE_BELOW || !c.store.empty)) {
    // In order, nothing held before it: straight from the tap buffer.
    directSend(t, c, s, b, off, len);
  } else {
    // Small segments (no TSO: one per MTU) are gathered and written once per batch or per
    // 64 KiB: a memcpy each instead of a send() each, whose cost (the host kernel's whole
    // TCP path) is what limits a plain tap. Also where bytes already wait: queue behind.
    const got = c.store.put(b, off, len, (seq - c.hostSeq) | 0);
    if (got === 0 && c.hostSeq === c.rcvNxt) directSend(t, c, s, b, off, len); // pool empty
    else if (c.store.prefix >= FLUSH_AT) flushStore(t, c);
    else flushLater(t, c);
  }
  syncRcvNxt(c);
}

/** Bytes of an in-order segment below which it is gathered rather than sent at once. */
const COALESCE_BELOW = 16 * 1024;
/** Gathered bytes that are written at once rather than at the end of the batch. */
const FLUSH_AT = 64 * 1024;

/** One send() straight from the tap buffer; what the host does not take is kept. */
function directSend(
  t: TcpStack,
  c: Conn,
  s: HostSocket,
  b: Uint8Array,
  off: number,
  len: number,
): void {
  let n = s.send(b, off, len);
  if (n < 0) {
    if (n !== -EAGAIN) {
      hostError(t, c, -n);
      return;
    }
    n = 0;
  }
  c.hostSeq = (c.hostSeq + n) >>> 0;
  c.bytesFromGuest += n;
  c.wndCache = -1;
  c.store.advance(n);
  if (n < len) c.store.put(b, off + n, len - n, 0); // the host is full: keep the rest
  else if (c.store.prefix > 0) flushStore(t, c); // a hole just closed
}

/** rcvNxt follows what was written or is held in order (until the guest's FIN is in). */
export function syncRcvNxt(c: Conn): void {
  if (!c.finRcvd) c.rcvNxt = (c.hostSeq + c.store.prefix) >>> 0;
}

/** Writes held in-order bytes to the host (at most two sends: the ring may wrap). */
export function flushStore(t: TcpStack, c: Conn): void {
  const s = c.sock;
  if (s === null) return;
  for (let i = 0; i < 2; i++) {
    const k = c.store.chunk();
    if (k === 0) break;
    const n = s.send(c.store.buffer, c.store.chunkOff, k);
    if (n < 0) {
      if (n === -EAGAIN) break;
      hostError(t, c, -n);
      return;
    }
    c.hostSeq = (c.hostSeq + n) >>> 0;
    c.bytesFromGuest += n;
    c.wndCache = -1;
    c.store.advance(n);
    if (n < k) break;
  }
  if (c.finRcvd) hostShutdownIfDone(t, c);
}

/** The guest's FIN was received: carry it over once everything before it is written. */
export function hostShutdownIfDone(t: TcpStack, c: Conn): void {
  if (c.hostWriteShut || c.sock === null || c.store.prefix > 0) return;
  c.store.clear();
  c.hostWriteShut = true;
  c.wantWindowUpdate = false;
  c.sock.shutdownWrite();
  updateInterest(t, c);
  maybeClose(t, c);
}

/**
 * Closes the host socket once both directions are finished: the guest's FIN is carried over
 * and the host's EOF has been delivered and acknowledged (so its receive queue is empty and
 * close() sends a FIN, not a RST). A connection in LAST-ACK/CLOSED then goes away; one in
 * TIME-WAIT stays (without a socket) until its timer.
 */
export function maybeClose(t: TcpStack, c: Conn): void {
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

/** A host socket error (ECONNRESET, EPIPE, ...): RST to the guest, connection gone. */
export function hostError(t: TcpStack, c: Conn, err: number): void {
  t.stats.hostResets++;
  if (!t.cfg.quiet) c.doneNote = errnoName(err);
  if (c.state !== CONNECTING && c.state !== TIME_WAIT) sendRst(t, c);
  finish(t, c, true);
}

/** Gives up on the connection (retransmission or keepalive timeout): RST both ways. */
export function resetConn(t: TcpStack, c: Conn, why: string): void {
  c.doneNote = why;
  if (c.state !== CONNECTING && c.state !== TIME_WAIT) sendRst(t, c);
  finish(t, c, true);
}

/** The guest reset the connection: reset the host side too. */
export function guestReset(t: TcpStack, c: Conn): void {
  t.stats.resetsRcvd++;
  c.doneNote = "guest RST";
  finish(t, c, true);
}

function closeSocket(t: TcpStack, c: Conn, abort: boolean): void {
  const s = c.sock;
  if (s === null) return;
  if (c.events >= 0) t.poller.remove(s);
  c.events = -1;
  if (abort) s.abort();
  else s.close();
  c.sock = null;
  if (c.onHostClosed !== null) c.onHostClosed(c);
}

function logDone(t: TcpStack, c: Conn): void {
  if (c.loggedNew && !c.loggedDone) {
    c.loggedDone = true;
    const note = c.doneNote ? ` (${c.doneNote})` : "";
    logLine(
      t,
      `[-] ${connLabel(c)} ${kind(c)} done: l=${c.bytesFromGuest} r=${c.bytesFromHost}${note}`,
    );
  }
}

function logLine(t: TcpStack, line: string): void {
  if (!t.cfg.quiet) t.cfg.log(line);
}

/**
 * Removes the connection: timers, socket (abort: RST to the host peer), store, table entry.
 * Nothing of it is left afterwards.
 */
export function finish(t: TcpStack, c: Conn, abort: boolean): void {
  if (c.finished) return;
  c.finished = true;
  closeSocket(t, c, abort);
  logDone(t, c);
  t.wheel.cancel(c.rtx);
  t.wheel.cancel(c.life);
  c.store.clear();
  c.ackPending = false;
  if (c.state === TIME_WAIT) t.timeWaitRemove(c);
  c.state = CLOSED;
  t.table.remove(c);
  t.stats.closed++;
}

/** Enters TIME-WAIT (2*MSL, scaled down): the socket goes once its work is done. */
export function enterTimeWait(t: TcpStack, c: Conn): void {
  if (c.state !== TIME_WAIT) {
    c.state = TIME_WAIT;
    t.timeWaitAdd(c);
  }
  t.wheel.cancel(c.rtx);
  t.wheel.arm(c.life, t.timeWaitMs);
  maybeClose(t, c);
}

/** The life timer: connect timeout, keepalive, end of TIME-WAIT. */
export function lifeTimeout(t: TcpStack, c: Conn): void {
  if (c.state === CONNECTING) {
    connectFailed(t, c, ETIMEDOUT);
    return;
  }
  if (c.state === TIME_WAIT) {
    finish(t, c, false);
    return;
  }
  keepalive(t, c);
}

/** Keepalive (RFC 9293 §3.8.4): after an idle period, probe; give up after a few probes. */
function keepalive(t: TcpStack, c: Conn): void {
  const idle = t.now() - c.lastHeard;
  if (idle < t.keepIdleMs) {
    c.kaProbes = 0;
    t.wheel.arm(c.life, t.keepIdleMs - idle);
    return;
  }
  if (c.kaProbes >= t.keepCount) {
    t.stats.keepaliveDrops++;
    resetConn(t, c, "keepalive timeout");
    return;
  }
  c.kaProbes++;
  t.stats.keepaliveProbes++;
  // An old sequence number and no data: the guest must answer with an ACK (which resets
  // lastHeard), like Linux's keepalive probe.
  if (c.state >= ESTABLISHED) sendProbe(t, c);
  t.wheel.arm(c.life, t.keepIntervalMs);
}
