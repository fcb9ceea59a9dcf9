// The TCP engine driven by hand-built guest segments, with fakes of our own modules (Tx,
// host socket, poller; see tests/support/tcp_fakes.ts): handshake and options, connect failures,
// data both ways with backpressure, out-of-order reassembly with SACK, retransmission,
// zero-window probing, every close sequence and resets.

import assert from "node:assert/strict";
import {
  ACK,
  bytes,
  FakeSocket,
  FIN,
  PSH,
  RST,
  type Seg,
  SYN,
  World,
} from "../support/tcp_fakes.ts";
import { STATE_NAMES } from "../../stack/tcp/conn.ts";
import { EPOLLERR, EPOLLIN, EPOLLOUT } from "../../stack/base/names.ts";

const GISN = 1_000_000;

function state(w: World): string {
  const all = w.stack.table.all();
  return all.length ? STATE_NAMES[all[0].state] : "none";
}

interface Hs {
  /** Guest's next sequence number; our next sequence number (what the guest acks). */
  gseq: number;
  sseq: number;
  synAck: Seg;
}

/** SYN with all options, connect succeeds, SYN-ACK, final ACK. */
function handshake(w: World, opts: { ts?: boolean; ws?: number; sack?: boolean } = {}): Hs {
  const ts = opts.ts ?? true;
  w.send({
    seq: GISN,
    flags: SYN,
    mss: 1460,
    wscale: opts.ws === -1 ? undefined : opts.ws ?? 7,
    sackPermitted: opts.sack ?? true,
    tsVal: ts ? 1 : undefined,
  });
  assert.equal(w.tx.take().length, 0, "nothing goes to the guest before the host connect");
  w.poller.fire(w.sock, EPOLLOUT);
  const [synAck] = w.tx.take();
  assert.equal(synAck.flags, SYN | ACK);
  assert.equal(synAck.ack, GISN + 1);
  w.send({
    seq: GISN + 1,
    ack: synAck.seq + 1,
    flags: ACK,
    tsVal: ts ? 1 : undefined,
    tsEcr: synAck.tsVal,
  });
  assert.equal(state(w), "ESTABLISHED");
  return { gseq: GISN + 1, sseq: (synAck.seq + 1) >>> 0, synAck };
}

Deno.test("tcp: SYN-ACK waits for the host connect and answers the guest's options", () => {
  const w = new World();
  w.send({ seq: GISN, flags: SYN, mss: 1400, wscale: 6, sackPermitted: true, tsVal: 77 });
  assert.equal(w.sockets.length, 1);
  // SYN retransmissions while connecting: no second socket, no answer.
  w.send({ seq: GISN, flags: SYN, mss: 1400, wscale: 6, sackPermitted: true, tsVal: 78 });
  assert.equal(w.sockets.length, 1);
  assert.equal(w.tx.take().length, 0);
  w.poller.fire(w.sock, EPOLLOUT);
  const [sa] = w.tx.take();
  assert.equal(sa.flags, SYN | ACK);
  assert.equal(sa.ack, GISN + 1);
  assert.equal(sa.mss, 1460); // ours: MTU 1500 - 40
  assert.equal(sa.wscale, 7);
  assert.ok(sa.sackPermitted);
  assert.ok(sa.ts);
  assert.equal(sa.tsEcr, 77);
  assert.match(
    w.logs[0],
    /^\[\+\] tcp:\/\/10\.0\.2\.100:40001\/192\.0\.2\.1:40000-192\.0\.2\.2:80 Routing conn new$/,
  );
  // SYN-ACK lost: the guest's SYN retransmission gets it again.
  w.send({ seq: GISN, flags: SYN, mss: 1400, wscale: 6, sackPermitted: true, tsVal: 79 });
  assert.equal(w.tx.take()[0].flags, SYN | ACK);
});

Deno.test("tcp: no options offered → none used (no scaling, no TS), default MSS", () => {
  const w = new World();
  w.send({ seq: GISN, flags: SYN });
  w.poller.fire(w.sock, EPOLLOUT);
  const [sa] = w.tx.take();
  assert.equal(sa.wscale, -1);
  assert.ok(!sa.ts && !sa.sackPermitted);
  w.send({ seq: GISN + 1, ack: sa.seq + 1, flags: ACK });
  w.sock.hostSends(bytes(2000));
  w.poller.fire(w.sock, EPOLLIN);
  const f = w.tx.take();
  assert.equal(f[0].payload.length, 536, "RFC 9293 default MSS without the option");
});

