// Reassembly (stack/ip/reasm.ts) fed with real kernel fragments (tests/fixtures/frames.ts: a
// 3000-byte UDP datagram the kernel fragmented at MTU 1500, IPv4 and IPv6) through the real IP
// layer, and fragmentation (stack/ip/frag.ts) checked by reassembling what it emits.
//
// Covered: in order, every order, exact duplicates ignored, overlaps abandon the datagram
// (RFC 5722), timeouts (30 s IPv4, 60 s IPv6), the memory bound (oldest evicted), the size
// limit, atomic IPv6 fragments, and frag → reasm round trips up to 65507 bytes.

import assert from "node:assert/strict";
import { frameBytes, type FrameName } from "../fixtures/frames.ts";
import { Counters } from "../../stack/base/counters.ts";
import { Ip } from "../../stack/ip/ip.ts";
import type { PacketMeta } from "../../stack/ip/meta.ts";
import { type ReasmOptions, Reassembler } from "../../stack/ip/reasm.ts";
import { TimerWheel } from "../../stack/flow/timers.ts";
import { setU16, u16 } from "../../stack/wire/bytes.ts";
import { UdpView } from "../../stack/wire/udp.ts";
import { Fragmenter } from "../../stack/ip/frag.ts";
import { Tx } from "../../stack/link/tx.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";

const PATTERN = new TextEncoder().encode("0123456789abcdefghijklmnopqrst".repeat(100));

interface Got {
  family: 4 | 6;
  l4: Uint8Array;
  csumOk: boolean;
}

/** The IP layer with a reassembler and a UDP transport that records what arrives. */
function world(opts: ReasmOptions = {}) {
  const counters = new Counters();
  let now = 1000;
  const wheel = new TimerWheel(now);
  const got: Got[] = [];
  const view = new UdpView();
  const udp = {
    input(m: PacketMeta) {
      const ok = view.parse(m.b, m.l4Off, m.l4Len) &&
        view.verifyChecksum(m.family === 4 ? 4 : 16, m.srcOff, m.dstOff);
      got.push({ family: m.family, l4: m.b.slice(m.l4Off, m.l4Off + m.l4Len), csumOk: ok });
    },
  };
  const ip = new Ip(counters, { udp });
  const reasm = new Reassembler(
    wheel,
    counters,
    (f, b, o, n) => ip.reassembled(f, b, o, n),
    opts,
  );
  ip.reasm = reasm;
  return {
    counters,
    got,
    reasm,
    /** One Ethernet frame (no vnet header). */
    feed(frame: Uint8Array) {
      if (u16(frame, 12) === 0x0800) ip.input4(frame, 14, frame.length - 14);
      else ip.input6(frame, 14, frame.length - 14);
    },
    advance(ms: number) {
      now += ms;
      wheel.advance(now);
    },
  };
}

const V4: FrameName[] = ["ip4Frag0", "ip4Frag1", "ip4FragLast"];

/** The 3000-byte datagram as it must come out: UDP header (ports 40003 → 7003) + pattern. */
function assertDatagram(g: Got) {
  assert.ok(g.csumOk, "UDP checksum of the reassembled datagram verifies");
  assert.equal(g.l4.length, 3008);
  assert.equal(u16(g.l4, 0), 40003);
  assert.equal(u16(g.l4, 2), 7003);
  assert.deepEqual(g.l4.subarray(8), PATTERN);
}

/** The middle IPv6 fragment (not in the capture): datagram bytes [1448, 2896). */
function ip6Middle(): Uint8Array {
  const first = frameBytes("ip6Frag0");
  const f = new Uint8Array(14 + 48 + 1448);
  f.set(first.subarray(0, 14 + 48));
  setU16(f, 14 + 4, 8 + 1448);
  setU16(f, 14 + 40 + 2, 1448 | 1);
  f.set(PATTERN.subarray(1448 - 8, 2896 - 8), 14 + 48);
  return f;
}

function v6Frames(): Uint8Array[] {
  return [frameBytes("ip6Frag0"), ip6Middle(), frameBytes("ip6FragLast")];
}

