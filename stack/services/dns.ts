// The DNS forwarder behind 10.0.2.3 / fd00::3 (slirp4netns' built-in resolver address).
//
// A guest query (UDP to the DNS address, port 53) is relayed to the nameservers of the host's
// resolv.conf, including loopback ones (127.0.0.53) that the guest could never reach itself,
// and the answer goes back to the guest unchanged except for the message id. slirpd is a
// relay, not a resolver: no cache, no parsing beyond the 12-byte header, so truncated (TC)
// answers, EDNS OPT records, DNSSEC data and unknown types pass through as they are.
//
// Each outstanding query has its own connected UDP socket from an ephemeral port:
//  - the kernel then drops datagrams from anyone but the server we asked, and the source
//    port is as random as the host's own stub resolver makes it (no single fixed port whose
//    16-bit id space an off-path attacker could sweep);
//  - an ICMP port unreachable (no server on 127.0.0.53) arrives as ECONNREFUSED at once, so
//    the next server is tried without waiting for the timeout.
// The id is rewritten to a random one on the way up (the guest's id can be predictable) and
// restored on the way down; answers are matched by socket and id.
//
// Servers: a query starts at the server that answered last (so a dead first server costs
// one timeout, not one per query), then walks the list once, `timeoutMs` per server. A
// guest retransmission of a query still in flight (same source, port and id) is re-sent to
// the current server instead of starting a second walk. The table is bounded
// (`maxOutstanding`); when it is full new queries are dropped and the guest retries.
//
// An answer larger than the reply path can deliver (`maxAnswer`: the UDP layer fragments up
// to 64 KiB; without it one frame of the guest MTU) is replaced by the header and question
// with the TC bit set: what a server does when the answer does not fit, and the guest
// retries over TCP.
//
// DNS over TCP is the TCP engine's: `dnsTcpTarget` tells it where a guest connection to
// the DNS address:53 must really go (the current upstream server).

import { UdpSocket } from "../../ffi/dgram.ts";
import { EAGAIN } from "../../ffi/errno.ts";
import type { Pollable } from "../../ffi/poller.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { NetPlan } from "../base/netplan.ts";
import { type Nameserver, ResolvConf } from "./resolvconf.ts";
import { Timer, type TimerWheel } from "../flow/timers.ts";
import type { Tx } from "../link/tx.ts";
import { bytesEqual, copyBytes, setU16, u16 } from "../wire/bytes.ts";
import { EPOLLIN } from "../base/names.ts";

export const DNS_PORT = 53;
const DNS_HLEN = 12;
const UDP_HLEN = 8;
/** Datagrams read per readiness callback (one answer is expected; stray ones are dropped). */
const READ_BUDGET = 8;

/**
 * Sends a UDP datagram to the guest from src:srcPort to dst:dstPort (addresses of 4 or 16
 * bytes) whose payload the caller wrote at `tx.buf[tx.l4Offset(family) + 8 ..]`.
 */
export type UdpReply = (
  family: 4 | 6,
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  payloadLen: number,
) => boolean;

/** The event loop's registration calls (ffi/poller.ts's Poller). */
export interface DnsPoller {
  add(p: Pollable, events: number, h: (events: number) => void): void;
  remove(p: Pollable): void;
}

export interface DnsOptions {
  /** resolv.conf to take the upstream servers from (default /etc/resolv.conf). */
  resolvConf?: string;
  /** Time one server gets before the next is tried (default 2000 ms). */
  timeoutMs?: number;
  /** Most queries in flight at once (default 256; each holds one host socket). */
  maxOutstanding?: number;
  /**
   * The largest answer the reply path delivers (default: what fits one frame of the guest
   * MTU; a reply path that fragments takes up to 65507). Larger ones go out as TC=1.
   */
  maxAnswer?: (family: 4 | 6) => number;
  log?: (line: string) => void;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
}

