// More of the TCP engine with fakes of our own modules (see tests/support/tcp_fakes.ts): the active
// open used by port forwards, TIME-WAIT reuse and table bounds, gathering of small guest
// segments into one host write, sequence wrap-around, PAWS, tail loss probes, SACK-aware
// go-back-N, and the RecvStore and SACK scoreboard on their own.

import assert from "node:assert/strict";
import {
  ACK,
  bytes,
  FakeSocket,
  FIN,
  GUEST4,
  REMOTE4,
  RST,
  SYN,
  World,
} from "../support/tcp_fakes.ts";
import { Conn, STATE_NAMES } from "../../stack/tcp/conn.ts";
import { RecvStore, StorePool } from "../../stack/tcp/store.ts";
import { updateSacked } from "../../stack/tcp/retransmit.ts";
import { asSeq } from "../../stack/tcp/seq.ts";
import { EPOLLIN, EPOLLOUT } from "../../stack/base/names.ts";

function state(w: World): string {
  const all = w.stack.table.all();
  return all.length ? STATE_NAMES[all[0].state] : "none";
}

/** Handshake with timestamps and SACK; returns the guest's and our next sequence numbers. */
function open(w: World, gisn = 5000): { g: number; s: number } {
  w.send({ seq: gisn, flags: SYN, mss: 1460, wscale: 7, sackPermitted: true, tsVal: 1 });
  w.poller.fire(w.sock, EPOLLOUT);
  const [sa] = w.tx.take();
  w.send({ seq: gisn + 1, ack: sa.seq + 1, flags: ACK, tsVal: 1, tsEcr: sa.tsVal });
  return { g: (gisn + 1) >>> 0, s: (sa.seq + 1) >>> 0 };
}

Deno.test("tcp: active open to the guest (port forward): SYN, SYN-ACK, data both ways", () => {
  const w = new World();
  const s = new FakeSocket();
  const c = w.stack.connectToGuest(s, 4, REMOTE4, 8080, GUEST4, w.guestPort);
  assert.ok(c);
  const [syn] = w.tx.take();
  assert.equal(syn.flags, SYN);
  assert.equal(syn.srcPort, 8080);
  assert.equal(syn.dstPort, w.guestPort);
  assert.ok(syn.sackPermitted && syn.ts && syn.wscale === 7 && syn.mss === 1460);
  assert.equal(state(w), "SYN-SENT");
  w.remotePort = 8080;
  w.send({
    seq: 777,
    ack: syn.seq + 1,
    flags: SYN | ACK,
    mss: 1400,
    wscale: 5,
    sackPermitted: true,
    tsVal: 10,
    tsEcr: syn.tsVal,
  });
  assert.equal(state(w), "ESTABLISHED");
  assert.equal(w.tx.take()[0].ack, 778);
  s.hostSends(bytes(3000));
  w.poller.fire(s, EPOLLIN);
  const f = w.tx.take();
  assert.deepEqual(f.map((x) => x.payload.length), [1388, 1388, 224]); // 1400 - 12 (TS)
  w.send({ seq: 778, ack: syn.seq + 1, flags: ACK, payload: bytes(100, 9), tsVal: 11 });
  assert.equal(s.written.length, 100);
});

Deno.test("tcp: a RST answers our SYN to the guest: the host socket is reset", () => {
  const w = new World();
  const s = new FakeSocket();
  w.stack.connectToGuest(s, 4, REMOTE4, 8080, GUEST4, w.guestPort);
  const [syn] = w.tx.take();
  w.remotePort = 8080;
  w.send({ seq: 0, ack: syn.seq + 1, flags: RST | ACK });
  assert.equal(w.stack.connections, 0);
  assert.ok(s.aborted);
});

Deno.test("tcp: a new SYN reuses a 4-tuple in TIME-WAIT; a full table evicts the oldest TIME-WAIT", () => {
  const w = new World({ cfg: { maxConns: 1, timeWaitMs: 60_000 } });
  const h = open(w);
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  w.send({ seq: h.g, ack: h.s + 1, flags: FIN | ACK, tsVal: 2 });
  assert.equal(state(w), "TIME-WAIT");
  // Same 4-tuple, higher sequence number: a new connection replaces the old one.
  w.tx.take();
  w.send({ seq: h.g + 100_000, flags: SYN, mss: 1460, tsVal: 3 });
  assert.equal(w.sockets.length, 2);
  assert.equal(state(w), "CONNECTING");
  // Another port while the table (size 1) is full of a live connection: refused with RST.
  w.guestPort = 40002;
  w.send({ seq: 1, flags: SYN });
  assert.equal(w.tx.take().pop()!.flags, RST | ACK);
  assert.equal(w.stack.stats.tableFull, 1);
});

