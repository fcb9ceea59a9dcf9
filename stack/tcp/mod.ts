// The TCP transport: owns the flow table, the shared RecvStore pool, the TIME-WAIT list and
// the counters; `input` is called by the IP layer for every guest TCP segment, `flush` once
// per batch of guest frames (it writes the gathered guest bytes and sends the ACKs deferred
// during the batch) and on every timer tick.
//
// The engine is split by concern (passt-like small files). Imports only point down this
// list; the engine's state is shared through engine.ts, and the only calls up are the two
// timer callbacks TcpStack sets (onRtx, onLife):
//   mod.ts         TcpStack: the entry (input, flush, forwards' active open, reset, close)
//   input.ts       RFC 9293 segment arrival, step by step
//   forwarder.ts   the host socket's data paths: connect, guest data to it, events, keepalive
//   retransmit.ts  ACK processing for reliability: fast retransmit/recovery, SACK, timeouts
//   output.ts      segment building, data from the host socket to the guest, RST aborts
//   rto.ts         RTT, RTO, probe and persist timer arithmetic, initial congestion state
//   host.ts        the host socket's bookkeeping: window, epoll interest, logs, finish
//   engine.ts      TcpEngine: the shared state, config and counters
//   conn.ts        Conn (the TCB), its states, HostSocket
//   store.ts, seq.ts, tunables.ts: the out-of-order store, sequence arithmetic, constants

import type { PacketMeta } from "../ip/meta.ts";
import type { Tx } from "../link/tx.ts";
import { Timer, type TimerWheel } from "../flow/timers.ts";
import { type PollerLike, sameAddr } from "../base/names.ts";
import { type Conn, type HostSocket, SYN_SENT, synchronized, TIME_WAIT } from "./conn.ts";
import { type TcpConfig, TcpEngine } from "./engine.ts";
import { seqAdd } from "./seq.ts";
import { DEFAULT_MSS_V4, OUR_WSCALE, STORE_KEEP_FREE, STORE_TRIM_MS } from "./tunables.ts";
import { evictTimeWait, finish, updateInterest } from "./host.ts";
import { initCongestion } from "./rto.ts";
import { resetConn, sendAck, sendRst, sendSyn } from "./output.ts";
import { rtxTimeout } from "./retransmit.ts";
import { flushStore, lifeTimeout, onHostEvents } from "./forwarder.ts";
import { tcpInput } from "./input.ts";

// The folder's public names: TcpStack's constructor and connectToGuest take these.
export type { HostSocket } from "./conn.ts";
export { type Admission, type TcpConfig, TcpStats } from "./engine.ts";
export { expectDnsFraming } from "./dnsframe.ts";

export class TcpStack extends TcpEngine {
  readonly #trimTimer: Timer;

  constructor(tx: Tx, poller: PollerLike, wheel: TimerWheel, cfg: TcpConfig) {
    super(tx, poller, wheel, cfg);
    this.onRtx = (c: Conn) => rtxTimeout(this, c);
    // The store pool gives back what a burst made it grow to (store.ts trim), STORE_TRIM_MS
    // after the first buffer beyond STORE_KEEP_FREE came back; armed only then, so an idle
    // daemon has no timer to wake for.
    const trim = new Timer(() => this.pool.trim(STORE_KEEP_FREE));
    this.#trimTimer = trim;
    this.pool.keepFree = STORE_KEEP_FREE;
    this.pool.onSurplus = () => {
      if (!trim.armed) wheel.arm(trim, STORE_TRIM_MS);
    };
    this.onLife = (c: Conn) => lifeTimeout(this, c);
    this.onHost = (ev: number, c: Conn) => onHostEvents(this, c, ev);
  }

  /** One guest TCP segment (the IP layer's Transport interface). */
  input(m: PacketMeta): void {
    tcpInput(this, m);
  }

