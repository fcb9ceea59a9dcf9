// ffi/socket.ts against the real kernel: loopback in the host namespace (127.0.0.0/8, ::1)
// and, for what needs a clean slate (no routes, ping_group_range), namespaces we create.
// Every wait is a bounded poll(2).

import { deepStrictEqual, ok } from "node:assert/strict";
import { EACCES, EAGAIN, ECONNREFUSED, ECONNRESET, ENETUNREACH } from "../../ffi/errno.ts";
import {
  formatAddr,
  parseAddr,
  PingSocket,
  SO_EE_ORIGIN_ICMP,
  SO_EE_ORIGIN_ICMP6,
  TcpListener,
  TcpSocket,
  TcpState,
  UdpSocket,
} from "../../ffi/socket.ts";
import type { Family } from "../../ffi/socket.ts";
import { makeNetns, must, run } from "../support/harness.ts";

const assert: (value: unknown, message?: string) => asserts value = ok;
function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}
function assertGreater(actual: number, than: number, message?: string): void {
  ok(actual > than, message ?? `${actual} > ${than}`);
}

const t = Deno.dlopen("libc.so.6", {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
}).symbols;

const POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16;
const pfd = new Uint8Array(8);
const pdv = new DataView(pfd.buffer);

/** poll(2) one fd for up to ms; returns revents (0 on timeout). */
function waitFd(fd: number, events: number, ms = 2000): number {
  pdv.setInt32(0, fd, true);
  pdv.setInt16(4, events, true);
  pdv.setInt16(6, 0, true);
  return t.poll(pfd, 1n, ms) > 0 ? pdv.getInt16(6, true) : 0;
}

/** Retries fn (sleeping 1 ms between tries, bounded) until it returns true. */
function until(fn: () => boolean, what: string, ms = 2000): void {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    t.poll(null, 0n, 1);
  }
}

/** Runs fn with this thread in the network namespace at `path` (sockets made there stay). */
function inNetns<T>(path: string, fn: () => T): T {
  const cs = (s: string) => new TextEncoder().encode(s + "\0");
  const O_RDONLY_CLOEXEC = 0o2000000;
  const CLONE_NEWNET = 0x40000000;
  const home = t.open(cs("/proc/thread-self/ns/net"), O_RDONLY_CLOEXEC);
  const there = t.open(cs(path), O_RDONLY_CLOEXEC);
  assert(home >= 0 && there >= 0, "open netns files");
  try {
    assertEquals(t.setns(there, CLONE_NEWNET), 0, "setns into test netns");
    try {
      return fn();
    } finally {
      assertEquals(t.setns(home, CLONE_NEWNET), 0, "setns back home");
    }
  } finally {
    t.close(home);
    t.close(there);
  }
}

const LO4 = parseAddr("127.0.0.1")!;
const LO4B = parseAddr("127.0.0.2")!;
const LO6 = parseAddr("::1")!;
const lo = (f: Family) => f === 4 ? LO4 : LO6;

function pattern(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed + (i >> 8)) & 0xff;
  return b;
}

/** A connected pair over loopback: client `c` (ours), server side `s` from our listener. */
function tcpPair(
  family: Family,
  opts: { bindAddr?: Uint8Array; bindPort?: number } = {},
): { l: TcpListener; c: TcpSocket; s: TcpSocket; [Symbol.dispose](): void } {
  const l = TcpListener.listen(family, lo(family), 0, 16);
  let c: TcpSocket | null = null;
  try {
    c = TcpSocket.connect(family, lo(family), l.localPort(), opts);
    assertEquals(c.pendingError, 0, "loopback connect is EINPROGRESS, not an error");
    assert(waitFd(c.fd, POLLOUT) & POLLOUT, "client becomes writable");
    assertEquals(c.connectResult(), 0);
    assert(waitFd(l.fd, POLLIN) & POLLIN, "listener readable");
    const s = l.accept();
    if (s === null) throw new Error(`accept: errno ${l.lastError}`);
    const cc = c;
    return {
      l,
      c: cc,
      s,
      [Symbol.dispose]() {
        cc.close();
        s.close();
        l.close();
      },
    };
  } catch (e) {
    c?.close();
    l.close();
    throw e;
  }
}

