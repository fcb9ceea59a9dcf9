// TCP corner cases of issue 12 with the engine's fakes (tests/support/tcp_fakes.ts): the persist
// timer's backoff ends when the window reopens, an old ACK does not move the send window,
// and an ACK the tap would not take stays owed.

import assert from "node:assert/strict";
import { ACK, bytes, FakeSocket, FIN, RST, SYN, World } from "../support/tcp_fakes.ts";
import { EPOLLIN, EPOLLOUT } from "../../stack/base/names.ts";
import { expectDnsFraming } from "../../stack/tcp/mod.ts";

/** Handshake with timestamps and SACK; returns the guest's and our next sequence numbers. */
function open(w: World, gisn = 5000): { g: number; s: number } {
  w.send({ seq: gisn, flags: SYN, mss: 1460, wscale: 7, sackPermitted: true, tsVal: 1 });
  w.poller.fire(w.sock, EPOLLOUT);
  const [sa] = w.tx.take();
  w.send({ seq: gisn + 1, ack: sa.seq + 1, flags: ACK, tsVal: 1, tsEcr: sa.tsVal });
  return { g: (gisn + 1) >>> 0, s: (sa.seq + 1) >>> 0 };
}

Deno.test("tcp: minutes of zero window, then a lost segment is retransmitted, not reset", () => {
  const w = new World();
  const h = open(w);
  let ts = 10;
  w.send({ seq: h.g, ack: h.s, flags: ACK, window: 0, tsVal: ts++ });
  w.sock.hostSends(bytes(3000, 1));
  w.poller.fire(w.sock, EPOLLIN);
  assert.equal(w.tx.take().length, 0);
  // 15 persist probes over ~10 minutes, each answered: the window stays shut.
  for (let i = 0; i < 15; i++) {
    w.advance(60_001);
    const f = w.tx.take();
    assert.ok(f.length >= 1 && f[0].payload.length === 0, `probe ${i}`);
    w.send({ seq: h.g, ack: h.s, flags: ACK, window: 0, tsVal: ts++ });
  }
  assert.ok(w.stack.stats.windowProbes >= 15);
  // The window opens; the data that follows is lost on the way to the guest.
  w.send({ seq: h.g, ack: h.s, flags: ACK, window: 100, tsVal: ts++ });
  const data = w.tx.take();
  assert.equal(data.reduce((n, s) => n + s.payload.length, 0), 3000);
  // The first timeout retransmits (a probe or the RTO), it does not give up.
  for (let i = 0; i < 3; i++) {
    w.advance(1_500);
    const f = w.tx.take();
    assert.ok(!f.some((s) => s.flags & RST), `reset after ${i + 1} timeouts: ${JSON.stringify(f)}`);
    if (f.some((s) => s.payload.length > 0)) return;
  }
  assert.fail("no retransmission within 4.5 s of the window reopening");
});

Deno.test("tcp: an old ACK (SEG.ACK < SND.UNA) does not update the send window", () => {
  const w = new World();
  const h = open(w);
  w.sock.hostSends(bytes(2000, 1));
  w.poller.fire(w.sock, EPOLLIN);
  const sent = w.tx.take();
  assert.equal(sent.reduce((n, s) => n + s.payload.length, 0), 2000);
  // All acked, window open (SND.WL1 = h.g).
  w.send({ seq: h.g, ack: h.s + 2000, flags: ACK, window: 200, tsVal: 20, payload: bytes(10, 2) });
  // A later segment (SEQ > SND.WL1) carrying an old ACK and a zero window (reordered, or a
  // forgery): RFC 9293 §3.10.7.4 updates the window only when SND.UNA =< SEG.ACK.
  w.send({
    seq: h.g + 10,
    ack: h.s + 1000,
    flags: ACK,
    window: 0,
    tsVal: 21,
    payload: bytes(10, 3),
  });
  w.tx.take();
  const c = w.stack.table.all()[0];
  assert.equal(c.sndWnd, 200 << 7, "window taken from an ACK below SND.UNA");
});

Deno.test("tcp: an ACK the tap refused is still owed", () => {
  const w = new World();
  const h = open(w);
  w.tx.accept = false;
  w.send({ seq: h.g, ack: h.s, flags: ACK, tsVal: 30, payload: bytes(100, 3) });
  const c = w.stack.table.all()[0];
  assert.notEqual(c.lastAckSent, (h.g + 100) >>> 0, "ACK marked sent though the tap refused it");
  assert.ok(c.ackPending, "the ACK is still pending");
  w.tx.accept = true;
  w.send({ seq: h.g + 100, ack: h.s, flags: ACK, tsVal: 31, payload: bytes(100, 4) });
  const f = w.tx.take();
  assert.equal(f.pop()!.ack, (h.g + 200) >>> 0);
});

