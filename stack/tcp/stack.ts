// The TCP transport: owns the flow table, the shared RecvStore pool, the TIME-WAIT list and
// the counters; `input` is called by the IP layer for every guest TCP segment, `flush` once
// per batch of guest frames (it writes the gathered guest bytes and sends the ACKs deferred
// during the batch) and on every timer tick.
//
// The engine is split by concern (passt-like small files):
//   input.ts       RFC 9293 segment arrival
//   output.ts      segment building, data from the host socket to the guest
//   retransmit.ts  RTO, fast retransmit/recovery, SACK scoreboard, persist
//   forwarder.ts   the host socket: connect, write, window, epoll interest, close, log
//   store.ts       bounded out-of-order / short-write store; table.ts flow table; seq.ts

import type { PacketMeta } from "../meta.ts";
import type { Tx } from "../tx.ts";
import type { TimerWheel } from "../timers.ts";
import { TcpOptions, type TcpSynOptionsInit, TcpView } from "../wire/tcp.ts";
import { TcpSocket } from "../../ffi/socket.ts";
import { Conn, ESTABLISHED, SYN_SENT, TIME_WAIT } from "./conn.ts";
import { ConnTable } from "./table.ts";
import { StorePool } from "./store.ts";
import { tcpInput } from "./input.ts";
import { OUR_WSCALE, sendAck, sendSyn } from "./output.ts";
import { initCongestion, rtxTimeout } from "./retransmit.ts";
import { finish, flushStore, lifeTimeout, onHostEvents, updateInterest } from "./forwarder.ts";

// epoll event bits (the kernel's values; ffi/poller.ts exports the same).
export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;

/** The part of ffi/poller.ts's Poller the TCP engine uses (a fake in unit tests). */
export interface PollerLike {
  add(p: { readonly fd: number }, events: number, h: (events: number) => void): void;
  modify(p: { readonly fd: number }, events: number): void;
  remove(p: { readonly fd: number }): void;
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
}

export interface TcpConfig {
  /**
   * May the guest open a connection to dst:port? false: RST; "unreachable": ICMP network
   * unreachable (the guest's connect() fails with ENETUNREACH), e.g. slirp4netns'
   * --disable-host-loopback.
   */
  policy(family: 4 | 6, proto: number, dst: Uint8Array, port: number): boolean | "unreachable";
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
  /** RecvStore pool: buffer size and count (default 1 MiB × 32 = 32 MiB at most). */
  storeBufSize?: number;
  storeBuffers?: number;
  /**
   * Test hook: drop this fraction of TCP segments each way (a lossy link where netem is not
   * available). Default: the SLIRPD_TEST_TCP_LOSS environment variable, else 0.
   */
  lossRate?: number;
  /**
   * Called for each new guest connection just before its host connect(), in the same SYN as
   * `policy`: stack.ts tags the connections of a remote forward (Conn.fwd, Conn.hostLabel).
   */
  tag?: (c: Conn) => void;
  /** Opens the host socket (default: TcpSocket.connect; may throw like it). */
  connect?: (family: 4 | 6, addr: Uint8Array, port: number) => HostSocket;
}

/** Counters: plain numbers, cheap to bump on the hot path. */
export class TcpStats {
  segsIn = 0;
  segsOut = 0;
  opened = 0;
  established = 0;
  closed = 0;
  connectErrors = 0;
  connectTimeouts = 0;
  policyRefused = 0;
  /** SYNs answered with ICMP network unreachable (policy said "unreachable"). */
  unreachable = 0;
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
  /** Segments dropped by the lossRate test hook. */
  testDrops = 0;
}

export class TcpStack {
  readonly stats = new TcpStats();
  readonly table: ConnTable<Conn>;
  readonly pool: StorePool;
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
  ackEveryBytes = 64 * 1024;
  readonly timeWaitMs: number;
  readonly keepIdleMs: number;
  readonly keepIntervalMs: number;
  readonly keepCount: number;
  #twHead: Conn | null = null;
  #twTail: Conn | null = null;
  #twCount = 0;
  readonly #onRtx = (c: Conn) => rtxTimeout(this, c);
  readonly #onLife = (c: Conn) => lifeTimeout(this, c);
  readonly connectHost: (family: 4 | 6, addr: Uint8Array, port: number) => HostSocket;
  readonly lossRate: number;
  #rng = 0x2545f491;

