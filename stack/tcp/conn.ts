// One TCP connection between the guest and a host socket: the RFC 9293 transmission control
// block, seen from slirpd, which plays the remote peer. "Send" is host → guest (data peeked
// from the host socket), "receive" is guest → host (data sent into the host socket).
//
// A connection holds no payload buffer of its own: unacknowledged host data stays in the
// host socket's receive queue (peeked, discarded once the guest ACKs it), and guest data goes
// straight into the host socket's send queue. The only exception is the bounded RecvStore
// (out-of-order guest segments, short host writes), which borrows from a shared pool.

import { Timer } from "../flow/timers.ts";
import type { Keyed } from "../flow/table.ts";
import { RecvStore, type StorePool } from "./store.ts";
import type { Seq } from "./seq.ts";
import { DEFAULT_MSS_V4, INITIAL_RTO, INITIAL_SSTHRESH } from "./tunables.ts";

// States (RFC 9293 §3.3.2), plus CONNECTING: the guest's SYN is in, the host connect() is in
// progress and the guest has not been answered yet (it gets SYN-ACK or RST when it ends).
export const CLOSED = 0;
export const CONNECTING = 1;
export const SYN_SENT = 2;
export const SYN_RCVD = 3;
export const ESTABLISHED = 4;
export const FIN_WAIT_1 = 5;
export const FIN_WAIT_2 = 6;
export const CLOSE_WAIT = 7;
export const CLOSING = 8;
export const LAST_ACK = 9;
export const TIME_WAIT = 10;

export const STATE_NAMES = [
  "CLOSED",
  "CONNECTING",
  "SYN-SENT",
  "SYN-RECEIVED",
  "ESTABLISHED",
  "FIN-WAIT-1",
  "FIN-WAIT-2",
  "CLOSE-WAIT",
  "CLOSING",
  "LAST-ACK",
  "TIME-WAIT",
] as const;

/** A set of states as a lookup table by state number (no reliance on their order). */
function stateSet(...states: number[]): Uint8Array {
  const t = new Uint8Array(STATE_NAMES.length);
  for (const s of states) t[s] = 1;
  return t;
}

const SYNCHRONIZED = stateSet(
  ESTABLISHED,
  FIN_WAIT_1,
  FIN_WAIT_2,
  CLOSE_WAIT,
  CLOSING,
  LAST_ACK,
  TIME_WAIT,
);

/**
 * The handshake is complete (RFC 9293 §3.5.2's synchronized states, ESTABLISHED through
 * TIME-WAIT): both sequence spaces are known to both sides.
 */
export function synchronized(s: number): boolean {
  return SYNCHRONIZED[s] === 1;
}

/** States in which the guest may still send data (its FIN not yet received). */
export function guestMaySend(s: number): boolean {
  return s === ESTABLISHED || s === FIN_WAIT_1 || s === FIN_WAIT_2 || s === SYN_RCVD;
}

/** States in which new host data may go to the guest (our FIN not yet sent). */
export function weMaySend(s: number): boolean {
  return s === ESTABLISHED || s === CLOSE_WAIT;
}

/**
 * What the engine uses of ffi/socket.ts's TcpSocket (which satisfies it); unit tests pass an
 * in-memory fake through TcpConfig.connect.
 */
export interface HostSocket {
  readonly fd: number;
  readonly pendingError: number;
  connectResult(): number;
  send(buf: Uint8Array, off: number, len: number): number;
  peek(buf: Uint8Array, off: number, len: number): number;
  setPeekOffset(n: number): void;
  discard(n: number): number;
  shutdownWrite(): number;
  abort(): void;
  close(): void;
  outq(): number;
  inq(): number;
  sendBufSize(refresh?: boolean): number;
  localAddress(): { addr: Uint8Array; port: number } | null;
  remoteAddress(): { addr: Uint8Array; port: number } | null;
  /** TCP_NODELAY (may throw; optional for fakes). */
  setNoDelay?(on: boolean): void;
  /** The connect finished, asked without waiting: 1 yes, -1 failed, 0 not yet (optional). */
  connectDone?(): number;
}

