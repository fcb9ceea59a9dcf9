// Fakes of slirpd's own modules for the TCP engine's unit tests (no kernel is faked here:
// the namespace tests in tests/ns/tcp_*.test.ts use real sockets and a real guest kernel).
//
//  - FakeTx: the Tx interface; every frame is decoded into a Seg record.
//  - FakeSocket: an in-memory host socket with a bounded send buffer, a receive queue with
//    a peek offset, EOF, errors and a peer that "reads" at the test's command.
//  - FakePoller: remembers registrations; the test fires events by hand.
//  - Guest: builds guest segments into a PacketMeta and feeds them to the stack.
//
// Their own self-test is tests/unit/tcp_fakes.test.ts.

import assert from "node:assert/strict";
import { PacketMeta } from "../../stack/ip/meta.ts";
import type { Tx } from "../../stack/link/tx.ts";
import { TimerWheel } from "../../stack/flow/timers.ts";
import { TcpOptions, TcpView } from "../../stack/wire/tcp.ts";
import { u16, u32 } from "../../stack/wire/bytes.ts";
import type { PollerLike } from "../../stack/base/names.ts";
import { type HostSocket, type TcpConfig, TcpStack } from "../../stack/tcp/mod.ts";

export const FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16;

export interface Seg {
  family: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss: number;
  wscale: number;
  sackPermitted: boolean;
  ts: boolean;
  tsVal: number;
  tsEcr: number;
  sack: number[];
  payload: Uint8Array;
  gsoSize: number;
}

export class FakeTx {
  readonly buf = new Uint8Array(128 * 1024);
  readonly vnetLen: 0 | 10;
  readonly frames: Seg[] = [];
  readonly #view = new TcpView();
  readonly #opts = new TcpOptions();
  /** When false, sendIp fails (a full tap). */
  accept = true;