  constructor(
    readonly tx: Tx,
    readonly poller: PollerLike,
    readonly wheel: TimerWheel,
    readonly cfg: TcpConfig,
  ) {
    this.table = new ConnTable<Conn>(cfg.maxConns ?? 16384);
    this.pool = new StorePool(cfg.storeBufSize ?? 1 << 20, cfg.storeBuffers ?? 32);
    this.timeWaitMs = cfg.timeWaitMs ?? 5000;
    this.keepIdleMs = cfg.keepIdleMs ?? 7_200_000;
    this.keepIntervalMs = cfg.keepIntervalMs ?? 75_000;
    this.keepCount = cfg.keepCount ?? 9;
    this.connectHost = cfg.connect ?? ((f, a, p) => TcpSocket.connect(f, a, p));
    this.lossRate = cfg.lossRate ?? envLoss();
  }

  /** The lossRate test hook's coin (xorshift32): true = drop this segment. */
  lose(): boolean {
    if (this.lossRate <= 0) return false;
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x;
    if ((x >>> 0) / 0x1_0000_0000 >= this.lossRate) return false;
    this.stats.testDrops++;
    return true;
  }

  now(): number {
    return this.cfg.now();
  }

  /** One guest TCP segment (the IP layer's Transport interface). */
  input(m: PacketMeta): void {
    if (this.lossRate > 0 && this.lose()) return;
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

  /** Connections in TIME-WAIT. */
  get timeWaitCount(): number {
    return this.#twCount;
  }

  /** A plain snapshot of the counters plus gauges (for logs and tests). */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.stats)) if (v !== 0) out[k] = v;
    out.connections = this.table.size;
    out.timeWait = this.#twCount;
    out.storeBuffersInUse = this.pool.inUse;
    if (this.pool.exhausted > 0) out.storeExhausted = this.pool.exhausted;
    return out;
  }

  /** A random initial sequence number (RFC 9293 §3.4.1; the guest is local, no RFC 6528). */
  newIss(): number {
    return (Math.random() * 0x1_0000_0000) >>> 0;
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
      this.#onRtx,
      this.#onLife,
    );
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
    if (this.table.full) this.evictTimeWait();
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
    c.mss = Math.min(536, this.tx.maxL4(family) - 20);
    c.rcvWscale = OUR_WSCALE;
    c.sackOk = c.tsOk = true;
    c.iss = this.newIss();
    c.sndUna = c.recover = c.iss;
    c.sndNxt = c.sndMax = (c.iss + 1) >>> 0;
    c.state = SYN_SENT;
    c.sock = sock;
    c.lastHeard = this.now();
    initCongestion(c);
    this.table.insert(c);
    c.onEvents = (ev: number) => onHostEvents(this, c, ev);
    c.events = 0;
    this.poller.add(sock, 0, c.onEvents);
    sendSyn(this, c, false);
    this.wheel.arm(c.rtx, c.rto);
    return c;
  }

  /** Aborts every connection (shutdown): RST to both sides, nothing left. */
  close(): void {
    for (const c of this.table.all()) {
      if (c.state >= ESTABLISHED && c.state !== TIME_WAIT) {
        c.doneNote = "shutdown";
      }
      finish(this, c, true);
    }
    this.ackList = null;
  }

  // --- TIME-WAIT FIFO (oldest first: the one evicted when the table is full) ---

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

  /** Frees the oldest TIME-WAIT entry (table full); false when there is none. */
  evictTimeWait(): boolean {
    const c = this.#twHead;
    if (c === null) return false;
    this.stats.timeWaitEvicted++;
    finish(this, c, false);
    return true;
  }
}

function envLoss(): number {
  try {
    const v = Number(Deno.env.get("SLIRPD_TEST_TCP_LOSS") ?? "0");
    return v > 0 && v < 1 ? v : 0;
  } catch {
    return 0; // no env permission: no hook
  }
}

function sameAddr(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