/** Sends all of data from a to b, reading on b as it goes; returns what b received. */
function transfer(a: TcpSocket, b: TcpSocket, data: Uint8Array): Uint8Array {
  const got = new Uint8Array(data.length);
  let sent = 0, recvd = 0;
  const end = Date.now() + 5000;
  while (recvd < data.length) {
    if (Date.now() > end) throw new Error(`transfer stuck at ${sent}/${recvd}`);
    if (sent < data.length) {
      const n = a.send(data, sent, data.length - sent);
      if (n > 0) sent += n;
      else assertEquals(n, -EAGAIN);
    }
    const r = b.recv(got, recvd, got.length - recvd);
    if (r > 0) recvd += r;
    else if (r === -EAGAIN) waitFd(b.fd, POLLIN, 10);
    else throw new Error(`recv ${r}`);
  }
  return got;
}

for (const family of [4, 6] as const) {
  Deno.test(`tcp v${family}: connect EINPROGRESS → connectResult 0, addresses, round trip`, () => {
    using p = tcpPair(family);
    const cl = p.c.localAddress()!, cr = p.c.remoteAddress()!;
    const sr = p.s.remoteAddress()!;
    assertEquals(cr.port, p.l.localPort());
    assertEquals(formatAddr(cr.addr), family === 4 ? "127.0.0.1" : "::1");
    assertEquals(sr.port, cl.port, "server sees the client's port");
    assertEquals(p.c.family, family);
    assertEquals(p.s.family, family);
    const up = pattern(300_000, 1), down = pattern(200_000, 2);
    assertEquals(transfer(p.c, p.s, up), up);
    assertEquals(transfer(p.s, p.c, down), down);
  });
}

Deno.test("tcp: connect to a closed port → ECONNREFUSED via connectResult", () => {
  for (const family of [4, 6] as const) {
    const l = TcpListener.listen(family, lo(family), 0);
    const port = l.localPort();
    l.close();
    const c = TcpSocket.connect(family, lo(family), port);
    try {
      if (c.pendingError === 0) {
        assert(waitFd(c.fd, POLLOUT) & (POLLERR | POLLHUP), "connect fails");
      }
      assertEquals(c.connectResult(), ECONNREFUSED);
    } finally {
      c.close();
    }
  }
});

Deno.test("tcp: immediate connect errors are returned, not thrown (netns without routes)", async () => {
  await using ns = await makeNetns("sockrt");
  const [c, c6] = inNetns(ns.path, () => [
    TcpSocket.connect(4, parseAddr("192.0.2.1")!, 80),
    TcpSocket.connect(6, parseAddr("2001:db8::1")!, 80),
  ]);
  try {
    assertEquals(c.pendingError, ENETUNREACH);
    assertEquals(c.connectResult(), ENETUNREACH);
    assertEquals(c6.pendingError, ENETUNREACH);
  } finally {
    c.close();
    c6.close();
  }
  c.close(); // idempotent
  assertEquals(c.fd, -1);
  assert(c.send(new Uint8Array(1), 0, 1) < 0, "a closed socket answers -EBADF, not a reused fd");
});

Deno.test("tcp: bind a source address (127.0.0.2) and a source port", () => {
  {
    using p = tcpPair(4, { bindAddr: LO4B });
    const sr = p.s.remoteAddress()!;
    assertEquals(formatAddr(sr.addr), "127.0.0.2", "server sees the bound source address");
    assertEquals(formatAddr(p.c.localAddress()!.addr), "127.0.0.2");
  }
  // A specific source port (found free by binding a throwaway listener to port 0).
  const tmp = TcpListener.listen(4, LO4B, 0);
  const port = tmp.localPort();
  tmp.close();
  {
    using p = tcpPair(4, { bindAddr: LO4B, bindPort: port });
    assertEquals(p.s.remoteAddress()!.port, port);
  }
  using p6 = tcpPair(6, { bindAddr: LO6 });
  assertEquals(p6.s.remoteAddress()!.addr, LO6);
  assertEquals(p6.s.remoteAddress()!.port, p6.c.localAddress()!.port);
});

