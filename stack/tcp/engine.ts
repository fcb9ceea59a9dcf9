// The TCP engine's shared state: configuration, counters, the flow table, the RecvStore pool,
// the TIME-WAIT FIFO and the per-segment scratch objects. Every file of the engine works on
// one TcpEngine (TcpStack, mod.ts, is the one instance) and imports it from here; the files
// themselves are layered one way (see mod.ts), and the only calls that go up are the two
// timer callbacks, which mod.ts sets once (onRtx, onLife).

import type { Tx } from "../link/tx.ts";
import type { TimerWheel } from "../flow/timers.ts";
import { ConnTable } from "../flow/table.ts";
import { AddrCache } from "../flow/addrs.ts";
import type { PollerLike } from "../base/names.ts";
import type { FlowTarget } from "../flow/outbound.ts";
import { TcpOptions, type TcpSynOptionsInit, TcpView } from "../wire/tcp.ts";
import { TcpSocket } from "../../ffi/socket.ts";
import { Conn, type HostSocket } from "./conn.ts";
import { StorePool } from "./store.ts";
import { asSeq, type Seq } from "./seq.ts";
import {
  ACK_EVERY_BYTES,
  DEFAULT_KEEP_COUNT,
  DEFAULT_KEEP_IDLE_MS,
  DEFAULT_KEEP_INTERVAL_MS,
  DEFAULT_MAX_CONNS,
  DEFAULT_TIME_WAIT_MS,
  HALF_OPEN_BUCKETS,
  MAX_HALF_OPEN,
  MAX_HALF_OPEN_PER_DST,
  STORE_BUF_SIZE,
  STORE_BUFFERS,
} from "./tunables.ts";

/**
 * What the stack says of a new guest connection: "refused" (RST), "unreachable" (ICMP network
 * unreachable: the guest's connect() fails with ENETUNREACH, e.g. slirp4netns'
 * --disable-host-loopback), "dropped" (no answer at all: --disable-dns), "routed" (connect to its own destination), or the redirect target
 * to connect to instead (-R, DNS over TCP, host loopback). A target is valid only during the
 * SYN that asked: the engine hands it to `tag` and `connect` there and keeps nothing.
 */
export type Admission = "refused" | "unreachable" | "dropped" | "routed" | FlowTarget;

export interface TcpConfig {
  /** May the guest open a connection to dst:port, and to where? Asked once per SYN. */
  admit(family: 4 | 6, dst: Uint8Array, port: number): Admission;
  quiet: boolean;
  log(line: string): void;
  /** How long a host connect() may take before the guest gets RST. */
  connectTimeoutMs: number;
  mtu: number;
  /** Monotonic milliseconds. */
  now(): number;
  /** Most connections (TIME-WAIT included), default 16384. */
  maxConns?: number;
  /** TIME-WAIT length (2*MSL, scaled down like slirp stacks do), default 5000 ms. */
  timeWaitMs?: number;
  /** Keepalive toward the guest: idle time, probe interval, probes (default 2 h, 75 s, 9). */
  keepIdleMs?: number;
  keepIntervalMs?: number;
  keepCount?: number;
  /** Half-open bounds, in all and per destination (default tunables.ts MAX_HALF_OPEN*). */
  maxHalfOpen?: number;
  maxHalfOpenPerDst?: number;
  /** RecvStore pool: buffer size and count (default 1 MiB × 32 = 32 MiB at most). */
  storeBufSize?: number;
  storeBuffers?: number;
  /**
   * Called for each admitted connection just before its host connect(), with what `admit`
   * said: stack/mod.ts tags the connections of a remote forward (Conn.fwd, Conn.hostLabel).
   */
  tag?: (c: Conn, a: Admission) => void;
  /**
   * Opens the host socket for an admitted connection (default: TcpSocket.connect to the
   * target, or to addr:port when routed; may throw like it).
   */
  connect?: (family: 4 | 6, addr: Uint8Array, port: number, a: Admission) => HostSocket;
}