/** Conn.events: the socket is not in the poller (before the connect, after detaching). */
export const NOT_POLLED = -1;
/** Conn.events: the socket goes into the poller at the next updateInterest. */
export const TO_POLL = -2;

/** Whether c's socket is registered with the poller (events may have EPOLLET: negative). */
export function polled(c: Conn): boolean {
  return c.events !== NOT_POLLED && c.events !== TO_POLL;
}

/** Conn.sacked before any SACK block: empty, never written (a block needs a real array). */
export const NO_SACKS = new Uint32Array(0);

export class Conn implements Keyed {
  // --- identity (Keyed) ---
  hash = 0;
  hnext: Keyed | null = null;
  state = CLOSED;

  // --- host side ---
  sock: HostSocket | null = null;
  /**
   * epoll events registered for sock; NOT_POLLED (-1): not registered (never, or detached);
   * TO_POLL (-2): to be registered by the next updateInterest (a connect that finished at once).
   */
  events = NOT_POLLED;
  /** "HOSTLOCAL:PORT-HOSTREMOTE:PORT" for the log lines (set when the connect succeeds). */
  hostLabel = "";
  /** Bytes written to the host (from the guest) and peeked for the guest (from the host). */
  bytesFromGuest = 0;
  bytesFromHost = 0;
  /** Log state: "conn new" printed, "conn done" printed, why it ended (for the log). */
  loggedNew = false;
  loggedDone = false;
  doneNote = "";
  /** finish() ran: the connection is gone from the table and must not be touched. */
  finished = false;
  /**
   * Called once when the host socket is closed (at the end, or on entering TIME-WAIT with both
   * sides done): port forwards keep their own list and log line with it.
   */
  onHostClosed: ((c: Conn) => void) | null = null;
  /**
   * The remote forward (-R) whose redirect made this connection; null for routed ones. Its
   * lines say "remote-fwd conn" (slirpnetstack's), and removing the forward aborts it.
   */
  fwd: object | null = null;

  // --- receive: guest → host ---
  irs = 0 as Seq;
  /** Sequence number of the next guest byte not yet written to the host (the store's base). */
  hostSeq = 0 as Seq;
  /** Next sequence number expected from the guest (= hostSeq + store.prefix (+1 after FIN)). */
  rcvNxt = 0 as Seq;
  /** Right edge of the window last advertised (rcvNxt + window): never moved left. */
  rcvAdv = 0 as Seq;
  /** Our window shift (RFC 7323), 0 when the guest did not offer scaling. */
  rcvWscale = 0;
  /** ACK number in the last segment we sent (RFC 7323 TS.Recent rule). */
  lastAckSent = 0 as Seq;
  /** The guest's FIN has been received (in order). */
  finRcvd = false;
  /** shutdown(SHUT_WR) done on the host socket (guest FIN carried over). */
  hostWriteShut = false;
  /** An ACK is owed to the guest (sent by the next flush, or piggybacked). */
  ackPending = false;
  /** On the stack's end-of-batch list (ackNext links it): see TcpStack.flush. */
  listed = false;
  ackNext: Conn | null = null;
  /** The last window we advertised was limited by host socket space: watch EPOLLOUT. */
  wantWindowUpdate = false;
  /** receiveWindow's answer, reused for the segments of one push; -1: compute again. */
  wndCache = -1;
  readonly store: RecvStore;

  // --- send: host → guest ---
  iss = 0 as Seq;
  sndUna = 0 as Seq;
  sndNxt = 0 as Seq;
  /** Highest sequence number sent + 1 (sndNxt moves back below it after an RTO). */
  sndMax = 0 as Seq;
  /** The guest's window, in bytes (already scaled). */
  sndWnd = 0;
  sndWl1 = 0 as Seq;
  sndWl2 = 0 as Seq;
  /** The guest's window shift; 0 when no scaling was negotiated. */
  sndWscale = 0;
  /**
   * Payload per segment to the guest (SMSS): its MSS option bounded by our MTU, less the
   * timestamp option when used. cwnd counts in these.
   */
  mss = DEFAULT_MSS_V4;
  /** The last peek answered EAGAIN and no EPOLLIN came since (pushData then waits for one). */
  hostDry = false;
  /** The host socket reached EOF (its peer sent FIN). */
  hostEof = false;
  /** Our FIN has been sent at least once; its sequence number is finSeq. */
  finSent = false;
  finSeq = 0 as Seq;