Deno.test("tcp: a full table makes room by dropping the oldest TIME-WAIT entry", () => {
  const w = new World({ cfg: { maxConns: 1, timeWaitMs: 60_000 } });
  const h = open(w);
  w.sock.eof = true;
  w.poller.fire(w.sock, EPOLLIN);
  w.send({ seq: h.g, ack: h.s + 1, flags: FIN | ACK, tsVal: 2 });
  assert.equal(w.stack.timeWaitCount, 1);
  w.guestPort = 40002;
  w.send({ seq: 1, flags: SYN });
  assert.equal(w.stack.stats.timeWaitEvicted, 1);
  assert.equal(w.stack.timeWaitCount, 0);
  assert.equal(w.stack.connections, 1);
});

Deno.test("tcp: small guest segments of one batch become one host write", () => {
  const w = new World();
  const h = open(w);
  const data = bytes(10 * 1448, 4);
  for (let i = 0; i < 10; i++) {
    w.send({
      seq: h.g + i * 1448,
      ack: h.s,
      flags: ACK,
      payload: data.subarray(i * 1448, (i + 1) * 1448),
      tsVal: 2,
    }, false);
  }
  assert.equal(w.sock.sends, 0, "gathered, not written yet");
  w.stack.flush();
  assert.equal(w.sock.sends, 1);
  assert.deepEqual(w.sock.written, Array.from(data));
  const acks = w.tx.take();
  assert.equal(acks.length, 1, "one ACK for the batch");
  assert.equal(acks[0].ack, h.g + data.length);
  assert.equal(w.stack.pool.inUse, 0);
});

Deno.test("tcp: sequence numbers wrap around 2^32 in both directions", () => {
  const w = new World();
  w.stack.newIss = () => asSeq(0xffff_f000);
  const h = open(w, 0xffff_fc00);
  const up = bytes(8000, 6);
  for (let o = 0; o < up.length; o += 1000) {
    w.send({
      seq: (h.g + o) >>> 0,
      ack: h.s,
      flags: ACK,
      payload: up.subarray(o, o + 1000),
      tsVal: 2,
    });
  }
  assert.deepEqual(w.sock.written, Array.from(up));
  assert.equal(w.tx.take().pop()!.ack, (h.g + 8000) >>> 0);
  const down = bytes(10_000, 7);
  w.sock.hostSends(down);
  w.poller.fire(w.sock, EPOLLIN);
  const got = new Uint8Array(10_000);
  for (const f of w.tx.take()) got.set(f.payload, (f.seq - h.s) >>> 0);
  assert.deepEqual(got, down);
  w.send({ seq: (h.g + 8000) >>> 0, ack: (h.s + 10_000) >>> 0, flags: ACK, tsVal: 3 });
  assert.equal(w.sock.rq.length, 0, "all acknowledged across the wrap");
});

Deno.test("tcp: PAWS drops a segment with an old timestamp (and ACKs)", () => {
  const w = new World();
  const h = open(w);
  w.send({ seq: h.g, ack: h.s, flags: ACK, payload: bytes(10), tsVal: 1000 });
  assert.equal(w.sock.written.length, 10);
  w.tx.take();
  w.send({ seq: h.g + 10, ack: h.s, flags: ACK, payload: bytes(10), tsVal: 999 });
  assert.equal(w.sock.written.length, 10);
  assert.equal(w.stack.stats.pawsDrops, 1);
  assert.equal(w.tx.take()[0].ack, h.g + 10);
});

Deno.test("tcp: a lost tail is probed after ~2 RTT, long before the RTO", () => {
  const w = new World();
  const h = open(w);
  // One round trip to get an RTT sample.
  w.sock.hostSends(bytes(1000, 1));
  w.poller.fire(w.sock, EPOLLIN);
  const [d] = w.tx.take();
  w.advance(2);
  w.send({ seq: h.g, ack: h.s + 1000, flags: ACK, tsVal: 2, tsEcr: d.tsVal });
  // Now a tail that the guest never acknowledges.
  w.sock.hostSends(bytes(4000, 2));
  w.poller.fire(w.sock, EPOLLIN);
  const sent = w.tx.take();
  const last = sent[sent.length - 1];
  w.advance(60);
  const [p] = w.tx.take();
  assert.ok(p, "a probe before the 200 ms RTO");
  assert.equal(p.seq + p.payload.length, last.seq + last.payload.length, "the last segment again");
  assert.equal(w.stack.stats.probes, 1);
  // The guest SACKs it: the hole below goes at once.
  w.send({
    seq: h.g,
    ack: h.s + 1000,
    flags: ACK,
    tsVal: 3,
    sack: [p.seq, p.seq + p.payload.length],
  });
  const r = w.tx.take();
  assert.ok(r.length >= 1);
  assert.equal(r[0].seq, h.s + 1000);
});