/** A connection in TIME-WAIT (timestamps on), as tcp_engine2's reuse test makes it. */
function timeWait(w: World): { g: number; s: number } {
  const h = open(w);
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  w.send({ seq: h.g, ack: h.s + 1, flags: FIN | ACK, tsVal: 1000 });
  w.tx.take();
  return h;
}

Deno.test("tcp: TIME-WAIT reopens by timestamp when both used them (RFC 6191)", () => {
  // A lower sequence number but a newer timestamp: a new incarnation.
  let w = new World({ cfg: { timeWaitMs: 60_000 } });
  let h = timeWait(w);
  w.send({ seq: h.g - 50_000, flags: SYN, mss: 1460, tsVal: 2000 });
  assert.equal(w.sockets.length, 2, "a SYN with a newer timestamp did not reopen TIME-WAIT");
  // A higher sequence number but an old timestamp: an old duplicate, not a new connection.
  w = new World({ cfg: { timeWaitMs: 60_000 } });
  h = timeWait(w);
  w.send({ seq: h.g + 50_000, flags: SYN, mss: 1460, tsVal: 500 });
  assert.equal(w.sockets.length, 1, "a SYN with an old timestamp reopened TIME-WAIT");
  // Without a timestamp on the SYN: the sequence number rule.
  w = new World({ cfg: { timeWaitMs: 60_000 } });
  h = timeWait(w);
  w.send({ seq: h.g + 50_000, flags: SYN, mss: 1460 });
  assert.equal(w.sockets.length, 2);
});

Deno.test("tcp: half-open connections are bounded per destination and in all, oldest first", () => {
  const w = new World({ cfg: { maxHalfOpen: 5, maxHalfOpenPerDst: 3, connectTimeoutMs: 60_000 } });
  for (let i = 0; i < 3; i++) {
    w.guestPort = 41000 + i;
    w.send({ seq: 100, flags: SYN, mss: 1460 });
  }
  assert.equal(w.stack.halfOpenCount, 3);
  w.tx.take();
  // A 4th SYN to the same destination at once: the others are young (a burst of the guest's
  // own): it is left unanswered, the guest will send it again.
  w.guestPort = 41003;
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  assert.equal(w.stack.stats.synDropped, 1);
  assert.equal(w.tx.take().length, 0);
  assert.equal(w.sockets.length, 3);
  // A second later they are still connecting to the host (a busy server's backlog makes a real
  // connect slow): none is evicted yet.
  w.advance(1_001);
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  assert.equal(w.stack.stats.synDropped, 2);
  assert.equal(w.stack.stats.halfOpenEvicted, 0);
  // Ten seconds on, it is the oldest that goes (RST to the guest, abort to the host).
  w.advance(9_000);
  w.tx.take();
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  assert.equal(w.stack.stats.halfOpenEvicted, 1);
  assert.ok(w.sockets[0].aborted, "the oldest host connect() was not aborted");
  const rst = w.tx.take().find((s) => s.flags & RST);
  assert.ok(rst !== undefined && rst.dstPort === 41000, "no RST for the evicted connection");
  assert.equal(w.stack.halfOpenCount, 3);
  // Other destinations up to the total bound, then the oldest overall goes.
  w.remotePort = 81;
  for (let i = 0; i < 3; i++) {
    w.guestPort = 42000 + i;
    w.send({ seq: 100, flags: SYN, mss: 1460 });
  }
  assert.equal(w.stack.halfOpenCount, 5);
  assert.equal(w.stack.stats.halfOpenEvicted, 2);
  // A completed handshake leaves the half-open count.
  const s = w.sock;
  w.poller.fire(s, EPOLLOUT);
  const sa = w.tx.take().find((x) => x.flags === (SYN | ACK))!;
  w.send({ seq: 101, ack: sa.seq + 1, flags: ACK });
  assert.equal(w.stack.halfOpenCount, 4);
});

Deno.test("tcp: a host connect that finished inside connect() is answered in the same batch", () => {
  // To an address of this host the handshake runs inside connect(): the SYN-ACK (or the RST
  // for a refusal) goes out without waiting for an epoll round.
  const w = new World();
  w.nextSocket = () => Object.assign(new FakeSocket(), { connectDone: () => 1 });
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  const sa = w.tx.take().find((x) => x.flags === (SYN | ACK));
  assert.ok(sa !== undefined, "no SYN-ACK before an epoll event");
  assert.equal(w.poller.events(w.sock), 0, "registered with the interest of SYN-RECEIVED");
  w.send({ seq: 101, ack: sa.seq + 1, flags: ACK });
  assert.equal(w.stack.stats.established, 1);
  // Refused at once: RST to the guest in the same batch, nothing registered.
  w.guestPort = 40002;
  w.nextSocket = () =>
    Object.assign(new FakeSocket(), { result: 111, /* ECONNREFUSED */ connectDone: () => -1 });
  w.send({ seq: 500, flags: SYN, mss: 1460 });
  assert.ok(w.tx.take().some((x) => (x.flags & RST) !== 0 && x.dstPort === 40002));
  assert.equal(w.poller.events(w.sock), -1);
  assert.equal(w.stack.stats.connectErrors, 1);
});