  constructor(readonly gso = false, readonly mtu = 1500) {
    this.vnetLen = gso ? 10 : 0;
  }
  l4Offset(family: 4 | 6): number {
    return this.vnetLen + 14 + (family === 4 ? 20 : 40);
  }
  maxL4(family: 4 | 6): number {
    return this.mtu - (family === 4 ? 20 : 40);
  }
  sendIp(
    family: 4 | 6,
    src: Uint8Array,
    dst: Uint8Array,
    _proto: number,
    l4Len: number,
    gsoSize = 0,
  ): boolean {
    return this.sendIpAt(family, src, 0, dst, 0, _proto, l4Len, gsoSize);
  }
  sendIpAt(
    family: 4 | 6,
    src: Uint8Array,
    srcOff: number,
    dst: Uint8Array,
    dstOff: number,
    _proto: number,
    l4Len: number,
    gsoSize = 0,
  ): boolean {
    if (!this.accept) return false;
    const o = this.l4Offset(family);
    const v = this.#view;
    assert.ok(v.parse(this.buf, o, l4Len), "emitted a malformed TCP header");
    assert.ok(v.parseOptions(this.#opts), "emitted malformed TCP options");
    if (gsoSize === 0) assert.ok(l4Len <= this.maxL4(family), `frame of ${l4Len} > MTU`);
    const op = this.#opts;
    const alen = family === 4 ? 4 : 16;
    this.frames.push({
      family,
      src: src.slice(srcOff, srcOff + alen),
      dst: dst.slice(dstOff, dstOff + alen),
      srcPort: v.srcPort,
      dstPort: v.dstPort,
      seq: v.seq,
      ack: v.ack,
      flags: v.flags,
      window: v.window,
      mss: op.mss,
      wscale: op.wscale,
      sackPermitted: op.sackPermitted,
      ts: op.hasTimestamp,
      tsVal: op.tsVal,
      tsEcr: op.tsEcr,
      sack: Array.from(op.sackBlocks.subarray(0, 2 * op.sackCount)),
      payload: this.buf.slice(v.payloadOffset, v.payloadOffset + v.payloadLen),
      gsoSize,
    });
    return true;
  }
  /** Frames sent since the last take(). */
  take(): Seg[] {
    return this.frames.splice(0);
  }
}

const EAGAIN = 11, EPIPE = 32;
let nextFd = 1000;

export class FakeSocket implements HostSocket {
  readonly fd = nextFd++;
  pendingError = 0;
  /** What connectResult() answers (0: connected). */
  result = 0;
  /** Send buffer room (payload bytes) and bytes queued toward the host peer. */
  sndbuf: number;
  queued = 0;
  /** Everything written toward the host peer, in order. */
  written: number[] = [];
  /** Host peer → us: the receive queue, the peek offset, EOF. */
  rq: number[] = [];
  peekOff = 0;
  eof = false;
  /** A pending error returned by the next data call (ECONNRESET...), as errno. */
  error = 0;
  shutWr = false;
  aborted = false;
  closed = false;
  discarded = 0;
  /** send() calls that wrote something. */
  sends = 0;

  constructor(sndbuf = 64 * 1024) {
    this.sndbuf = sndbuf;
  }
  connectResult(): number {
    return this.pendingError || this.result;
  }
  send(buf: Uint8Array, off: number, len: number): number {
    if (this.error) return -this.error;
    if (this.shutWr) return -EPIPE;
    const n = Math.min(len, this.sndbuf - this.queued);
    if (n <= 0) return -EAGAIN;
    for (let i = 0; i < n; i++) this.written.push(buf[off + i]);
    this.queued += n;
    this.sends++;
    return n;
  }
  peek(buf: Uint8Array, off: number, len: number): number {
    if (this.error) return -this.error;
    const avail = this.rq.length - this.peekOff;
    if (avail <= 0) return this.eof ? 0 : -EAGAIN;
    const n = Math.min(avail, len);
    for (let i = 0; i < n; i++) buf[off + i] = this.rq[this.peekOff + i];
    this.peekOff += n;
    return n;
  }
  setPeekOffset(n: number): void {
    this.peekOff = n;
  }
  discard(n: number): number {
    const k = Math.min(n, this.rq.length);
    this.rq.splice(0, k);
    this.peekOff = Math.max(0, this.peekOff - k);
    this.discarded += k;
    return k;
  }
  shutdownWrite(): number {
    this.shutWr = true;
    return 0;
  }
  abort(): void {
    this.aborted = true;
    this.closed = true;
  }
  close(): void {
    this.closed = true;
  }
  outq(): number {
    return this.queued;
  }
  inq(): number {
    return this.rq.length;
  }
  sendBufSize(): number {
    return this.sndbuf;
  }
  localAddress(): { addr: Uint8Array; port: number } {
    return { addr: new Uint8Array([192, 0, 2, 1]), port: 40000 };
  }
  remoteAddress(): { addr: Uint8Array; port: number } {
    return { addr: new Uint8Array([192, 0, 2, 2]), port: 80 };
  }
  /** The host peer sends bytes to us. */
  hostSends(bytes: Uint8Array | number[]): void {
    for (const b of bytes) this.rq.push(b);
  }
  /** The host peer reads n of the queued bytes (frees send buffer room). */
  hostReads(n = this.queued): void {
    this.queued -= Math.min(n, this.queued);
  }
}

export class FakePoller implements PollerLike {
  readonly reg = new Map<
    number,
    { events: number; h: (ev: number, owner: never) => void; owner: unknown }
  >();
  add(
    p: { fd: number },
    events: number,
    h: (ev: number, owner: never) => void,
    owner?: unknown,
  ): void {
    assert.ok(!this.reg.has(p.fd), "fd registered twice");
    this.reg.set(p.fd, { events, h, owner });
  }
  modify(p: { fd: number }, events: number): void {
    const r = this.reg.get(p.fd);
    assert.ok(r, "modify of an unregistered fd");
    r.events = events;
  }
  remove(p: { fd: number }): void {
    assert.ok(this.reg.delete(p.fd), "remove of an unregistered fd");
  }
  events(s: FakeSocket): number {
    return this.reg.get(s.fd)?.events ?? -1;
  }
  fire(s: FakeSocket, ev: number): void {
    const r = this.reg.get(s.fd);
    assert.ok(r, "event for an unregistered fd");
    (r.h as (ev: number, owner: unknown) => void)(ev, r.owner);
  }
}

export const GUEST4 = new Uint8Array([10, 0, 2, 100]);
export const REMOTE4 = new Uint8Array([192, 0, 2, 2]);

export interface SegSpec {
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  payload?: Uint8Array;
  mss?: number;
  wscale?: number;
  sackPermitted?: boolean;
  tsVal?: number;
  tsEcr?: number;
  sack?: number[];
}

/** The test world: one TcpStack with fakes, a manual clock, and a guest endpoint. */
export class World {
  clock = 1_000_000;
  readonly tx: FakeTx;
  readonly poller = new FakePoller();
  readonly wheel: TimerWheel;
  readonly stack: TcpStack;
  readonly sockets: FakeSocket[] = [];
  readonly logs: string[] = [];
  readonly meta = new PacketMeta();
  readonly rx = new Uint8Array(128 * 1024);
  allow = true;
  nextSocket: () => FakeSocket = () => new FakeSocket();
  guestPort = 40001;
  remotePort = 80;

  constructor(opts: { gso?: boolean; mtu?: number; cfg?: Partial<TcpConfig> } = {}) {
    this.tx = new FakeTx(opts.gso ?? false, opts.mtu ?? 1500);
    this.wheel = new TimerWheel(this.clock);
    this.stack = new TcpStack(this.tx as unknown as Tx, this.poller, this.wheel, {
      admit: () => this.allow ? "routed" : "refused",
      quiet: false,
      log: (l) => this.logs.push(l),
      connectTimeoutMs: 10_000,
      mtu: opts.mtu ?? 1500,
      now: () => this.clock,
      connect: () => {
        const s = this.nextSocket();
        this.sockets.push(s);
        return s;
      },
      ...opts.cfg,
    });
  }

  /** Moves the clock and fires due timers. */
  advance(ms: number): void {
    this.clock += ms;
    this.wheel.advance(this.clock);
  }

  /** Feeds one guest segment (IPv4, GUEST4:guestPort → REMOTE4:remotePort), then flush(). */
  send(s: SegSpec, flush = true): void {
    const b = this.rx;
    b.set(GUEST4, 0);
    b.set(REMOTE4, 4);
    const o = 8;
    let p = o + 20;
    if (s.mss !== undefined) {
      b.set([2, 4, s.mss >> 8, s.mss & 255], p);
      p += 4;
    }
    if (s.sackPermitted) {
      b.set([1, 1, 4, 2], p);
      p += 4;
    }
    if (s.tsVal !== undefined) {
      b.set([1, 1, 8, 10], p);
      setU32(b, p + 4, s.tsVal);
      setU32(b, p + 8, s.tsEcr ?? 0);
      p += 12;
    }
    if (s.wscale !== undefined) {
      b.set([1, 3, 3, s.wscale], p);
      p += 4;
    }
    if (s.sack && s.sack.length) {
      b.set([1, 1, 5, 2 + 4 * s.sack.length], p);
      p += 4;
      for (const x of s.sack) {
        setU32(b, p, x >>> 0);
        p += 4;
      }
    }
    const hl = p - o;
    b[o] = this.guestPort >> 8;
    b[o + 1] = this.guestPort & 255;
    b[o + 2] = this.remotePort >> 8;
    b[o + 3] = this.remotePort & 255;
    setU32(b, o + 4, s.seq >>> 0);
    setU32(b, o + 8, (s.ack ?? 0) >>> 0);
    b[o + 12] = (hl >> 2) << 4;
    b[o + 13] = s.flags;
    b[o + 14] = ((s.window ?? 65535) >> 8) & 255;
    b[o + 15] = (s.window ?? 65535) & 255;
    b[o + 16] =
      b[o + 17] =
      b[o + 18] =
      b[o + 19] =
        0;
    const pl = s.payload ?? new Uint8Array(0);
    b.set(pl, p);
    const m = this.meta;
    m.family = 4;
    m.b = b;
    m.srcOff = 0;
    m.dstOff = 4;
    m.proto = 6;
    m.l4Off = o;
    m.l4Len = hl + pl.length;
    m.csumTrusted = true;
    m.gsoSize = 0;
    this.stack.input(m);
    if (flush) this.stack.flush();
  }

  get sock(): FakeSocket {
    return this.sockets[this.sockets.length - 1];
  }
}

function setU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

export function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export { u16, u32 };
