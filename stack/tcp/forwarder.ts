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
//
// The bookkeeping that sends nothing (window, epoll interest, log lines, finish) is host.ts.

import { EAGAIN, ECONNREFUSED, ECONNRESET, errnoName, ETIMEDOUT } from "../../ffi/errno.ts";
import { addrPort, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT } from "../base/names.ts";
import { seqAdd } from "./seq.ts";
import {
  type Conn,
  CONNECTING,
  type HostSocket,
  NOT_POLLED,
  polled,
  SYN_RCVD,
  synchronized,
  TIME_WAIT,
  TO_POLL,
} from "./conn.ts";
import type { Admission, TcpEngine } from "./engine.ts";
import { connLabel, finish, kind, logLine, maybeClose, updateInterest } from "./host.ts";
import {
  flushLater,
  hostError,
  pushData,
  resetConn,
  sendAck,
  sendProbe,
  sendRst,
  sendSyn,
} from "./output.ts";
import { COALESCE_BELOW, FLUSH_AT } from "./tunables.ts";
import { dnsFramesOk } from "./dnsframe.ts";

/** Starts the host connect() for a new guest connection; false when it failed at once. */
export function startConnect(t: TcpEngine, c: Conn, a: Admission): boolean {
  t.cfg.tag?.(c, a);
  let sock: HostSocket;
  try {
    sock = t.connectHost(c.family, c.remoteAddr, c.remotePort, a);
  } catch (e) {
    // No socket at all (EMFILE, ENOBUFS): the guest gets a RST, as for a refusal.
    t.stats.connectErrors++;
    if (!t.cfg.quiet) logLine(t, `[!] ${connLabel(c)} ${kind(c)} error: ${(e as Error).message}`);
    return false;
  }
  c.sock = sock;
  if (sock.pendingError !== 0) {
    connectFailed(t, c, sock.pendingError);
    return false;
  }
  // A connect to an address of this host has usually finished inside connect() (the loopback
  // handshake runs in the syscall): answer the guest in this batch, not after an epoll round
  // (measured in TCP_CRR: the guest's SYN-ACK came 42 µs after the host's, pasta's 24).
  const done = sock.connectDone?.() ?? 0;
  if (done > 0) {
    c.events = TO_POLL; // registered once, with the interest connected() settles on
    connected(t, c);
    return true;
  }
  if (done < 0) {
    connectFailed(t, c, sock.connectResult() || ECONNREFUSED);
    return false;
  }
  c.events = EPOLLOUT;
  t.poller.add(sock, EPOLLOUT, t.onHost, c);
  t.wheel.arm(c.life, t.cfg.connectTimeoutMs);
  return true;
}

function connected(t: TcpEngine, c: Conn): void {
  const s = c.sock as HostSocket;
  if (!t.cfg.quiet) {
    // The host socket's own addresses (two syscalls and a string: only for the log): a remote
    // forward may change the family (IPv4 guest → ::1).
    const l = s.localAddress(), r = s.remoteAddress();
    if (l && r) c.hostLabel = `${addrPort(l.addr, l.port)}-${addrPort(r.addr, r.port)}`;
    c.loggedNew = true;
    logLine(t, `[+] ${connLabel(c)} ${kind(c)} new`);
  }
  t.wheel.cancel(c.life);
  c.lastHeard = t.now();
  c.state = SYN_RCVD;
  // Nothing peeked yet and nothing to peek before the guest's ACK: epoll says when the host
  // writes (host.ts updateInterest), so the handshake's last ACK costs no empty peek.
  c.hostDry = true;
  t.stats.opened++;
  sendSyn(t, c, true);
  c.sndNxt = seqAdd(c.iss, 1);
  c.sndMax = c.sndNxt;
  t.wheel.arm(c.rtx, c.rto);
  // Nagle already ran in the guest (or was turned off there on purpose); slirpd writes what
  // the guest sent, gathered per batch, and must not hold it back for the host peer's ACK.
  // (After the SYN-ACK: no data is written before the guest's answer to it.)
  try {
    s.setNoDelay?.(true);
  } catch { /* not fatal */ }
  updateInterest(t, c);
}

