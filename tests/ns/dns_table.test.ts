// The DNS forwarder's query table without a guest: id rewriting and restoring, the bound on
// queries in flight, guest retransmissions, stray answers, timeouts, the TC=1 cut for answers
// too large to deliver; and resolv.conf parsing and change detection. The upstream is a real
// UDP socket on 127.0.0.1:53 in a throwaway netns (the forwarder's sockets are made there
// inside withNetns windows), so nothing touches the machine's own network.

import assert from "node:assert/strict";
import { DnsForwarder, truncatedAnswer } from "../../stack/services/dns.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { PacketMeta } from "../../stack/ip/meta.ts";
import { Counters } from "../../stack/base/counters.ts";
import { Tx } from "../../stack/link/tx.ts";
import { TimerWheel } from "../../stack/flow/timers.ts";
import { MAXNS, parseResolvConf, ResolvConf } from "../../stack/services/resolvconf.ts";
import { UdpSocket } from "../../ffi/dgram.ts";
import { withNetns } from "../../ffi/netns.ts";
import { formatIp, u16 } from "../../stack/wire/bytes.ts";
import { makeNetns } from "../support/harness.ts";

const GUEST = new Uint8Array([10, 0, 2, 100]);

/** A DNS query for `name` (type A) with id `id`. */
function query(id: number, name: string): Uint8Array {
  const labels = name.split(".").flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
  return new Uint8Array([
    id >> 8,
    id & 255,
    1,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    ...labels,
    0,
    0,
    1,
    0,
    1,
  ]);
}

/** A PacketMeta for a guest datagram 10.0.2.100:port → 10.0.2.3:53 carrying `msg`. */
function guestDatagram(port: number, msg: Uint8Array): { m: PacketMeta; off: number } {
  const b = new Uint8Array(16 + msg.length);
  b.set(GUEST, 0);
  b.set([10, 0, 2, 3], 4);
  b.set([port >> 8, port & 255, 0, 53, (8 + msg.length) >> 8, (8 + msg.length) & 255, 0, 0], 8);
  b.set(msg, 16);
  const m = new PacketMeta();
  m.family = 4;
  m.b = b;
  m.srcOff = 0;
  m.dstOff = 4;
  m.l4Off = 8;
  m.l4Len = 8 + msg.length;
  return { m, off: 16 };
}

interface Sent {
  family: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  payload: Uint8Array;
}

function rig(resolvConf: string, opts: { maxOutstanding?: number; maxAnswer?: number }) {
  const counters = new Counters();
  const tx = new Tx(
    { vnetLen: 0, offloaded: false, write: () => true },
    new Uint8Array(6),
    1500,
    counters,
  );
  let clock = 1000;
  const wheel = new TimerWheel(clock);
  const handlers = new Map<number, () => void>();
  const sent: Sent[] = [];
  const dns = new DnsForwarder(
    defaultNetPlan(),
    tx,
    {
      add: (p, _ev, h) => handlers.set(p.fd, () => h(1)),
      remove: (p) => handlers.delete(p.fd),
    },
    wheel,
    (family, src, srcPort, dst, dstPort, len) => {
      const at = tx.l4Offset(family) + 8;
      sent.push({
        family,
        src: formatIp(src),
        srcPort,
        dst: formatIp(dst),
        dstPort,
        payload: tx.buf.slice(at, at + len),
      });
      return true;
    },
    {
      resolvConf,
      timeoutMs: 1000,
      maxOutstanding: opts.maxOutstanding,
      maxAnswer: opts.maxAnswer === undefined ? undefined : () => opts.maxAnswer as number,
      now: () => clock,
    },
  );
  return {
    dns,
    sent,
    handlers,
    /** Runs every registered readiness handler (the poller's job). */
    poll: () => [...handlers.values()].forEach((h) => h()),
    advance: (ms: number) => {
      clock += ms;
      wheel.advance(clock);
    },
  };
}