Deno.test("tcp: refused connect → RST|ACK to the guest, nothing left", () => {
  const w = new World();
  w.nextSocket = () => {
    const s = new FakeSocket();
    s.result = 111; // ECONNREFUSED
    return s;
  };
  w.send({ seq: GISN, flags: SYN });
  w.poller.fire(w.sock, EPOLLOUT | EPOLLERR);
  const [r] = w.tx.take();
  assert.equal(r.flags, RST | ACK);
  assert.equal(r.ack, GISN + 1);
  assert.equal(w.stack.connections, 0);
  assert.equal(w.poller.reg.size, 0);
  assert.ok(w.sock.closed);
  assert.match(w.logs.join("\n"), /Routing conn error: ECONNREFUSED/);
});

Deno.test("tcp: immediate connect error and policy refusal → RST; no socket for a refused policy", () => {
  const w = new World();
  w.allow = false;
  w.send({ seq: GISN, flags: SYN });
  assert.equal(w.sockets.length, 0);
  assert.equal(w.tx.take()[0].flags, RST | ACK);
  w.allow = true;
  w.nextSocket = () => {
    const s = new FakeSocket();
    s.pendingError = 101; // ENETUNREACH at connect()
    return s;
  };
  w.send({ seq: GISN, flags: SYN });
  assert.equal(w.tx.take()[0].flags, RST | ACK);
  assert.equal(w.stack.connections, 0);
});

Deno.test("tcp: connect timeout → RST", () => {
  const w = new World({ cfg: { connectTimeoutMs: 3000 } });
  w.send({ seq: GISN, flags: SYN });
  w.advance(2999);
  assert.equal(w.tx.take().length, 0);
  w.advance(2);
  assert.equal(w.tx.take()[0].flags, RST | ACK);
  assert.equal(w.stack.connections, 0);
  assert.equal(w.stack.stats.connectTimeouts, 1);
});

Deno.test("tcp: guest data goes to the host; ACK and window follow the host socket", () => {
  const w = new World();
  const h = handshake(w);
  const data = bytes(3000, 7);
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK | PSH, payload: data, tsVal: 200, tsEcr: 1 });
  assert.deepEqual(w.sock.written, Array.from(data));
  const [a] = w.tx.take();
  assert.equal(a.ack, h.gseq + 3000);
  assert.equal(a.tsEcr, 200);
  // window = (64 KiB - 3000 queued) >> 7
  assert.equal(a.window, Math.floor((65536 - 3000) / 128));
  assert.equal(w.stack.snapshot().connections, 1);
});

Deno.test("tcp: a slow host reader closes the window; the store holds a short write; EPOLLOUT reopens", () => {
  const w = new World();
  w.nextSocket = () => new FakeSocket(4000);
  const h = handshake(w, { ws: -1 });
  // Window advertised is the host's free space: 4000.
  const a0 = h.synAck;
  assert.equal(a0.window, 4000);
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, payload: bytes(3000, 1), tsVal: 2 }, false);
  w.send({ seq: h.gseq + 3000, ack: h.sseq, flags: ACK, payload: bytes(1000, 2), tsVal: 3 });
  assert.equal(w.sock.written.length, 4000);
  const acks = w.tx.take();
  const last = acks[acks.length - 1];
  assert.equal(last.ack, h.gseq + 4000);
  assert.equal(last.window, 0, "host full: zero window");
  assert.ok(w.poller.events(w.sock) & EPOLLOUT, "watching for room");
  // The guest probes / sends beyond: nothing is accepted beyond the advertised edge.
  w.send({ seq: h.gseq + 4000, ack: h.sseq, flags: ACK, payload: bytes(500, 3), tsVal: 4 });
  assert.equal(w.sock.written.length, 4000);
  assert.equal(w.tx.take().pop()!.ack, h.gseq + 4000);
  // The host reader drains: window update.
  w.sock.hostReads();
  w.poller.fire(w.sock, EPOLLOUT);
  const up = w.tx.take();
  assert.equal(up.length, 1);
  assert.equal(up[0].window, 4000);
  assert.equal(w.poller.events(w.sock) & EPOLLOUT, 0);
});