  /**
   * End of a batch of guest frames: writes the gathered guest bytes to the host sockets,
   * then sends the ACKs deferred during the batch (with windows that count those writes).
   */
  flush(): void {
    let c = this.ackList;
    this.ackList = null;
    while (c !== null) {
      const next: Conn | null = c.ackNext;
      c.ackNext = null;
      c.listed = false;
      if (!c.finished) {
        if (c.store.prefix > 0) flushStore(this, c);
        if (c.ackPending && !c.finished) sendAck(this, c);
        if (!c.finished) updateInterest(this, c);
      }
      c = next;
    }
  }

  /** Connections in the table (TIME-WAIT included). */
  get connections(): number {
    return this.table.size;
  }

  /** A plain snapshot of the counters plus gauges (for logs and tests). */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.stats)) if (v !== 0) out[k] = v;
    out.connections = this.table.size;
    out.timeWait = this.timeWaitCount;
    out.storeBuffersInUse = this.pool.inUse;
    if (this.pool.exhausted > 0) out.storeExhausted = this.pool.exhausted;
    return out;
  }

  /**
   * Opens a connection to the guest for an accepted host socket (a port forward): SYN to
   * guestAddr:guestPort from srcAddr:srcPort. The socket is owned by the connection from
   * now on. Null when the table is full or the 4-tuple is in use (the socket is closed).
   */
  connectToGuest(
    sock: HostSocket,
    family: 4 | 6,
    srcAddr: Uint8Array,
    srcPort: number,
    guestAddr: Uint8Array,
    guestPort: number,
  ): Conn | null {
    if (this.table.full) evictTimeWait(this);
    const dup = this.table.lookup(family, guestAddr, 0, guestPort, 0, srcPort);
    if (this.table.full || (dup !== null && !sameAddr(dup.remoteAddr, srcAddr))) {
      this.stats.tableFull++;
      sock.abort();
      return null;
    }
    if (dup !== null) {
      if (dup.state !== TIME_WAIT) {
        sock.abort();
        return null;
      }
      finish(this, dup, false);
    }
    const c = this.newConn(family, guestAddr.slice(), guestPort, srcAddr.slice(), srcPort);
    c.mss = Math.min(DEFAULT_MSS_V4, this.tx.maxL4(family) - 20);
    c.rcvWscale = OUR_WSCALE;
    c.sackOk = c.tsOk = true;
    c.iss = this.newIss();
    c.sndUna = c.recover = c.iss;
    c.sndNxt = c.sndMax = seqAdd(c.iss, 1);
    c.state = SYN_SENT;
    c.sock = sock;
    this.stats.openedToGuest++;
    c.lastHeard = this.now();
    initCongestion(c);
    this.table.insert(c);
    c.events = 0;
    this.poller.add(sock, 0, this.onHost, c);
    sendSyn(this, c, false);
    this.wheel.arm(c.rtx, c.rto);
    return c;
  }

  /**
   * Gives up on one connection at once: RST to the guest (unless it is still CONNECTING or
   * in TIME-WAIT) and abort of the host socket (RST to the host peer); `why` goes to its
   * "done" log line. Port forwards use it when they are removed.
   */
  reset(c: Conn, why: string): void {
    resetConn(this, c, why);
  }

  /**
   * Aborts every connection (shutdown): RST to both sides, nothing left. The guest gets RST
   * at SND.MAX (where its RCV.NXT is when everything sent arrived) and, with data in flight,
   * at SND.UNA too (where it is when none did): RFC 5961 makes a receiver take a RST only at
   * exactly RCV.NXT, and a guest left ESTABLISHED would wait for its own timeout.
   */
  close(): void {
    for (const c of this.table.all()) {
      if (synchronized(c.state) && c.state !== TIME_WAIT) {
        c.doneNote = "shutdown";
        const nxt = c.sndNxt;
        c.sndNxt = c.sndMax;
        sendRst(this, c);
        if (c.sndUna !== c.sndMax) {
          c.sndNxt = c.sndUna;
          sendRst(this, c);
        }
        c.sndNxt = nxt;
      }
      finish(this, c, true);
    }
    this.ackList = null;
    this.wheel.cancel(this.#trimTimer);
  }

  /** Frees the oldest TIME-WAIT entry (table full); false when there is none. */
  evictTimeWait(): boolean {
    return evictTimeWait(this);
  }
}