Deno.test("dns table: ids rewritten and restored, bounded, retransmits, strays, timeouts", async () => {
  await using ns = await makeNetns("dnsu");
  const dir = Deno.makeTempDirSync({ prefix: "slirpd-dnsu-" });
  let server: UdpSocket | null = null;
  const r = rig(`${dir}/resolv.conf`, { maxOutstanding: 2 });
  try {
    Deno.writeTextFileSync(`${dir}/resolv.conf`, "nameserver 127.0.0.1\n");
    server = withNetns(
      ns.path,
      () => UdpSocket.open(4, { bindAddr: new Uint8Array([127, 0, 0, 1]), bindPort: 53 }),
    );
    const q1 = query(0x1111, "one.test"), q2 = query(0x2222, "two.test");
    withNetns(ns.path, () => {
      const a = guestDatagram(40001, q1);
      r.dns.input(a.m, a.off, q1.length);
      const b = guestDatagram(40002, q2);
      r.dns.input(b.m, b.off, q2.length);
      const c = guestDatagram(40003, query(0x3333, "three.test"));
      r.dns.input(c.m, c.off, c.m.l4Len - 8);
    });
    assert.equal(r.dns.outstanding, 2);
    assert.equal(r.dns.stats.dropTableFull, 1, "the third query finds the table full");
    const buf = new Uint8Array(512);
    const up: { id: number; port: number; body: Uint8Array }[] = [];
    for (let i = 0; i < 2; i++) {
      const n = server.recvFrom(buf, 0, buf.length);
      assert.ok(n > 12, `upstream datagram ${i}: ${n}`);
      up.push({ id: u16(buf, 0), port: server.fromPort, body: buf.slice(2, n) });
    }
    // Which is which: by the question (both kept byte for byte except the id).
    const same = (a: Uint8Array, b: Uint8Array) =>
      a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(up[0].body, q1.slice(2))) up.reverse();
    assert.ok(same(up[0].body, q1.slice(2)), "the first query reached the upstream unchanged");
    assert.ok(same(up[1].body, q2.slice(2)), "the second query reached the upstream unchanged");
    assert.ok(up[0].id !== 0x1111 || up[1].id !== 0x2222, "ids are rewritten");
    assert.notEqual(up[0].port, up[1].port, "one socket (source port) per query");
    // A guest retransmission goes to the same server again, with the same upstream id.
    withNetns(ns.path, () => {
      const a = guestDatagram(40001, q1);
      r.dns.input(a.m, a.off, q1.length);
    });
    assert.equal(r.dns.stats.retransmits, 1);
    assert.equal(server.recvFrom(buf, 0, buf.length), q1.length);
    assert.equal(u16(buf, 0), up[0].id);
    // A stray datagram (wrong id) on the second query's socket is dropped.
    const stray = q2.slice();
    stray[0] ^= 0xff;
    stray[2] |= 0x80;
    server.sendTo(stray, 0, stray.length, new Uint8Array([127, 0, 0, 1]), up[1].port);
    // The answer to the first: QR set, upstream id. It reaches the guest with its own id.
    const ans = q1.slice();
    ans[0] = up[0].id >> 8;
    ans[1] = up[0].id & 255;
    ans[2] |= 0x80;
    server.sendTo(ans, 0, ans.length, new Uint8Array([127, 0, 0, 1]), up[0].port);
    await new Promise((res) => setTimeout(res, 20));
    r.poll();
    assert.equal(r.dns.stats.dropStray, 1);
    assert.equal(r.sent.length, 1);
    const s = r.sent[0];
    assert.deepEqual(
      [s.family, s.src, s.srcPort, s.dst, s.dstPort],
      [4, "10.0.2.3", 53, "10.0.2.100", 40001],
    );
    assert.equal(u16(s.payload, 0), 0x1111, "the guest's id is restored");
    assert.deepEqual(s.payload.slice(2), ans.slice(2), "the rest is unchanged");
    assert.equal(r.dns.outstanding, 1);
    // The second never gets an answer: after the timeout with no other server, it fails.
    r.advance(1001);
    assert.equal(r.dns.stats.serverTimeouts, 1);
    assert.equal(r.dns.stats.failed, 1);
    assert.equal(r.dns.outstanding, 0);
    assert.equal(r.handlers.size, 0, "every query socket left the poller");
  } finally {
    r.dns.close();
    server?.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("dns table: an answer too large to deliver goes out as header + question, TC=1", async () => {
  await using ns = await makeNetns("dnsu");
  const dir = Deno.makeTempDirSync({ prefix: "slirpd-dnsu-" });
  Deno.writeTextFileSync(`${dir}/resolv.conf`, "nameserver 127.0.0.1\n");
  const r = rig(`${dir}/resolv.conf`, { maxAnswer: 100 });
  let server: UdpSocket | null = null;
  try {
    server = withNetns(
      ns.path,
      () => UdpSocket.open(4, { bindAddr: new Uint8Array([127, 0, 0, 1]), bindPort: 53 }),
    );
    const q = query(0x4242, "big.test");
    withNetns(ns.path, () => {
      const a = guestDatagram(40010, q);
      r.dns.input(a.m, a.off, q.length);
    });
    const buf = new Uint8Array(512);
    assert.equal(server.recvFrom(buf, 0, buf.length), q.length);
    // 300 bytes: the question, then an answer count of 1 and filler the cut must drop.
    const ans = new Uint8Array(300);
    ans.set(buf.subarray(0, q.length));
    ans[2] |= 0x80;
    ans[7] = 1;
    server.sendTo(ans, 0, ans.length, new Uint8Array([127, 0, 0, 1]), server.fromPort);
    await new Promise((res) => setTimeout(res, 20));
    r.poll();
    assert.equal(r.sent.length, 1);
    const p = r.sent[0].payload;
    assert.equal(p.length, q.length, "header + question only");
    assert.equal(u16(p, 0), 0x4242);
    assert.ok((p[2] & 0x02) !== 0, "TC set");
    assert.deepEqual([u16(p, 4), u16(p, 6), u16(p, 8), u16(p, 10)], [1, 0, 0, 0]);
    assert.equal(r.dns.stats.truncated, 1);
  } finally {
    r.dns.close();
    server?.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("dns table: truncatedAnswer keeps the question, or only the header when it is malformed", () => {
  const q = query(7, "a.b.test");
  const out = new Uint8Array(600);
  assert.equal(truncatedAnswer(out, 10, q, q.length, 512), q.length);
  assert.equal(out[12] & 0x02, 0x02);
  const bad = q.slice(0, 15); // the name runs past the end
  assert.equal(truncatedAnswer(out, 0, bad, bad.length, 512), 12);
  assert.equal(u16(out, 4), 0, "no question");
});

Deno.test("dns resolv.conf: glibc's parsing rules", () => {
  const got = parseResolvConf([
    "# comment",
    "search example.test",
    "nameserver 127.0.0.53 # trailing comment",
    "; nameserver 192.0.2.9",
    "nameserver fe80::1%eth0",
    "nameserver ::ffff:192.0.2.1",
    "nameserver 127.0.0.53",
    "nameserver bogus",
    "  nameserver\t2001:db8::53",
    "nameserver 192.0.2.4",
  ].join("\n"));
  assert.deepEqual(
    got.map((s) => `${s.family} ${formatIp(s.addr)}`),
    ["4 127.0.0.53", "4 192.0.2.1", "6 2001:db8::53"],
  );
  assert.equal(got.length, MAXNS);
  assert.deepEqual(parseResolvConf("options ndots:2\n"), []);
});

Deno.test("dns resolv.conf: changes are seen (atomic replace, in-place edit), not more than asked", () => {
  const dir = Deno.makeTempDirSync({ prefix: "slirpd-rc-" });
  const path = `${dir}/resolv.conf`;
  try {
    const lines: string[] = [];
    const rc = new ResolvConf(path, { minCheckMs: 1000, log: (l) => lines.push(l) });
    // Missing at first: glibc's default, said once.
    assert.deepEqual(rc.servers(0).map((s) => formatIp(s.addr)), ["127.0.0.1"]);
    assert.equal(lines.length, 1);
    Deno.writeTextFileSync(path, "nameserver 192.0.2.1\n");
    assert.deepEqual(rc.servers(500).map((s) => formatIp(s.addr)), ["127.0.0.1"], "throttled");
    assert.deepEqual(rc.servers(1000).map((s) => formatIp(s.addr)), ["192.0.2.1"]);
    const same = rc.servers(5000);
    assert.equal(rc.servers(9000), same, "unchanged file: the same list object");
    assert.equal(rc.loads, 1);
    // Atomic replace.
    Deno.writeTextFileSync(`${path}.tmp`, "nameserver 192.0.2.2\n");
    Deno.renameSync(`${path}.tmp`, path);
    assert.deepEqual(rc.servers(10_000).map((s) => formatIp(s.addr)), ["192.0.2.2"]);
    // In-place rewrite of the same size.
    Deno.writeTextFileSync(path, "nameserver 192.0.2.3\n");
    Deno.utimeSync(path, new Date(), new Date(Date.now() + 5000)); // a later mtime, surely
    rc.invalidate();
    assert.deepEqual(rc.servers(10_001).map((s) => formatIp(s.addr)), ["192.0.2.3"]);
    // Deleted: the last list is kept.
    Deno.removeSync(path);
    assert.deepEqual(rc.servers(20_000).map((s) => formatIp(s.addr)), ["192.0.2.3"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