/** Counters of the forwarder (plain numbers). */
export class DnsStats {
  queries = 0;
  answers = 0;
  /** Guest retransmissions of a query already in flight. */
  retransmits = 0;
  /** A server did not answer in time (the next one was tried). */
  serverTimeouts = 0;
  /** A server refused (ICMP port unreachable) or could not be reached at all. */
  serverErrors = 0;
  /** Queries no server answered. */
  failed = 0;
  /** Answers replaced by a TC=1 header because they do not fit the guest MTU. */
  truncated = 0;
  dropMalformed = 0;
  dropTableFull = 0;
  /** Datagrams on a query socket that were not its answer. */
  dropStray = 0;
}

/** One query in flight; the objects (and their timers) are made once, up front. */
class Query {
  active = false;
  family: 4 | 6 = 4;
  readonly guestAddr = new Uint8Array(16);
  guestPort = 0;
  guestId = 0;
  upId = 0;
  /** The guest's query, copied (the receive buffer is reused). */
  msg: Uint8Array = new Uint8Array(0);
  /** The server list this query walks (a snapshot: resolv.conf may change meanwhile). */
  servers: Nameserver[] = [];
  server = 0;
  tried = 0;
  sock: UdpSocket | null = null;
  constructor(readonly index: number, readonly timer: Timer) {}
}