for (const emulated of [false, true]) {
  Deno.test(`tcp: peek with ${emulated ? "emulated" : "kernel"} SO_PEEK_OFF, rewind, discard`, () => {
    const saved = TcpSocket.peekOffSupported;
    if (emulated) TcpSocket.peekOffSupported = false;
    try {
      using p = tcpPair(4);
      const data = pattern(1000, 3);
      assertEquals(p.c.send(data, 0, data.length), 1000);
      until(() => p.s.inq() === 1000, "data queued at the server");
      const buf = new Uint8Array(2048);
      // Successive peeks return successive data, into the buffer at an offset.
      assertEquals(p.s.peek(buf, 100, 300), 300);
      assertEquals(buf.subarray(100, 400), data.subarray(0, 300));
      assertEquals(p.s.peek(buf, 0, 300), 300);
      assertEquals(buf.subarray(0, 300), data.subarray(300, 600));
      assertEquals(p.s.peekOffset(), 600);
      assertEquals(p.s.inq(), 1000, "peeking consumes nothing");
      // Rewind (retransmission) re-peeks from the start, then jump forward again.
      p.s.setPeekOffset(0);
      assertEquals(p.s.peek(buf, 0, 100), 100);
      assertEquals(buf.subarray(0, 100), data.subarray(0, 100));
      p.s.setPeekOffset(600);
      // discard drops exactly n from the front; the peek offset moves back with it.
      assertEquals(p.s.discard(250), 250);
      assertEquals(p.s.inq(), 750);
      assertEquals(p.s.peekOffset(), 350);
      assertEquals(p.s.peek(buf, 0, 2048), 400, "peek continues at byte 600");
      assertEquals(buf.subarray(0, 400), data.subarray(600, 1000));
      assertEquals(p.s.peek(buf, 0, 2048), -EAGAIN, "all peeked, no FIN yet");
      // recv still starts at the first unconsumed byte (250).
      assertEquals(p.s.recv(buf, 0, 50), 50);
      assertEquals(buf.subarray(0, 50), data.subarray(250, 300));
      // After the peer's FIN, a peek at the end of the data says 0 (EOF).
      assertEquals(p.c.shutdownWrite(), 0);
      until(() => (waitFd(p.s.fd, POLLIN, 10) & POLLIN) !== 0, "FIN arrives");
      assertEquals(p.s.peek(buf, 0, 2048), 0, "peek at end after FIN → 0");
      assertEquals(p.s.discard(10_000), 700, "discard stops at the end of the data");
      assertEquals(p.s.recv(buf, 0, 10), 0, "then EOF");
    } finally {
      TcpSocket.peekOffSupported = saved;
    }
  });
}

Deno.test("tcp: kernel supports SO_PEEK_OFF and MSG_TRUNC discard here", () => {
  using p = tcpPair(6);
  p.s.setPeekOffset(0);
  assertEquals(TcpSocket.peekOffSupported, true, "Linux >= 6.9 has TCP SO_PEEK_OFF");
  assertEquals(p.c.send(pattern(10), 0, 10), 10);
  until(() => p.s.inq() === 10, "data queued");
  assertEquals(p.s.discard(4), 4);
  assertEquals(TcpSocket.truncDiscard, true, "recv(NULL, n, MSG_TRUNC) discards on TCP");
  assertEquals(p.s.inq(), 6);
});