Deno.test("tcp: a short host write keeps the rest in the store and writes it on EPOLLOUT", () => {
  const w = new World();
  let s!: FakeSocket;
  w.nextSocket = () => (s = new FakeSocket(8000));
  const h = handshake(w, { ws: -1 });
  s.queued = 6000; // someone else's bytes: only 2000 fit now, but the window said 8000
  const data = bytes(5000, 9);
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, payload: data, tsVal: 2 });
  assert.equal(s.written.length, 2000);
  const [a] = w.tx.take();
  assert.equal(a.ack, h.gseq + 5000, "held bytes are acknowledged (bounded store)");
  assert.equal(w.stack.pool.inUse, 1);
  s.hostReads();
  w.poller.fire(s, EPOLLOUT);
  assert.deepEqual(s.written, Array.from(data));
  assert.equal(w.stack.pool.inUse, 0, "the store buffer goes back to the pool");
});

Deno.test("tcp: out-of-order segments are held, SACKed and reassembled in order", () => {
  const w = new World();
  const h = handshake(w);
  const data = bytes(4000, 5);
  const seg = (i: number) => data.subarray(i * 1000, (i + 1) * 1000);
  w.send({ seq: h.gseq + 2000, ack: h.sseq, flags: ACK, payload: seg(2), tsVal: 5 });
  let [d] = w.tx.take();
  assert.equal(d.ack, h.gseq, "dup ACK");
  assert.deepEqual(d.sack, [h.gseq + 2000, h.gseq + 3000]);
  w.send({ seq: h.gseq + 3000, ack: h.sseq, flags: ACK, payload: seg(3), tsVal: 6 });
  [d] = w.tx.take();
  assert.deepEqual(d.sack, [h.gseq + 2000, h.gseq + 4000]);
  assert.equal(w.sock.written.length, 0);
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, payload: seg(0), tsVal: 7 });
  [d] = w.tx.take();
  assert.equal(d.ack, h.gseq + 1000);
  assert.deepEqual(d.sack, [h.gseq + 2000, h.gseq + 4000]);
  w.send({ seq: h.gseq + 1000, ack: h.sseq, flags: ACK, payload: seg(1), tsVal: 8 });
  [d] = w.tx.take();
  assert.equal(d.ack, h.gseq + 4000);
  assert.deepEqual(d.sack, []);
  assert.deepEqual(w.sock.written, Array.from(data));
  assert.equal(w.stack.pool.inUse, 0);
  // A retransmission of old data: dup ACK, nothing written twice.
  w.send({ seq: h.gseq + 1000, ack: h.sseq, flags: ACK, payload: seg(1), tsVal: 9 });
  assert.equal(w.sock.written.length, 4000);
  assert.equal(w.tx.take()[0].ack, h.gseq + 4000);
});

Deno.test("tcp: host data to the guest in MSS segments; ACKs discard it from the host socket", () => {
  const w = new World();
  const h = handshake(w);
  const data = bytes(5000, 3);
  w.sock.hostSends(data);
  w.poller.fire(w.sock, EPOLLIN);
  const f = w.tx.take();
  assert.deepEqual(f.map((s) => s.payload.length), [1448, 1448, 1448, 656]);
  assert.equal(f[0].seq, h.sseq);
  assert.ok(f[3].flags & PSH);
  const got = new Uint8Array(5000);
  for (const s of f) got.set(s.payload, s.seq - h.sseq);
  assert.deepEqual(got, data);
  assert.equal(w.sock.rq.length, 5000, "unacknowledged data stays in the host socket");
  w.send({ seq: h.gseq, ack: h.sseq + 2920, flags: ACK, tsVal: 300, tsEcr: f[1].tsVal });
  assert.equal(w.sock.rq.length, 2080);
  w.send({ seq: h.gseq, ack: h.sseq + 5000, flags: ACK, tsVal: 301, tsEcr: f[3].tsVal });
  assert.equal(w.sock.rq.length, 0);
  assert.ok(!w.stack.table.all()[0].rtx.armed, "nothing in flight: no timer");
});

Deno.test("tcp: GSO super-frames of whole MSS segments with gsoSize = the guest's MSS", () => {
  const w = new World({ gso: true });
  const h = handshake(w);
  const data = bytes(1_000_000, 4);
  w.sock.hostSends(data);
  w.poller.fire(w.sock, EPOLLIN);
  const got = new Uint8Array(data.length);
  let biggest = 0;
  for (let round = 0; round < 100 && w.sock.rq.length > 0; round++) {
    const f = w.tx.take();
    let top = h.sseq;
    for (const s of f) {
      got.set(s.payload, s.seq - h.sseq);
      top = s.seq + s.payload.length;
      if (s.payload.length > 1448) {
        assert.equal(s.gsoSize, 1448);
        assert.ok(s.payload.length <= 65_535 - 80);
      } else assert.equal(s.gsoSize, 0);
      biggest = Math.max(biggest, s.payload.length);
    }
    w.send({ seq: h.gseq, ack: top, flags: ACK, window: 65535, tsVal: 10 + round });
  }
  assert.equal(w.sock.rq.length, 0);
  assert.deepEqual(got, data);
  assert.ok(biggest >= 44 * 1448, `largest frame ${biggest}`);
});