/** A copy of an IPv4 fragment with another identification (header checksum redone). */
function withIdent4(frame: Uint8Array, ident: number): Uint8Array {
  const f = frame.slice();
  setU16(f, 14 + 4, ident);
  setU16(f, 14 + 10, 0);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += u16(f, 14 + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  setU16(f, 14 + 10, ~s & 0xffff);
  return f;
}

const PERMS: number[][] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

Deno.test("reasm: IPv4 real fragments in every order give the datagram once", () => {
  for (const p of PERMS) {
    const w = world();
    for (const i of p) w.feed(frameBytes(V4[i]));
    assert.equal(w.got.length, 1, `order ${p}`);
    assertDatagram(w.got[0]);
    assert.equal(w.counters.reasmDone, 1);
    assert.equal(w.reasm.inProgress, 0);
  }
});

Deno.test("reasm: IPv6 fragments in every order give the datagram once", () => {
  for (const p of PERMS) {
    const w = world();
    const fr = v6Frames();
    for (const i of p) w.feed(fr[i]);
    assert.equal(w.got.length, 1, `order ${p}`);
    assert.equal(w.got[0].family, 6);
    assertDatagram(w.got[0]);
  }
});

Deno.test("reasm: an exact duplicate is ignored, the datagram still completes", () => {
  const w = world();
  w.feed(frameBytes("ip4Frag0"));
  w.feed(frameBytes("ip4Frag0"));
  w.feed(frameBytes("ip4Frag1"));
  w.feed(frameBytes("ip4Frag1"));
  w.feed(frameBytes("ip4FragLast"));
  assert.equal(w.got.length, 1);
  assertDatagram(w.got[0]);
  assert.equal(w.counters.dropFragmentDup, 2);
});

Deno.test("reasm: an overlapping fragment abandons the whole datagram (RFC 5722)", () => {
  for (const family of [4, 6] as const) {
    const w = world();
    const frames = family === 4 ? V4.map(frameBytes) : v6Frames();
    w.feed(frames[0]);
    // The middle fragment moved 8 bytes down: it overlaps the first one's last 8 bytes.
    let bad: Uint8Array = frames[1].slice();
    if (family === 4) {
      setU16(bad, 14 + 6, 0x2000 | ((1480 - 8) >> 3));
      bad = withIdent4(bad, u16(bad, 14 + 4)); // header checksum redone
    } else setU16(bad, 14 + 40 + 2, (1448 - 8) | 1);
    w.feed(bad);
    assert.equal(w.counters.dropReasmOverlap, 1, `IPv${family}`);
    assert.equal(w.reasm.inProgress, 0);
    // What follows starts a new datagram that can never complete: nothing is delivered.
    w.feed(frames[1]);
    w.feed(frames[2]);
    assert.equal(w.got.length, 0);
    assert.equal(w.reasm.inProgress, 1);
  }
});

Deno.test("reasm: a last fragment that disagrees about the length abandons the datagram", () => {
  const w = world();
  w.feed(frameBytes("ip4Frag0"));
  w.feed(frameBytes("ip4Frag1"));
  const short = frameBytes("ip4FragLast").slice();
  setU16(short, 14 + 6, (2960 - 1480) >> 3); // the last fragment claims to end inside frag1
  w.feed(withIdent4(short, u16(short, 14 + 4)));
  assert.equal(w.counters.dropReasmOverlap, 1);
  assert.equal(w.got.length, 0);
});

Deno.test("reasm: incomplete datagrams time out (IPv4 30 s, IPv6 60 s)", () => {
  const w = world();
  w.feed(frameBytes("ip4Frag0"));
  const v6 = v6Frames();
  w.feed(v6[0]);
  assert.equal(w.reasm.inProgress, 2);
  w.advance(29_000);
  assert.equal(w.reasm.inProgress, 2);
  w.advance(2_000);
  assert.equal(w.counters.dropReasmTimeout, 1, "the IPv4 one after 30 s");
  assert.equal(w.reasm.inProgress, 1);
  w.advance(30_000);
  assert.equal(w.counters.dropReasmTimeout, 2, "the IPv6 one after 60 s");
  assert.equal(w.reasm.inProgress, 0);
  // The rest arriving late starts over and cannot complete without the first fragment.
  w.feed(frameBytes("ip4Frag1"));
  w.feed(frameBytes("ip4FragLast"));
  assert.equal(w.got.length, 0);
});

Deno.test("reasm: memory is bounded: the oldest datagram in progress is evicted", () => {
  const slab = 60 + 65535;
  const w = world({ budgetBytes: 3 * slab });
  assert.equal(w.reasm.maxSlabs, 3);
  const f0 = frameBytes("ip4Frag0");
  for (let id = 1; id <= 5; id++) w.feed(withIdent4(f0, id));
  assert.equal(w.reasm.inProgress, 3);
  assert.equal(w.counters.dropReasmEvicted, 2);
  assert.ok(w.reasm.memory <= 3 * slab);
  // The newest three are intact: ident 5 completes; ident 1 was evicted and does not.
  for (const id of [5, 1]) {
    w.feed(withIdent4(frameBytes("ip4Frag1"), id));
    w.feed(withIdent4(frameBytes("ip4FragLast"), id));
  }
  assert.equal(w.got.length, 1);
  assertDatagram(w.got[0]);
  // 1000 more partial datagrams: memory never grows past the budget.
  for (let id = 100; id < 1100; id++) w.feed(withIdent4(f0, id));
  assert.equal(w.reasm.inProgress, 3);
  assert.ok(w.reasm.memory <= 3 * slab);
});

Deno.test("reasm: a datagram past the size limit is dropped", () => {
  const w = world({ maxDatagram: 2000 });
  w.feed(frameBytes("ip4Frag0"));
  w.feed(frameBytes("ip4Frag1")); // ends at 2960 > 2000
  assert.equal(w.counters.dropReasmTooBig, 1);
  assert.equal(w.reasm.inProgress, 0);
  // The protocol limit: a fragment ending past 65515 bytes of IPv4 payload.
  const w2 = world();
  const f = frameBytes("ip4Frag1").slice();
  setU16(f, 14 + 6, 0x2000 | (65000 >> 3));
  w2.feed(withIdent4(f, u16(f, 14 + 4)));
  assert.equal(w2.counters.dropReasmTooBig, 1);
});

Deno.test("reasm: malformed fragments are dropped and counted", () => {
  const w = world();
  const f = frameBytes("ip6Frag0").slice();
  // A non-last fragment whose length is not a multiple of 8.
  setU16(f, 14 + 4, 8 + 1447);
  w.feed(f.subarray(0, 14 + 48 + 1447));
  assert.equal(w.counters.dropFragment, 1);
  assert.equal(w.reasm.inProgress, 0);
});

Deno.test("reasm: an IPv6 atomic fragment (offset 0, M clear) is delivered as is", () => {
  const w = world();
  // The last fragment's header on a complete small datagram: offset 0, M = 0.
  const first = frameBytes("ip6Frag0");
  const n = 8 + 16;
  const f = new Uint8Array(14 + 48 + n);
  f.set(first.subarray(0, 14 + 48 + 8));
  setU16(f, 14 + 4, 8 + n);
  setU16(f, 14 + 40 + 2, 0);
  setU16(f, 14 + 48 + 4, n);
  f.set(PATTERN.subarray(0, 16), 14 + 56);
  setU16(f, 14 + 48 + 6, 0); // checksum recomputed below
  let s = 17 + n;
  for (let i = 0; i < 32; i += 2) s += u16(f, 14 + 8 + i);
  for (let i = 0; i < n; i += 2) s += u16(f, 14 + 48 + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  setU16(f, 14 + 48 + 6, ~s & 0xffff);
  w.feed(f);
  assert.equal(w.got.length, 1);
  assert.ok(w.got[0].csumOk);
  assert.equal(w.counters.reasmDone, 0, "not a reassembly");
});

/** Frames written by the Fragmenter, captured. */
class Capture {
  frames: Uint8Array[] = [];
  constructor(readonly vnetLen: 0 | 10, readonly offloaded: boolean) {}
  write(b: Uint8Array, len: number): boolean {
    this.frames.push(b.slice(this.vnetLen, len));
    return true;
  }
}

for (const vnetLen of [10, 0] as const) {
  Deno.test(`frag: 65507-byte datagrams fragmented to MTU 1500 reassemble intact (vnet ${vnetLen})`, () => {
    const plan = defaultNetPlan();
    for (const family of [4, 6] as const) {
      for (const size of [1, 1472, 1473, 3000, 16385, family === 4 ? 65507 : 65527]) {
        const cap = new Capture(vnetLen, vnetLen > 0);
        const counters = new Counters();
        const tx = new Tx(cap, plan.mac, 1500, counters);
        tx.guestMac.set([2, 0, 0, 0, 0, 1]);
        const frag = new Fragmenter(tx, plan.mac, counters);
        const l4 = tx.l4Offset(family);
        const data = new Uint8Array(size);
        for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
        tx.buf.set(data, l4 + 8);
        setU16(tx.buf, l4, 5353);
        setU16(tx.buf, l4 + 2, 40000);
        setU16(tx.buf, l4 + 4, 8 + size);
        const src = family === 4 ? new Uint8Array([192, 0, 2, 2]) : plan.gateway6;
        const dst = family === 4 ? plan.guest4 : plan.guest6;
        assert.ok(frag.send(family, src, dst, 17, 8 + size));
        const w = world();
        for (const f of cap.frames) {
          assert.ok(f.length <= 14 + 1500, `frame of ${f.length} bytes fits the MTU`);
          w.feed(f);
        }
        const fits = 8 + size <= 1500 - (family === 4 ? 20 : 40);
        assert.equal(cap.frames.length > 1, !fits, `${size}: fragmented iff larger than MTU`);
        if (fits) continue; // a plain frame: its checksum is partial with the vnet header
        assert.equal(w.got.length, 1, `IPv${family} ${size} bytes reassembled`);
        assert.ok(w.got[0].csumOk, "full UDP checksum");
        assert.deepEqual(w.got[0].l4.subarray(8), data);
        assert.equal(counters.fragsOut, cap.frames.length);
      }
    }
  });
}

Deno.test("frag: IPv6 fragments carry one identification, offsets in 8-byte units", () => {
  const plan = defaultNetPlan();
  const cap = new Capture(0, false);
  const counters = new Counters();
  const tx = new Tx(cap, plan.mac, 1280, counters);
  const frag = new Fragmenter(tx, plan.mac, counters);
  const l4 = tx.l4Offset(6);
  setU16(tx.buf, l4 + 4, 8 + 5000);
  assert.ok(frag.send(6, plan.gateway6, plan.guest6, 17, 8 + 5000));
  const idents = new Set(cap.frames.map((f) => u16(f, 14 + 44) * 65536 + u16(f, 14 + 46)));
  assert.equal(idents.size, 1);
  let expect = 0;
  for (const [i, f] of cap.frames.entries()) {
    assert.equal(f[14 + 6], 44, "Fragment header follows the fixed header");
    const fo = u16(f, 14 + 42);
    assert.equal(fo & 0xfff8, expect);
    assert.equal(fo & 1, i < cap.frames.length - 1 ? 1 : 0, "M set on all but the last");
    expect += u16(f, 14 + 4) - 8;
  }
  assert.equal(expect, 5008);
});

Deno.test("reasm: an IPv6 first fragment without the upper-layer header is dropped (RFC 7112)", () => {
  const w = world();
  const base = frameBytes("ip6Frag0").subarray(0, 14 + 40); // Ethernet + IPv6 header (addresses)
  const udpLen = 8 + 16;
  // First fragment: Fragment header (next: Destination Options, offset 0, M) and an 8-byte
  // Destination Options header (next: UDP) — the UDP header itself is in the second fragment.
  const f1 = new Uint8Array(14 + 40 + 8 + 8);
  f1.set(base);
  setU16(f1, 14 + 4, 16);
  f1[14 + 6] = 44;
  f1.set([60, 0, 0, 1, 0, 0, 0x12, 0x34], 14 + 40); // offset 0, M = 1, ident 0x1234
  f1.set([17, 0, 1, 4, 0, 0, 0, 0], 14 + 48); // PadN option fills the header
  // Second (last) fragment: offset 8, the UDP datagram.
  const f2 = new Uint8Array(14 + 40 + 8 + udpLen);
  f2.set(base);
  setU16(f2, 14 + 4, 8 + udpLen);
  f2[14 + 6] = 44;
  f2.set([60, 0, 0, 8, 0, 0, 0x12, 0x34], 14 + 40);
  const u = 14 + 48;
  setU16(f2, u, 40003);
  setU16(f2, u + 2, 7003);
  setU16(f2, u + 4, udpLen);
  f2.set(PATTERN.subarray(0, 16), u + 8);
  let s = 17 + udpLen;
  for (let i = 0; i < 32; i += 2) s += u16(f2, 14 + 8 + i);
  for (let i = 0; i < udpLen; i += 2) s += u16(f2, u + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  setU16(f2, u + 6, ~s & 0xffff);
  w.feed(f1);
  w.feed(f2);
  assert.equal(w.got.length, 0, "a datagram whose first fragment lacked its UDP header arrived");
  assert.ok(w.counters.dropFragment > 0);
});