/** Counters: plain numbers, cheap to bump on the hot path. */
export class TcpStats {
  segsIn = 0;
  segsOut = 0;
  opened = 0;
  /** Connections slirpd opened toward the guest (local forwards). */
  openedToGuest = 0;
  established = 0;
  closed = 0;
  connectErrors = 0;
  connectTimeouts = 0;
  policyRefused = 0;
  /** SYNs answered with ICMP network unreachable (policy said "unreachable"). */
  unreachable = 0;
  /** SYNs dropped without an answer (policy said "dropped"). */
  silentDrops = 0;
  tableFull = 0;
  noConnection = 0;
  dropMalformed = 0;
  dropBadChecksum = 0;
  outOfWindow = 0;
  beyondWindow = 0;
  pawsDrops = 0;
  challengeAcks = 0;
  dupSegments = 0;
  oooSegments = 0;
  oooDropped = 0;
  dupAcks = 0;
  retransmits = 0;
  retransmittedBytes = 0;
  fastRetransmits = 0;
  /** Tail loss probes and recovery probes (RFC 8985-like, before an RTO). */
  probes = 0;
  rtoTimeouts = 0;
  timeouts = 0;
  windowProbes = 0;
  keepaliveProbes = 0;
  keepaliveDrops = 0;
  resetsSent = 0;
  resetsRcvd = 0;
  hostResets = 0;
  finsRcvd = 0;
  timeWaitEvicted = 0;
  /** Half-open connections given up for a newer SYN (bounds reached: SYN flood). */
  halfOpenEvicted = 0;
  /** SYNs left unanswered at a half-open bound (the guest sends them again). */
  synDropped = 0;
  /** DNS-over-TCP connections reset because the guest sent something else (dnsframe.ts). */
  notDns = 0;
}

const unset = (_c: Conn): void => {
  throw new Error("tcp: timer callback not set (TcpStack sets it)");
};
const unsetHost = (_ev: number, _c: Conn): void => {
  throw new Error("tcp: host event handler not set (TcpStack sets it)");
};

export class TcpEngine {
  readonly stats = new TcpStats();
  readonly table: ConnTable<Conn>;
  readonly pool: StorePool;
  /** Connection addresses, one shared copy each (flow/addrs.ts). */
  readonly addrs = new AddrCache();
  readonly view = new TcpView();
  readonly opts = new TcpOptions();
  readonly synOpts: TcpSynOptionsInit = {
    mss: 0,
    wscale: -1,
    sackPermitted: false,
    hasTimestamp: false,
    tsVal: 0,
    tsEcr: 0,
  };
  /** SACK blocks of the segment being built (output.ts). */
  readonly sackOut = new Uint32Array(8);
  nSackOut = 0;
  /** Connections owing an ACK, sent by flush(). */
  ackList: Conn | null = null;
  /** An in-order guest byte count that is acknowledged at once rather than at flush(). */
  ackEveryBytes = ACK_EVERY_BYTES;
  readonly timeWaitMs: number;
  readonly keepIdleMs: number;
  readonly keepIntervalMs: number;
  readonly keepCount: number;
  #twHead: Conn | null = null;
  #twTail: Conn | null = null;
  #twCount = 0;
  #hoHead: Conn | null = null;
  #hoTail: Conn | null = null;
  #hoCount = 0;
  readonly #hoPerBucket = new Uint16Array(HALF_OPEN_BUCKETS);
  /** Half-open bounds (tunables.ts; TcpConfig may lower them for tests). */
  readonly maxHalfOpen: number;
  readonly maxHalfOpenPerDst: number;
  /**
   * The retransmission and life timers' callbacks (retransmit.ts rtxTimeout, forwarder.ts
   * lifeTimeout: layers above this one) and the host sockets' event handler (forwarder.ts
   * onHostEvents), set once by TcpStack's constructor.
   */
  onRtx: (c: Conn) => void = unset;
  onLife: (c: Conn) => void = unset;
  /** The poller handler of every connection's host socket (its owner is the Conn). */
  onHost: (ev: number, c: Conn) => void = unsetHost;
  readonly connectHost: (
    family: 4 | 6,
    addr: Uint8Array,
    port: number,
    a: Admission,
  ) => HostSocket;