Deno.test("tcp: after an RTO, data the guest SACKs is not sent again", () => {
  const w = new World();
  const h = open(w);
  w.sock.hostSends(bytes(5 * 1448, 3));
  w.poller.fire(w.sock, EPOLLIN);
  assert.equal(w.tx.take().length, 5);
  w.advance(1001); // RTO (no RTT sample: 1 s): go back to sndUna with cwnd = 1 segment
  const [r1] = w.tx.take();
  assert.equal(r1.seq, h.s);
  // The guest had segments 3..4 all along (SACK) and now gets segment 0.
  w.send({
    seq: h.g,
    ack: h.s + 1448,
    flags: ACK,
    tsVal: 5,
    sack: [h.s + 3 * 1448, h.s + 5 * 1448],
  });
  const r = w.tx.take();
  const seqs = r.filter((f) => f.payload.length > 0).map((f) => (f.seq - h.s) / 1448);
  assert.ok(seqs.includes(1) && seqs.includes(2), `resent ${seqs}`);
  assert.ok(!seqs.includes(3) && !seqs.includes(4), `SACKed data resent: ${seqs}`);
});

Deno.test("store: ring wrap, ranges merge, prefix and SACK blocks, pool bound", () => {
  const pool = new StorePool(1024, 1);
  const s = new RecvStore(pool);
  const src = bytes(4096, 8);
  assert.equal(s.put(src, 0, 100, 200), 100); // [200, 300)
  assert.equal(s.put(src, 100, 100, 500), 100); // [500, 600)
  assert.equal(s.ranges, 2);
  assert.equal(s.prefix, 0);
  const out = new Uint32Array(8);
  assert.equal(s.sackBlocks(1000, 1000, out, 4), 2);
  assert.deepEqual(Array.from(out.subarray(0, 4)), [1500, 1600, 1200, 1300]); // most recent first
  assert.equal(s.put(src, 0, 200, 0), 200); // [0, 200) touches [200, 300): one range
  assert.equal(s.prefix, 300);
  assert.equal(s.ranges, 2);
  // A second store cannot get a buffer from the pool of one.
  const s2 = new RecvStore(pool);
  assert.equal(s2.put(src, 0, 10, 0), 0);
  assert.equal(pool.exhausted, 1);
  // Beyond the capacity is clipped.
  assert.equal(s.put(src, 0, 1000, 900), 124);
  s.advance(300);
  assert.equal(s.prefix, 0);
  assert.equal(s.put(src, 0, 300, 0), 300); // wraps around the ring end
  let k = s.chunk();
  const got: number[] = [];
  while (k > 0) {
    for (let i = 0; i < k; i++) got.push(s.buffer[s.chunkOff + i]);
    s.advance(k);
    k = s.chunk();
  }
  // (The new bytes overwrote the held [200, 300) they cover; [600, 724) is still apart.)
  assert.deepEqual(got, Array.from(src.subarray(0, 300)));
  assert.equal(s.ranges, 1);
  s.clear();
  assert.equal(pool.inUse, 0);
});

Deno.test("sack scoreboard: merges, sorts, ignores blocks below sndUna or beyond sndMax", () => {
  const w = new World();
  const c = new Conn(4, GUEST4, 1, REMOTE4, 2, w.stack.pool, () => {}, () => {});
  c.sndUna = asSeq(1000);
  c.sndMax = asSeq(10_000);
  const b = new Uint32Array([3000, 4000, 1500, 2000, 500, 900, 9000, 11_000]);
  assert.ok(updateSacked(c, b, 4));
  assert.deepEqual(Array.from(c.sacked.subarray(0, 2 * c.nSacked)), [1500, 2000, 3000, 4000]);
  assert.ok(updateSacked(c, new Uint32Array([2000, 3000]), 1));
  assert.deepEqual(Array.from(c.sacked.subarray(0, 2 * c.nSacked)), [1500, 4000]);
  assert.ok(!updateSacked(c, new Uint32Array([1600, 1700]), 1), "nothing new");
});