Deno.test("tcp: RTO retransmits from the host socket, backs off, and gives up with RST", () => {
  const w = new World();
  const h = handshake(w);
  w.sock.hostSends(bytes(1000, 8));
  w.poller.fire(w.sock, EPOLLIN);
  const [d] = w.tx.take();
  w.advance(1001); // initial RTO 1 s (no RTT sample yet beyond the handshake)
  const [r] = w.tx.take();
  assert.equal(r.seq, d.seq);
  assert.deepEqual(r.payload, d.payload);
  w.advance(1000);
  assert.equal(w.tx.take().length, 0, "backed off");
  w.advance(1001);
  assert.equal(w.tx.take().length, 1);
  for (let i = 0; i < 20; i++) w.advance(60_000);
  const last = w.tx.take().pop()!;
  assert.equal(last.flags, RST | ACK);
  assert.equal(w.stack.connections, 0);
  assert.ok(w.sock.aborted, "the host side is reset too");
  void h;
});

Deno.test("tcp: three duplicate ACKs trigger a fast retransmit of the first segment", () => {
  const w = new World();
  const h = handshake(w);
  w.sock.hostSends(bytes(10 * 1460, 2));
  w.poller.fire(w.sock, EPOLLIN);
  const f = w.tx.take();
  assert.equal(f.length, 10);
  for (let i = 0; i < 3; i++) {
    w.send({
      seq: h.gseq,
      ack: h.sseq,
      flags: ACK,
      tsVal: 10 + i,
      sack: [h.sseq + 1460, h.sseq + 1460 * (2 + i)],
    });
  }
  const r = w.tx.take();
  assert.ok(r.length >= 1);
  assert.equal(r[0].seq, h.sseq);
  assert.deepEqual(r[0].payload, f[0].payload);
  assert.equal(w.stack.stats.fastRetransmits, 1);
});

Deno.test("tcp: zero window: no data, persist probes, data resumes on a window update", () => {
  const w = new World();
  const h = handshake(w);
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, window: 0, tsVal: 3 });
  w.sock.hostSends(bytes(3000, 1));
  w.poller.fire(w.sock, EPOLLIN);
  assert.equal(w.tx.take().length, 0);
  assert.equal(w.poller.events(w.sock) & EPOLLIN, 0, "host data left in the host socket");
  w.advance(1001);
  const [p] = w.tx.take();
  assert.equal(p.payload.length, 0);
  assert.equal(p.seq, (h.sseq - 1) >>> 0, "a probe the guest must answer");
  w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, window: 100, tsVal: 4 });
  const f = w.tx.take();
  assert.equal(f.reduce((n, s) => n + s.payload.length, 0), 3000, "window 100 << 7 covers it all");
});

Deno.test("tcp: guest FIN → host half-close; host data still flows; host EOF → LAST-ACK → gone", () => {
  const w = new World();
  const h = handshake(w);
  w.send({ seq: h.gseq, ack: h.sseq, flags: FIN | ACK, payload: bytes(10, 1), tsVal: 5 });
  assert.ok(w.sock.shutWr, "FIN carried over as shutdown(SHUT_WR)");
  assert.equal(state(w), "CLOSE-WAIT");
  assert.equal(w.tx.take().pop()!.ack, h.gseq + 11);
  w.sock.hostSends(bytes(100, 2));
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  const f = w.tx.take();
  assert.equal(f[0].payload.length, 100);
  assert.ok(f[f.length - 1].flags & FIN);
  assert.equal(state(w), "LAST-ACK");
  w.send({ seq: h.gseq + 11, ack: h.sseq + 101, flags: ACK, tsVal: 6 });
  assert.equal(w.stack.connections, 0);
  assert.ok(w.sock.closed && !w.sock.aborted);
  assert.equal(w.poller.reg.size, 0);
  assert.match(w.logs.join("\n"), /Routing conn done: l=10 r=100/);
});