Deno.test("tcp: outq/unsentq/inq follow a stalled receiver; sendBufSize", () => {
  using p = tcpPair(4);
  // A bounded receive buffer (autotuning off) that we do not read: the window closes and
  // the sender's queue backs up. (Not tiny: a window below the 64 KiB MSS crawls.)
  p.s.setRecvBufSize(256 * 1024);
  assertEquals(p.c.outq(), 0);
  assertEquals(p.s.inq(), 0);
  const chunk = pattern(65536);
  let sent = 0;
  for (let i = 0; i < 10_000; i++) {
    const n = p.c.send(chunk, 0, chunk.length);
    if (n === -EAGAIN) break;
    assertGreater(n, 0);
    sent += n;
  }
  assertGreater(sent, 0);
  until(() => p.s.inq() > 0, "some data reaches the server");
  // Once the (possibly delayed) ACKs are in, every byte is either at the server or unacked.
  until(() => p.c.outq() + p.s.inq() === sent, "outq + inq === sent");
  assert(p.s.inq() > 0 && p.s.inq() < sent);
  assertGreater(p.c.outq(), 0, "the stalled window leaves data in the send queue");
  assertGreater(p.c.unsentq(), 0, "some of it has not even been sent");
  assertGreater(p.c.sendBufSize(), 0);
  // Drain the server: the sender's queue empties.
  const sink = new Uint8Array(65536);
  let got = 0;
  until(() => {
    const r = p.s.recv(sink, 0, sink.length);
    if (r > 0) got += r;
    return got === sent && p.c.outq() === 0;
  }, "send queue drains");
  assertEquals(p.s.inq(), 0);
});

Deno.test("tcp: shutdownWrite gives the peer EOF; abort gives it ECONNRESET", () => {
  const buf = new Uint8Array(64);
  {
    using p = tcpPair(4);
    assertEquals(p.c.send(pattern(5), 0, 5), 5);
    assertEquals(p.c.shutdownWrite(), 0);
    until(() => p.s.inq() === 5, "data arrives");
    assertEquals(p.s.recv(buf, 0, 64), 5);
    until(() => p.s.recv(buf, 0, 64) === 0, "EOF after the data");
    // The other direction still works after our half-close.
    assertEquals(p.s.send(pattern(3), 0, 3), 3);
    until(() => p.c.recv(buf, 0, 64) === 3, "reverse data after shutdown");
  }
  {
    using p = tcpPair(6);
    p.c.abort();
    p.c.abort(); // idempotent
    assertEquals(p.c.fd, -1);
    assert(waitFd(p.s.fd, POLLIN) & (POLLIN | POLLERR | POLLHUP), "RST arrives");
    assertEquals(p.s.recv(buf, 0, 64), -ECONNRESET);
  }
});

Deno.test("tcp: listener accept() → null + EAGAIN when empty", () => {
  const l = TcpListener.listen(6, LO6, 0, 4, { v6only: true });
  try {
    assertEquals(l.accept(), null);
    assertEquals(l.lastError, EAGAIN);
    assertEquals(formatAddr(l.localAddress()!.addr), "::1");
  } finally {
    l.close();
    l.close();
  }
});