export class DnsForwarder {
  readonly stats = new DnsStats();
  readonly resolv: ResolvConf;
  readonly #queries: Query[];
  readonly #free: number[] = [];
  readonly #rx = new Uint8Array(65536);
  readonly #timeoutMs: number;
  readonly #maxAnswer: (family: 4 | 6) => number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  /** The list `#preferred` indexes, to notice a reload. */
  #list: Nameserver[] | null = null;
  /** Index of the server that answered last. */
  #preferred = 0;
  #ids = new Uint16Array(64);
  #idNext = 64;
  #fullLogged = false;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly poller: DnsPoller,
    private readonly wheel: TimerWheel,
    private readonly reply: UdpReply,
    opts: DnsOptions = {},
  ) {
    this.#log = opts.log ?? (() => {});
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#maxAnswer = opts.maxAnswer ?? ((f) => tx.maxL4(f) - UDP_HLEN);
    this.#now = opts.now ?? (() => performance.now());
    this.resolv = new ResolvConf(opts.resolvConf ?? "/etc/resolv.conf", { log: this.#log });
    // Read it now, at start-up: later (under --enable-sandbox) only /etc and /run are
    // visible, and a file elsewhere must still have given its servers once.
    this.resolv.servers(this.#now());
    const max = opts.maxOutstanding ?? 256;
    this.#queries = [];
    for (let i = 0; i < max; i++) {
      const q: Query = new Query(i, new Timer(() => this.#timedOut(q)));
      this.#queries.push(q);
      this.#free.push(max - 1 - i);
    }
  }

  /** Queries in flight. */
  get outstanding(): number {
    return this.#queries.length - this.#free.length;
  }

  /** Does (family, dst) name the DNS address? `dst` is 4 or 16 bytes at `dstOff`. */
  isDnsAddress(family: 4 | 6, dst: Uint8Array, dstOff = 0): boolean {
    return family === 4
      ? bytesEqual(dst, dstOff, this.plan.dns4, 0, 4)
      : bytesEqual(dst, dstOff, this.plan.dns6, 0, 16);
  }

  /**
   * Where a guest TCP connection to (dst, port) must really go: the current upstream server
   * on port 53 when dst:port is the DNS address:53, else null (connect as usual). For the
   * TCP engine's connect hook; the firewall must let such a connection through, it is
   * slirpd's own service.
   */
  dnsTcpTarget(
    family: 4 | 6,
    dst: Uint8Array,
    port: number,
  ): { family: 4 | 6; addr: Uint8Array; port: number } | null {
    if (port !== DNS_PORT || dst.length !== (family === 4 ? 4 : 16)) return null;
    if (!this.isDnsAddress(family, dst)) return null;
    const list = this.#servers();
    const s = list[this.#preferred % list.length];
    return { family: s.family, addr: s.addr, port: DNS_PORT };
  }

  /**
   * A guest datagram to the DNS address, port 53: the DNS message is at
   * m.b[off .. off+len), the UDP header at m.l4Off.
   */
  input(m: PacketMeta, off: number, len: number): void {
    const b = m.b;
    // A query: at least a header, QR = 0. Anything else (answers, garbage) is dropped.
    if (len < DNS_HLEN || (b[off + 2] & 0x80) !== 0) {
      this.stats.dropMalformed++;
      return;
    }
    const alen = m.family === 4 ? 4 : 16;
    const port = u16(b, m.l4Off);
    const id = u16(b, off);
    const dup = this.#findInFlight(m.family, b, m.srcOff, port, id);
    if (dup !== null) {
      // The guest gave up waiting on its side: ask the current server again.
      this.stats.retransmits++;
      if (dup.sock !== null) dup.sock.send(dup.msg, 0, dup.msg.length);
      return;
    }
    const i = this.#free.pop();
    if (i === undefined) {
      this.stats.dropTableFull++;
      if (!this.#fullLogged) {
        this.#fullLogged = true;
        this.#log(`dns: ${this.#queries.length} queries in flight; dropping new ones`);
      }
      return;
    }
    this.stats.queries++;
    const q = this.#queries[i];
    q.active = true;
    q.family = m.family;
    copyBytes(q.guestAddr, 0, b, m.srcOff, alen);
    q.guestPort = port;
    q.guestId = id;
    q.upId = this.#randomId();
    q.msg = b.slice(off, off + len);
    setU16(q.msg, 0, q.upId);
    q.servers = this.#servers();
    q.server = this.#preferred % q.servers.length;
    q.tried = 0;
    this.#ask(q);
  }

  /** Closes every query socket (shutdown). */
  close(): void {
    for (const q of this.#queries) if (q.active) this.#finish(q);
  }

  // --- internals ---

  #servers(): Nameserver[] {
    const list = this.resolv.servers(this.#now());
    if (list !== this.#list) {
      this.#list = list;
      this.#preferred = 0;
    }
    return list;
  }

  #findInFlight(
    family: 4 | 6,
    b: Uint8Array,
    srcOff: number,
    port: number,
    id: number,
  ): Query | null {
    if (this.#free.length === this.#queries.length) return null;
    const alen = family === 4 ? 4 : 16;
    for (const q of this.#queries) {
      if (
        q.active && q.guestId === id && q.guestPort === port && q.family === family &&
        bytesEqual(q.guestAddr, 0, b, srcOff, alen)
      ) return q;
    }
    return null;
  }

  #randomId(): number {
    if (this.#idNext >= this.#ids.length) {
      crypto.getRandomValues(this.#ids);
      this.#idNext = 0;
    }
    return this.#ids[this.#idNext++];
  }

  /** Sends q to q.server, moving on to the next servers while that fails at once. */
  #ask(q: Query): void {
    while (q.tried < q.servers.length) {
      const s = q.servers[q.server];
      if (this.#open(q, s)) {
        this.wheel.arm(q.timer, this.#timeoutMs);
        return;
      }
      this.stats.serverErrors++;
      q.tried++;
      q.server = (q.server + 1) % q.servers.length;
    }
    this.stats.failed++;
    this.#finish(q);
  }

  /** A connected socket to s:53 with the query sent; false when any step failed. */
  #open(q: Query, s: Nameserver): boolean {
    this.#closeSock(q);
    let sock: UdpSocket;
    try {
      sock = UdpSocket.open(s.family);
    } catch (e) {
      this.#log(`dns: cannot open a socket: ${e instanceof Error ? e.message : e}`);
      return false;
    }
    // connect() picks the route and source now: an unreachable server fails here.
    if (sock.connect(s.addr, DNS_PORT) < 0 || sock.send(q.msg, 0, q.msg.length) < 0) {
      sock.close();
      return false;
    }
    q.sock = sock;
    this.poller.add(sock, EPOLLIN, () => this.#readable(q, sock));
    return true;
  }

  #closeSock(q: Query): void {
    const s = q.sock;
    if (s === null) return;
    q.sock = null;
    this.poller.remove(s);
    s.close();
  }

  #readable(q: Query, sock: UdpSocket): void {
    if (!q.active || q.sock !== sock) return; // a late event for a socket already replaced
    const rx = this.#rx;
    for (let i = 0; i < READ_BUDGET; i++) {
      const n = sock.recv(rx, 0, rx.length);
      if (n === -EAGAIN) break;
      if (n < 0) {
        // ECONNREFUSED (ICMP port unreachable: nobody listens there) or another error
        // pending on the socket: this server is no use for this query.
        this.stats.serverErrors++;
        this.#next(q);
        return;
      }
      if (n < DNS_HLEN || u16(rx, 0) !== q.upId || (rx[2] & 0x80) === 0) {
        this.stats.dropStray++;
        continue;
      }
      this.#deliver(q, rx, n);
      // Ask this server first from now on (unless resolv.conf changed meanwhile).
      if (q.servers === this.#list) this.#preferred = q.server;
      this.stats.answers++;
      this.#finish(q);
      return;
    }
  }

  #timedOut(q: Query): void {
    if (!q.active) return;
    this.stats.serverTimeouts++;
    this.#next(q);
  }

  /** The current server failed: on to the next one, or give up after the last. */
  #next(q: Query): void {
    this.wheel.cancel(q.timer);
    this.#closeSock(q);
    q.tried++;
    q.server = (q.server + 1) % q.servers.length;
    this.#ask(q);
  }

  /** Writes the answer (guest id restored) behind the UDP header and sends it. */
  #deliver(q: Query, ans: Uint8Array, n: number): void {
    const tx = this.tx;
    const at = tx.l4Offset(q.family) + UDP_HLEN;
    const room = Math.min(this.#maxAnswer(q.family), tx.buf.length - at);
    let len = n;
    if (n <= room) {
      copyBytes(tx.buf, at, ans, 0, n);
    } else {
      len = truncatedAnswer(tx.buf, at, ans, n, room);
      this.stats.truncated++;
    }
    setU16(tx.buf, at, q.guestId);
    const src = q.family === 4 ? this.plan.dns4 : this.plan.dns6;
    const dst = q.family === 4 ? q.guestAddr.subarray(0, 4) : q.guestAddr;
    this.reply(q.family, src, DNS_PORT, dst, q.guestPort, len);
  }

  #finish(q: Query): void {
    this.wheel.cancel(q.timer);
    this.#closeSock(q);
    q.active = false;
    q.msg = new Uint8Array(0);
    q.servers = [];
    this.#free.push(q.index);
  }
}

/**
 * The answer cut down to its header and question section with TC set and the other
 * sections empty (RFC 1035 §4.1.1, RFC 2181 §9), written at out[o..]; returns its length.
 * When the question cannot be delimited within `room` the question is dropped too.
 */
export function truncatedAnswer(
  out: Uint8Array,
  o: number,
  ans: Uint8Array,
  n: number,
  room: number,
): number {
  let end = DNS_HLEN;
  let qd = u16(ans, 4);
  const qend = questionEnd(ans, n, qd);
  if (qend < 0 || qend > room) {
    qd = 0;
  } else {
    end = qend;
  }
  copyBytes(out, o, ans, 0, end);
  out[o + 2] |= 0x02; // TC
  setU16(out, o + 4, qd);
  setU16(out, o + 6, 0);
  setU16(out, o + 8, 0);
  setU16(out, o + 10, 0);
  return end;
}

/** Offset just past `count` questions starting at 12, or -1 when malformed. */
function questionEnd(b: Uint8Array, n: number, count: number): number {
  let p = DNS_HLEN;
  for (let q = 0; q < count; q++) {
    // QNAME: labels ending in a zero byte, or a compression pointer (2 bytes).
    for (let labels = 0;; labels++) {
      if (p >= n || labels > 127) return -1;
      const l = b[p];
      if (l === 0) {
        p += 1;
        break;
      }
      if ((l & 0xc0) === 0xc0) {
        p += 2;
        break;
      }
      if ((l & 0xc0) !== 0) return -1;
      p += 1 + l;
    }
    p += 4; // QTYPE, QCLASS
    if (p > n) return -1;
  }
  return p;
}