  // --- options (RFC 7323, RFC 2018) ---
  tsOk = false;
  sackOk = false;
  tsRecent = 0;
  /**
   * Guest's SACK blocks for data above sndUna (left/right pairs), the scoreboard: NO_SACKS
   * until the first block (retransmit.ts updateSacked), as most connections never see one.
   */
  sacked = NO_SACKS;
  nSacked = 0;

  // --- RTT / RTO (RFC 6298) ---
  srtt = 0; // ms; 0 = no sample yet
  rttvar = 0;
  rto = INITIAL_RTO;
  /** Consecutive timeouts (exponential backoff exponent). */
  backoff = 0;
  /** Timed segment without timestamps (Karn): its end seq, and when it was sent; -1 none. */
  rttSeq = 0 as Seq;
  rttTime = -1;
  /** Persist (zero-window probe) mode for the retransmission timer. */
  persist = false;

  // --- congestion control (RFC 5681, RFC 6582) ---
  cwnd = 0;
  ssthresh = INITIAL_SSTHRESH;
  dupAcks = 0;
  inRecovery = false;
  recover = 0 as Seq;
  /** In recovery: next sequence number that may be retransmitted (holes below are done). */
  rexmitNxt = 0 as Seq;
  /** sndMax and the time when the segment at sndUna was last retransmitted (RACK-like). */
  rexmitMark = 0 as Seq;
  rexmitTime = 0;
  /**
   * The retransmission timer is armed as a probe rather than the RTO: a tail loss probe
   * (RFC 8985 §7), or in recovery a second go at the holes; one per flight (probeDone,
   * cleared by new ACKs).
   */
  probe = false;
  probeDone = false;

  // --- timers ---
  /** Retransmission, SYN-ACK retransmission, persist. */
  readonly rtx: Timer;
  /** Connect timeout, keepalive, TIME-WAIT. */
  readonly life: Timer;
  /** Time of the last segment from the guest (keepalive idleness). */
  lastHeard = 0;
  kaProbes = 0;
  /** Link in the TIME-WAIT FIFO (oldest first). */
  twNext: Conn | null = null;
  twPrev: Conn | null = null;
  /**
   * Link in the half-open FIFO (a guest SYN whose handshake is not complete: CONNECTING or
   * SYN-RECEIVED), and the destination bucket it counts in; -1: not in it.
   */
  hoNext: Conn | null = null;
  hoPrev: Conn | null = null;
  hoBucket = -1;
  /** When the guest's SYN arrived (engine ms): the age of a half-open connection. */
  synAt = 0;
  /** DNS over TCP (dnsframe.ts): checked, checked up to, length bytes/length/position. */
  dnsFramed = false;
  dnsSeen = 0 as Seq;
  dnsLenBytes = 0;
  dnsLen = 0;
  dnsPos = 0;

  constructor(
    readonly family: 4 | 6,
    readonly guestAddr: Uint8Array,
    readonly guestPort: number,
    readonly remoteAddr: Uint8Array,
    readonly remotePort: number,
    pool: StorePool,
    onRtx: (c: Conn) => void,
    onLife: (c: Conn) => void,
  ) {
    this.store = new RecvStore(pool);
    this.rtx = new Timer(onRtx, this);
    this.life = new Timer(onLife, this);
  }

  /** Bytes sent to the guest and not yet acknowledged (our FIN counts as one). */
  get inFlight(): number {
    return (this.sndNxt - this.sndUna) | 0;
  }
}