Deno.test("tcp: TCP_INFO offsets agree with `ss -ti`", async () => {
  using p = tcpPair(4);
  const data = pattern(100_000);
  assertEquals(transfer(p.c, p.s, data), data);
  assertEquals(transfer(p.s, p.c, data.subarray(0, 5000)).length, 5000);
  const port = p.c.localAddress()!.port;
  // Idle connection: the counters stop moving; compare once they agree (bounded retries).
  let last = "";
  for (let attempt = 0; attempt < 20; attempt++) {
    const before = p.c.tcpInfo()!;
    const snap = { ...before };
    const out = await must(["ss", "-tinH", "state", "established", `sport = :${port}`]);
    const after = p.c.tcpInfo()!;
    assert(before === after, "the reused TcpInfo object is returned");
    const f = (k: string): number | undefined => {
      const m = out.match(new RegExp(`(?:^|\\s)${k}:([0-9.]+)`));
      return m ? Number(m[1]) : undefined;
    };
    const rtt = out.match(/\srtt:([0-9.]+)\/([0-9.]+)/);
    const expect: [string, number | undefined, number][] = [
      ["rto", f("rto"), snap.rto / 1000],
      ["mss", f("mss"), snap.sndMss],
      ["rcvmss", f("rcvmss"), snap.rcvMss],
      ["pmtu", f("pmtu"), snap.pmtu],
      ["advmss", f("advmss"), snap.advmss],
      ["cwnd", f("cwnd"), snap.sndCwnd],
      ["bytes_sent", f("bytes_sent"), snap.bytesSent],
      ["bytes_acked", f("bytes_acked"), snap.bytesAcked],
      ["bytes_received", f("bytes_received"), snap.bytesReceived],
      ["segs_out", f("segs_out"), snap.segsOut],
      ["segs_in", f("segs_in"), snap.segsIn],
      ["rcv_space", f("rcv_space"), snap.rcvSpace],
      ["rcv_ssthresh", f("rcv_ssthresh"), snap.rcvSsthresh],
      ["minrtt", f("minrtt"), snap.minRtt / 1000],
      ["snd_wnd", f("snd_wnd"), snap.sndWnd],
      ["rtt", rtt ? Number(rtt[1]) : undefined, snap.rtt / 1000],
      ["rttvar", rtt ? Number(rtt[2]) : undefined, snap.rttvar / 1000],
    ];
    const bad = expect.filter(([, ss, ours]) => ss === undefined || Math.abs(ss - ours) > 0.0015);
    if (bad.length === 0 && JSON.stringify(snap) === JSON.stringify({ ...after })) {
      assertEquals(snap.state, TcpState.ESTABLISHED);
      assertEquals(snap.unacked, 0);
      assertEquals(snap.bytesAcked, 100_000 + 1, "bytes_acked counts the SYN too");
      assertGreater(snap.size, 228, "this kernel reports tcpi_snd_wnd");
      return;
    }
    last = `${out}\nmismatch: ${JSON.stringify(bad)}`;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(last);
});

for (const family of [4, 6] as const) {
  Deno.test(`udp v${family}: sendTo/recvFrom records the source; large and truncated datagrams`, () => {
    const a = UdpSocket.open(family, { bindAddr: lo(family) });
    const b = UdpSocket.open(family, { bindAddr: lo(family), bindPort: 0 });
    try {
      const big = family === 4 ? 65507 : 65527; // 65535 - IP/UDP headers
      const data = pattern(big, family);
      const buf = new Uint8Array(70_000);
      assertEquals(a.sendTo(data, 0, 100, lo(family), b.localPort()), 100);
      assert(waitFd(b.fd, POLLIN) & POLLIN);
      assertEquals(b.recvFrom(buf, 10, 1000), 100);
      assertEquals(buf.subarray(10, 110), data.subarray(0, 100));
      assertEquals(b.fromLen, family === 4 ? 4 : 16);
      assertEquals(b.fromAddr.subarray(0, b.fromLen), lo(family));
      assertEquals(b.fromPort, a.localPort());
      assertEquals(b.truncated, false);
      // Largest datagram over loopback.
      assertEquals(a.sendTo(data, 0, big, lo(family), b.localPort()), big);
      assert(waitFd(b.fd, POLLIN) & POLLIN);
      assertEquals(b.recvFrom(buf, 0, buf.length), big);
      assertEquals(buf.subarray(0, big), data);
      // One byte too many for an IP packet.
      assert(a.sendTo(buf, 0, big + 1, lo(family), b.localPort()) < 0);
      // A short buffer truncates the datagram and says so.
      assertEquals(b.sendTo(data, 0, 500, lo(family), a.localPort()), 500);
      assert(waitFd(a.fd, POLLIN) & POLLIN);
      assertEquals(a.recvFrom(buf, 0, 200), 200);
      assertEquals(a.truncated, true);
      assertEquals(a.fromPort, b.localPort());
      assertEquals(a.recvFrom(buf, 0, 200), -EAGAIN, "the rest of it is gone");
      // Connected use.
      assertEquals(a.connect(lo(family), b.localPort()), 0);
      assertEquals(a.send(data, 0, 33), 33);
      assert(waitFd(b.fd, POLLIN) & POLLIN);
      assertEquals(b.recv(buf, 0, 100), 33);
    } finally {
      a.close();
      b.close();
      a.close();
    }
  });

  Deno.test(`udp v${family}: IP_RECVERR reports port unreachable from a closed port`, () => {
    const probe = UdpSocket.open(family, { bindAddr: lo(family) });
    const closed = probe.localPort();
    probe.close();
    const s = UdpSocket.open(family, { bindAddr: lo(family) });
    try {
      s.setRecvErr(true);
      const msg = pattern(40, 9);
      assertEquals(s.sendTo(msg, 0, 40, lo(family), closed), 40);
      assert(waitFd(s.fd, 0) & POLLERR, "the ICMP error raises POLLERR");
      const payload = new Uint8Array(100);
      const e = s.readError(payload);
      if (e === null) throw new Error("no error queued");
      assertEquals(e.errno, ECONNREFUSED);
      if (family === 4) {
        assertEquals([e.origin, e.type, e.code], [SO_EE_ORIGIN_ICMP, 3, 3]);
      } else {
        assertEquals([e.origin, e.type, e.code], [SO_EE_ORIGIN_ICMP6, 1, 4]);
      }
      assertEquals(e.dest?.port, closed);
      assertEquals(e.dest?.addr, lo(family));
      assertEquals(e.offender, lo(family));
      assertEquals(e.payloadLen, 40);
      assertEquals(payload.subarray(0, 40), msg, "the failed datagram's payload");
      assertEquals(s.readError(), null, "the queue is empty again");
      assertEquals(s.recvFrom(payload, 0, 100), -EAGAIN, "and no error is left pending");
    } finally {
      s.close();
    }
  });
}

function echoRequest(family: Family, id: number, seq: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b[0] = family === 4 ? 8 : 128;
  b[4] = id >> 8;
  b[5] = id & 0xff;
  b[6] = seq >> 8;
  b[7] = seq & 0xff;
  b.set(data, 8);
  return b;
}

Deno.test("ping: host ping_group_range is honoured (null + EACCES when it excludes us)", () => {
  const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ping_group_range").trim().split(
    /\s+/,
  ).map(Number);
  const gid = Deno.gid() ?? 0;
  const s = PingSocket.open(4);
  if (gid >= lo && gid <= hi) {
    if (s === null) throw new Error("range allows our group");
    s.close();
  } else {
    assertEquals(s, null, `range ${lo}-${hi} excludes gid ${gid}`);
    assertEquals(PingSocket.lastError, EACCES);
  }
});