Deno.test("tcp: host EOF first → FIN-WAIT-1/2, guest keeps sending, guest FIN → TIME-WAIT → gone", () => {
  const w = new World({ cfg: { timeWaitMs: 2000 } });
  const h = handshake(w);
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  const [fin] = w.tx.take();
  assert.equal(fin.flags, FIN | ACK);
  assert.equal(state(w), "FIN-WAIT-1");
  w.send({ seq: h.gseq, ack: h.sseq + 1, flags: ACK, tsVal: 5 });
  assert.equal(state(w), "FIN-WAIT-2");
  w.send({ seq: h.gseq, ack: h.sseq + 1, flags: ACK, payload: bytes(50, 3), tsVal: 6 });
  assert.equal(w.sock.written.length, 50, "half-closed the other way: guest data still goes");
  w.send({ seq: h.gseq + 50, ack: h.sseq + 1, flags: FIN | ACK, tsVal: 7 });
  assert.equal(state(w), "TIME-WAIT");
  assert.ok(w.sock.closed, "the host socket is closed at once");
  assert.equal(w.stack.timeWaitCount, 1);
  // A retransmitted FIN is ACKed again.
  w.tx.take();
  w.send({ seq: h.gseq + 50, ack: h.sseq + 1, flags: FIN | ACK, tsVal: 8 });
  assert.equal(w.tx.take()[0].ack, h.gseq + 51);
  w.advance(2001);
  assert.equal(w.stack.connections, 0);
  assert.equal(w.stack.timeWaitCount, 0);
});

Deno.test("tcp: simultaneous close goes through CLOSING to TIME-WAIT", () => {
  const w = new World({ cfg: { timeWaitMs: 1000 } });
  const h = handshake(w);
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  w.tx.take();
  // The guest's FIN crosses ours (it does not ACK our FIN yet).
  w.send({ seq: h.gseq, ack: h.sseq, flags: FIN | ACK, tsVal: 5 });
  assert.equal(state(w), "CLOSING");
  w.send({ seq: h.gseq + 1, ack: h.sseq + 1, flags: ACK, tsVal: 6 });
  assert.equal(state(w), "TIME-WAIT");
  w.advance(1001);
  assert.equal(w.stack.connections, 0);
});

Deno.test("tcp: RST from the guest aborts the host socket; a RST out of sequence gets a challenge ACK", () => {
  const w = new World();
  const h = handshake(w);
  w.send({ seq: h.gseq + 5, flags: RST, tsVal: 5 });
  assert.equal(w.stack.connections, 1);
  assert.equal(w.tx.take()[0].flags, ACK);
  w.send({ seq: h.gseq, flags: RST });
  assert.equal(w.stack.connections, 0);
  assert.ok(w.sock.aborted);
});

Deno.test("tcp: a host socket error resets the guest", () => {
  const w = new World();
  handshake(w);
  w.sock.result = 104; // ECONNRESET via SO_ERROR
  w.poller.fire(w.sock, EPOLLERR | EPOLLIN);
  assert.equal(w.tx.take()[0].flags, RST | ACK);
  assert.equal(w.stack.connections, 0);
});

Deno.test("tcp: segments for no connection get RFC 9293 resets", () => {
  const w = new World();
  w.send({ seq: 5, ack: 77, flags: ACK });
  let [r] = w.tx.take();
  assert.equal(r.flags, RST);
  assert.equal(r.seq, 77);
  w.send({ seq: 5, flags: FIN, payload: bytes(3) });
  [r] = w.tx.take();
  assert.equal(r.flags, RST | ACK);
  assert.equal(r.ack, 9);
  w.send({ seq: 5, flags: RST });
  assert.equal(w.tx.take().length, 0, "never a RST for a RST");
});

Deno.test("tcp: keepalive probes an idle guest and resets after the probe count", () => {
  const w = new World({ cfg: { keepIdleMs: 10_000, keepIntervalMs: 1000, keepCount: 3 } });
  handshake(w);
  w.advance(10_001);
  const [p] = w.tx.take();
  assert.equal(p.flags, ACK);
  w.advance(1001);
  w.advance(1001);
  w.advance(1001);
  const last = w.tx.take().pop()!;
  assert.equal(last.flags, RST | ACK);
  assert.equal(w.stack.connections, 0);
  assert.equal(w.stack.stats.keepaliveDrops, 1);
});

Deno.test("tcp: an answered keepalive keeps the connection", () => {
  const w = new World({ cfg: { keepIdleMs: 10_000, keepIntervalMs: 1000, keepCount: 2 } });
  const h = handshake(w);
  for (let i = 0; i < 5; i++) {
    w.advance(10_001);
    assert.equal(w.tx.take().length, 1);
    w.send({ seq: h.gseq, ack: h.sseq, flags: ACK, tsVal: 10 + i });
  }
  assert.equal(w.stack.connections, 1);
});