  constructor(
    readonly tx: Tx,
    readonly poller: PollerLike,
    readonly wheel: TimerWheel,
    readonly cfg: TcpConfig,
  ) {
    this.table = new ConnTable<Conn>(cfg.maxConns ?? DEFAULT_MAX_CONNS);
    this.pool = new StorePool(
      cfg.storeBufSize ?? STORE_BUF_SIZE,
      cfg.storeBuffers ?? STORE_BUFFERS,
    );
    this.timeWaitMs = cfg.timeWaitMs ?? DEFAULT_TIME_WAIT_MS;
    this.keepIdleMs = cfg.keepIdleMs ?? DEFAULT_KEEP_IDLE_MS;
    this.keepIntervalMs = cfg.keepIntervalMs ?? DEFAULT_KEEP_INTERVAL_MS;
    this.keepCount = cfg.keepCount ?? DEFAULT_KEEP_COUNT;
    this.maxHalfOpen = cfg.maxHalfOpen ?? MAX_HALF_OPEN;
    this.maxHalfOpenPerDst = cfg.maxHalfOpenPerDst ?? MAX_HALF_OPEN_PER_DST;
    this.connectHost = cfg.connect ??
      ((f, addr, p, a) =>
        typeof a === "object"
          ? TcpSocket.connect(a.family, a.addr, a.port)
          : TcpSocket.connect(f, addr, p));
  }

  now(): number {
    return this.cfg.now();
  }

  /** A random initial sequence number (RFC 9293 §3.4.1; the guest is local, no RFC 6528). */
  newIss(): Seq {
    return asSeq(Math.random() * 0x1_0000_0000);
  }

  newConn(
    family: 4 | 6,
    guestAddr: Uint8Array,
    guestPort: number,
    remoteAddr: Uint8Array,
    remotePort: number,
  ): Conn {
    return new Conn(
      family,
      guestAddr,
      guestPort,
      remoteAddr,
      remotePort,
      this.pool,
      this.onRtx,
      this.onLife,
    );
  }

  // --- Half-open FIFO (oldest first: the one evicted when a bound is reached) ---

  /** Half-open connections (CONNECTING or SYN-RECEIVED after a guest SYN). */
  get halfOpenCount(): number {
    return this.#hoCount;
  }

  /** Half-open connections whose destination falls in `bucket` (halfOpenBucket). */
  halfOpenIn(bucket: number): number {
    return this.#hoPerBucket[bucket];
  }

  /** The oldest half-open connection (of one destination bucket, or of all: -1). */
  halfOpenOldest(bucket = -1): Conn | null {
    let c = this.#hoHead;
    while (c !== null && bucket >= 0 && c.hoBucket !== bucket) c = c.hoNext;
    return c;
  }

  halfOpenAdd(c: Conn, bucket: number): void {
    if (c.hoBucket >= 0) return;
    c.hoBucket = bucket;
    c.hoPrev = this.#hoTail;
    c.hoNext = null;
    if (this.#hoTail) this.#hoTail.hoNext = c;
    else this.#hoHead = c;
    this.#hoTail = c;
    this.#hoCount++;
    this.#hoPerBucket[bucket]++;
  }

  /** Leaves the half-open FIFO (handshake done, or the connection ends); idempotent. */
  halfOpenRemove(c: Conn): void {
    if (c.hoBucket < 0) return;
    if (c.hoPrev) c.hoPrev.hoNext = c.hoNext;
    else this.#hoHead = c.hoNext;
    if (c.hoNext) c.hoNext.hoPrev = c.hoPrev;
    else this.#hoTail = c.hoPrev;
    this.#hoPerBucket[c.hoBucket]--;
    this.#hoCount--;
    c.hoNext = c.hoPrev = null;
    c.hoBucket = -1;
  }

  // --- TIME-WAIT FIFO (oldest first: the one evicted when the table is full) ---

  /** Connections in TIME-WAIT. */
  get timeWaitCount(): number {
    return this.#twCount;
  }

  /** The oldest connection in TIME-WAIT, null when none. */
  get timeWaitOldest(): Conn | null {
    return this.#twHead;
  }

  timeWaitAdd(c: Conn): void {
    c.twPrev = this.#twTail;
    c.twNext = null;
    if (this.#twTail) this.#twTail.twNext = c;
    else this.#twHead = c;
    this.#twTail = c;
    this.#twCount++;
  }

  timeWaitRemove(c: Conn): void {
    if (c.twPrev) c.twPrev.twNext = c.twNext;
    else if (this.#twHead === c) this.#twHead = c.twNext;
    else return;
    if (c.twNext) c.twNext.twPrev = c.twPrev;
    else this.#twTail = c.twPrev;
    c.twNext = c.twPrev = null;
    this.#twCount--;
  }
}