Deno.test("ping: echo to loopback in a netns with ping_group_range allowing root", async () => {
  await using ns = await makeNetns("sockping");
  const set = await run([...ns.prefix(), "sysctl", "-w", "net.ipv4.ping_group_range=0 0"]);
  if (set.code !== 0) {
    console.log(`skipped: cannot set ping_group_range in a netns: ${set.stderr}`);
    return;
  }
  const [s4, s6, sb] = inNetns(ns.path, () => [
    PingSocket.open(4),
    PingSocket.open(6),
    PingSocket.open(4),
  ]);
  try {
    if (!s4 || !s6 || !sb) throw new Error(`ping socket: errno ${PingSocket.lastError}`);
    const buf = new Uint8Array(2000);
    for (const [s, family] of [[s4, 4], [s6, 6]] as const) {
      const payload = pattern(56, family);
      const req = echoRequest(family, 0x4242, 7, payload);
      assertEquals(s.sendTo(req, 0, req.length, lo(family)), req.length);
      assert(waitFd(s.fd, POLLIN) & POLLIN, "echo reply arrives");
      const n = s.recvFrom(buf, 0, buf.length);
      assertEquals(n, req.length);
      assertEquals(buf[0], family === 4 ? 0 : 129, "echo reply type");
      assertEquals((buf[6] << 8) | buf[7], 7, "same sequence number");
      assertEquals((buf[4] << 8) | buf[5], s.ident(), "id is the socket's ident");
      assertEquals(buf.subarray(8, n), payload);
      assertEquals(s.fromAddr.subarray(0, s.fromLen), lo(family));
    }
    // Binding the ident keeps the guest's identifier.
    assertEquals(sb.bindId(0x1234), 0);
    assertEquals(sb.ident(), 0x1234);
    const req = echoRequest(4, 0x1234, 99, pattern(8));
    assertEquals(sb.sendTo(req, 0, req.length, LO4), req.length);
    assert(waitFd(sb.fd, POLLIN) & POLLIN);
    assertEquals(sb.recvFrom(buf, 0, buf.length), req.length);
    assertEquals([(buf[4] << 8) | buf[5], (buf[6] << 8) | buf[7]], [0x1234, 99]);
  } finally {
    s4?.close();
    s6?.close();
    sb?.close();
  }
});