Deno.test("tcp: a SYN-RECEIVED connection whose ACK was lost gets its SYN-ACK again before eviction", () => {
  // A guest opening 10,000 connections at once overflows its tap queue: some of its ACKs of
  // our SYN-ACKs are lost and come again only after our retransmission (1 s). Evicting such a
  // connection at 1 s reset it in the guest's face (the bench's burst: 54-380 resets).
  const w = new World({ cfg: { maxHalfOpenPerDst: 2, connectTimeoutMs: 60_000 } });
  w.guestPort = 43000;
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  const first = w.sock;
  w.poller.fire(first, EPOLLOUT); // connected: SYN-ACK sent, SYN-RECEIVED; its ACK is lost
  const sa = w.tx.take().find((x) => x.flags === (SYN | ACK))!;
  w.guestPort = 43001;
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  w.poller.fire(w.sock, EPOLLOUT);
  // 1.5 s on: the SYN-ACK went again; more SYNs of the burst find the destination full.
  w.advance(1_500);
  assert.ok(w.tx.take().some((x) => x.flags === (SYN | ACK) && x.dstPort === 43000));
  w.guestPort = 43002;
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  assert.equal(w.stack.stats.halfOpenEvicted, 0, "evicted before the guest could answer again");
  assert.ok(!first.aborted);
  // The guest's answer to the retransmission completes it.
  w.guestPort = 43000;
  w.send({ seq: 101, ack: sa.seq + 1, flags: ACK });
  assert.equal(w.stack.halfOpenCount, 1);
  // One that still does not answer is evicted once that chance has passed (the flood bound).
  w.advance(2_000);
  for (const port of [43003, 43004]) {
    w.guestPort = port;
    w.send({ seq: 100, flags: SYN, mss: 1460 });
  }
  assert.equal(w.stack.stats.halfOpenEvicted, 1);
  assert.ok(w.sockets[1].aborted, "the unanswered SYN-RECEIVED connection was not evicted");
});

Deno.test("tcp: a guest that never completes the handshake is given up after ~7 s", () => {
  const w = new World();
  w.send({ seq: 100, flags: SYN, mss: 1460 });
  w.poller.fire(w.sock, EPOLLOUT); // host connect() done: SYN-ACK sent, SYN-RECEIVED
  for (let i = 0; i < 10 && w.stack.connections > 0; i++) w.advance(1_000);
  assert.equal(w.stack.connections, 0, "still in SYN-RECEIVED after 10 s");
  assert.equal(w.stack.halfOpenCount, 0);
  assert.ok(w.sock.aborted);
});

Deno.test("tcp: the store pool gives back what a burst grew it to", () => {
  const w = new World();
  const pool = w.stack.pool;
  const lent = Array.from({ length: 10 }, () => pool.take()!);
  assert.equal(pool.made, 10);
  for (const b of lent.slice(0, 8)) pool.give(b);
  w.advance(10_001);
  assert.equal(pool.made, 2 + 4, "two lent and four free are kept, the rest released");
  assert.equal(pool.inUse, 2);
  pool.give(lent[8]);
  pool.give(lent[9]);
  w.advance(10_001);
  assert.equal(pool.made, 4);
  assert.ok(pool.take() !== null, "still lends after a trim");
});

Deno.test("tcp: DNS over TCP: queries pass byte by byte, anything else is reset", () => {
  const query = [0, 17, 0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x41, 0, 1];
  for (
    const [what, data, ok] of [
      ["two queries, one byte per segment", [...query, ...query], true],
      ["HTTP", [...new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n")], false],
      ["a response (QR set)", [0, 12, 0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0], false],
      ["shorter than a header", [0, 4, 1, 2, 3, 4], false],
    ] as [string, number[], boolean][]
  ) {
    const w = new World({ cfg: { tag: (c) => expectDnsFraming(c) } });
    const h = open(w);
    let seq = h.g;
    for (const x of data) {
      if (w.stack.connections === 0) break;
      w.send({ seq: seq++, ack: h.s, flags: ACK, tsVal: 40, payload: new Uint8Array([x]) });
    }
    const reset = w.tx.take().some((s) => s.flags & RST);
    assert.equal(!reset, ok, what);
    if (ok) assert.deepEqual(w.sock.written, data, what);
    else assert.equal(w.stack.stats.notDns, 1, what);
  }
});