/** The host connect() failed (refused, unreachable, timed out): RST to the guest. */
function connectFailed(t: TcpEngine, c: Conn, err: number): void {
  t.stats.connectErrors++;
  if (err === ETIMEDOUT) t.stats.connectTimeouts++;
  if (!t.cfg.quiet) logLine(t, `[!] ${connLabel(c)} ${kind(c)} error: ${errnoName(err)}`);
  // The guest's SYN has not been answered: RST|ACK acknowledging it (RFC 9293 §3.10.7.1).
  sendRst(t, c);
  finish(t, c, false);
}

/** The host socket has something for us. */
export function onHostEvents(t: TcpEngine, c: Conn, ev: number): void {
  const s = c.sock;
  if (s === null) return;
  if (c.state === CONNECTING) {
    // EPOLLOUT alone is a completed connect (no SO_ERROR read needed); a failed one also
    // carries EPOLLERR or EPOLLHUP.
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) === EPOLLOUT) {
      connected(t, c);
      return;
    }
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
  if ((ev & EPOLLHUP) && polled(c)) {
    // Both directions of the host socket are shut: nothing more can come from it, and
    // EPOLLHUP is level-triggered. Stop polling (before pushData, which would otherwise
    // change the interest first); the guest's ACKs drive the rest (the remaining data is
    // still in the receive queue for pushData).
    t.poller.remove(s);
    c.events = NOT_POLLED;
  }
  if (ev & (EPOLLIN | EPOLLHUP)) {
    c.hostDry = false;
    pushData(t, c);
  }
  if (c.sock === null) return;
  updateInterest(t, c);
  maybeClose(t, c);
}

/**
 * Guest payload b[off, off+len) at sequence seq (already validated against the window).
 * Writes what it can to the host straight from the tap buffer, holds out-of-order or
 * refused bytes in the store, and schedules the ACK.
 */
export function guestData(
  t: TcpEngine,
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
  if (c.dnsFramed) {
    // DNS over TCP: in order only (small messages; the guest resends), each byte checked once.
    if (seq !== c.rcvNxt) {
      t.stats.oooDropped++;
      sendAck(t, c);
      return;
    }
    const skip = (c.dnsSeen - seq) | 0;
    if (skip < len) {
      const from = skip > 0 ? skip : 0;
      if (!dnsFramesOk(c, b, off + from, len - from)) {
        t.stats.notDns++;
        resetConn(t, c, "not DNS over TCP");
        return;
      }
      c.dnsSeen = seqAdd(seq, len);
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

/** One send() straight from the tap buffer; what the host does not take is kept. */
function directSend(
  t: TcpEngine,
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
  c.hostSeq = seqAdd(c.hostSeq, n);
  c.bytesFromGuest += n;
  c.wndCache = -1;
  c.store.advance(n);
  if (n < len) c.store.put(b, off + n, len - n, 0); // the host is full: keep the rest
  else if (c.store.prefix > 0) flushStore(t, c); // a hole just closed
}

/** rcvNxt follows what was written or is held in order (until the guest's FIN is in). */
function syncRcvNxt(c: Conn): void {
  if (!c.finRcvd) c.rcvNxt = seqAdd(c.hostSeq, c.store.prefix);
}

/** Writes held in-order bytes to the host (at most two sends: the ring may wrap). */
export function flushStore(t: TcpEngine, c: Conn): void {
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
    c.hostSeq = seqAdd(c.hostSeq, n);
    c.bytesFromGuest += n;
    c.wndCache = -1;
    c.store.advance(n);
    if (n < k) break;
  }
  if (c.finRcvd) hostShutdownIfDone(t, c);
}

/** The guest's FIN was received: carry it over once everything before it is written. */
export function hostShutdownIfDone(t: TcpEngine, c: Conn): void {
  if (c.hostWriteShut || c.sock === null || c.store.prefix > 0) return;
  c.store.clear();
  c.hostWriteShut = true;
  c.wantWindowUpdate = false;
  c.sock.shutdownWrite();
  updateInterest(t, c);
  maybeClose(t, c);
}

/** The guest reset the connection: reset the host side too. */
export function guestReset(t: TcpEngine, c: Conn): void {
  t.stats.resetsRcvd++;
  c.doneNote = "guest RST";
  finish(t, c, true);
}

/** The life timer: connect timeout, keepalive, end of TIME-WAIT. */
export function lifeTimeout(t: TcpEngine, c: Conn): void {
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
function keepalive(t: TcpEngine, c: Conn): void {
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
  if (synchronized(c.state)) sendProbe(t, c);
  t.wheel.arm(c.life, t.keepIntervalMs);
}