Deno.test("hot path: send/recv/peek/discard/sendTo/recvFrom/tcpInfo do not allocate", async () => {
  // A child process with a young generation big enough that no GC runs during the measured
  // loops, so heapUsed grows by exactly what they allocate. A control loop that allocates one
  // small object per iteration proves the measurement sees allocations.
  const src = `
    import { TcpListener, TcpSocket, UdpSocket, parseAddr } from "${
    new URL("../../ffi/socket.ts", import.meta.url).href
  }";
    const lo = parseAddr("127.0.0.1");
    const l = TcpListener.listen(4, lo, 0);
    const c = TcpSocket.connect(4, lo, l.localPort());
    let s = null;
    for (let i = 0; i < 1000 && s === null; i++) {
      s = l.accept();
      await new Promise((r) => setTimeout(r, 1));
    }
    const u1 = UdpSocket.open(4, { bindAddr: lo }), u2 = UdpSocket.open(4, { bindAddr: lo });
    const p2 = u2.localPort();
    const a = new Uint8Array(65536), b = new Uint8Array(65536);
    const keep = [];
    const round = (control) => {
      let k = 0;
      for (let i = 0; i < 20000; i++) {
        if (c.send(a, i & 1023, 1000) > 0) k++;
        if (s.peek(b, 54, 500) > 0) k++;
        if (s.discard(1000) > 0) k++;
        if (u1.sendTo(a, 14, 200, lo, p2) > 0) k++;
        if (u2.recvFrom(b, 42, 2000) > 0) k += u2.fromPort === u1.localPort() ? 1 : 0;
        c.recv(b, 0, 10);
        if (s.tcpInfo().state === 1) k++;
        if (control) keep[i & 1] = { i };
      }
      return k;
    };
    round(false); round(false); round(true); // warm up: let the JIT optimize
    // JIT tiering still allocates a little (feedback, code) during the first rounds; a
    // per-call allocation would instead show up in every round as >= 20000 objects.
    const hot = [];
    let k = 0;
    for (let j = 0; j < 8; j++) {
      const h0 = Deno.memoryUsage().heapUsed;
      k += round(false);
      hot.push(Deno.memoryUsage().heapUsed - h0);
    }
    const h1 = Deno.memoryUsage().heapUsed;
    round(true);
    const control = Deno.memoryUsage().heapUsed - h1;
    console.log(JSON.stringify({ k, hot, control }));
  `;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, src);
    const r = await run([
      Deno.execPath(),
      "run",
      "-A",
      "--v8-flags=--min-semi-space-size=64,--max-semi-space-size=64",
      file,
    ], { timeoutMs: 60_000 });
    assertEquals(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
      k: number;
      hot: number[];
      control: number;
    };
    assertGreater(m.k, 8 * 20000 * 5, `most calls moved data: ${r.stdout}`);
    assertGreater(m.control, 20000 * 16, `the control loop's allocations show: ${r.stdout}`);
    assert(Math.min(...m.hot) < 4096, `steady-state rounds allocate nothing: ${r.stdout}`);
    assert(Math.max(...m.hot) < 20000 * 8, `no round allocates per call: ${r.stdout}`);
  } finally {
    await Deno.remove(file);
  }
});
