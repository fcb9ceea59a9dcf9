// The transports' side of stack/flow/outbound.ts, in-process with a capture tap and real host
// sockets on this namespace's loopback only:
//
//  - UDP: a redirect (what a -R forward registers) sends the flow to its target, also across
//    families, and the guest hears the replies, and the ICMP errors, from the address and port
//    it used; a routed flow's socket binds the --outbound-addr; an "unreachable" redirect
//    answers ICMP network unreachable;
//  - TCP: an "unreachable" verdict answers the SYN with ICMP network unreachable (IPv4 code 0,
//    IPv6 code 0) quoting the SYN's IP header and first 8 TCP bytes, and opens nothing;
//  - addHostLoopback: which flows it takes, and that everything else still asks the policy.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { Stack } from "../../stack/mod.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { Poller } from "../../ffi/poller.ts";
import { formatIp, parseIp, setU16, u16, u32 } from "../../stack/wire/bytes.ts";
import { finish, pseudoSum, sum } from "../../stack/wire/checksum.ts";
import { addHostLoopback, FlowVerdict, Outbound } from "../../stack/flow/outbound.ts";

const plan = defaultNetPlan();
const GUEST_MAC = [2, 0, 0, 0, 0, 0x64];
const ip = (s: string) => parseIp(s) as Uint8Array;

class Tap {
  frames: Uint8Array[] = [];
  readonly vnetLen = 0;
  readonly offloaded = false;
  read(): number {
    return 0;
  }
  write(b: Uint8Array, len: number): boolean {
    this.frames.push(b.slice(0, len));
    return true;
  }
}

/** Ethernet + IP + `l4` from the guest to dst, with the L4 checksum (UDP 17 / TCP 6) filled. */
function frame(dst: Uint8Array, proto: 6 | 17, l4: Uint8Array): Uint8Array {
  const v4 = dst.length === 4;
  const hl = v4 ? 20 : 40;
  const f = new Uint8Array(14 + hl + l4.length);
  f.set(plan.mac, 0);
  f.set(GUEST_MAC, 6);
  setU16(f, 12, v4 ? 0x0800 : 0x86dd);
  const o = 14;
  const src = v4 ? plan.guest4 : plan.guest6;
  if (v4) {
    f[o] = 0x45;
    setU16(f, o + 2, 20 + l4.length);
    f[o + 8] = 64;
    f[o + 9] = proto;
    f.set(src, o + 12);
    f.set(dst, o + 16);
    setU16(f, o + 10, finish(sum(f, o, 20)));
  } else {
    f[o] = 0x60;
    setU16(f, o + 4, l4.length);
    f[o + 6] = proto;
    f[o + 7] = 64;
    f.set(src, o + 8);
    f.set(dst, o + 24);
  }
  const l = o + hl;
  f.set(l4, l);
  const c = l + (proto === 17 ? 6 : 16);
  setU16(f, c, 0);
  const a = v4 ? 4 : 16;
  const ps = pseudoSum(f, v4 ? o + 12 : o + 8, v4 ? o + 16 : o + 24, a, proto, l4.length);
  setU16(f, c, finish(sum(f, l, l4.length, ps)) || (proto === 17 ? 0xffff : 0));
  return f;
}

function udp(srcPort: number, dstPort: number, payload: string): Uint8Array {
  const p = new TextEncoder().encode(payload);
  const u = new Uint8Array(8 + p.length);
  setU16(u, 0, srcPort);
  setU16(u, 2, dstPort);
  setU16(u, 4, u.length);
  u.set(p, 8);
  return u;
}

function syn(srcPort: number, dstPort: number, seq: number): Uint8Array {
  const t = new Uint8Array(20);
  setU16(t, 0, srcPort);
  setU16(t, 2, dstPort);
  new DataView(t.buffer).setUint32(4, seq);
  t[12] = 5 << 4;
  t[13] = 0x02; // SYN
  setU16(t, 14, 65535);
  return t;
}

/** A frame the stack sent, decoded enough for the assertions. */
function decode(f: Uint8Array) {
  const v4 = u16(f, 12) === 0x0800;
  const hl = v4 ? 20 : 40;
  const o = 14;
  const src = v4 ? f.slice(o + 12, o + 16) : f.slice(o + 8, o + 24);
  const dst = v4 ? f.slice(o + 16, o + 20) : f.slice(o + 24, o + 40);
  const proto = v4 ? f[o + 9] : f[o + 6];
  const l4 = f.subarray(o + hl);
  return { v4, src: formatIp(src), dst, proto, l4 };
}

function world(opts: { outbound4?: Uint8Array; hostLoopback?: "redirect" | "unreachable" } = {}) {
  const tap = new Tap();
  const poller = new Poller();
  const asked: string[] = [];
  const stack = new Stack({
    plan,
    mtu: 1500,
    tap,
    poller,
    policy: (f, proto, dst) => {
      asked.push(`${f}/${proto}/${dst.join(".")}`);
      return true;
    },
    log: () => {},
    quiet: true,
    connectTimeoutMs: 1000,
    outbound4: opts.outbound4 ?? null,
    hostLoopback: opts.hostLoopback,
  });
  return {
    tap,
    stack,
    asked,
    send(f: Uint8Array) {
      stack.input(f, f.length);
      stack.udp.flush(); // the end of a tap batch (drainTap): gathered datagrams go out
    },
    /** Runs the event loop until `until()` holds (bounded). */
    async pump(until: () => boolean, ms = 3000) {
      const deadline = performance.now() + ms;
      const run = poller.run(() => {
        if (until() || performance.now() > deadline) poller.stop();
        return 5;
      });
      await run;
    },
    [Symbol.dispose]() {
      stack.close();
      poller.close();
    },
  };
}

/** A UDP echo server on 127.0.0.1 (this namespace's loopback): "echo " + datagram. */
async function echoServer() {
  const s = dgram.createSocket("udp4");
  const peers: string[] = [];
  s.on("message", (msg, r) => {
    peers.push(r.address);
    s.send(`echo ${msg}`, r.port, r.address);
  });
  await new Promise<void>((res) => s.bind(0, "127.0.0.1", res));
  return { port: s.address().port, peers, close: () => s.close() };
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((res) => s.bind(0, "127.0.0.1", res));
  const p = s.address().port;
  await new Promise<void>((res) => s.close(() => res()));
  return p;
}

Deno.test("outbound udp: a redirect's flow reaches its target; replies come from the guest's dst", async () => {
  using w = world();
  const echo = await echoServer();
  try {
    const lo = ip("127.0.0.1");
    const fwd4 = ip("10.0.2.50"), fwd6 = ip("fd00::50");
    // What a -R forward registers: one port, v4 and v6, both to the v4 loopback.
    for (const addr of [fwd4, fwd6]) {
      w.stack.outbound.addRedirect({
        proto: 17,
        family: addr.length === 4 ? 4 : 6,
        addr,
        port: 5000,
        target: () => ({ family: 4, addr: lo, port: echo.port }),
      });
    }
    w.send(frame(fwd4, 17, udp(40000, 5000, "v4")));
    w.send(frame(fwd6, 17, udp(40001, 5000, "v6")));
    const replies = () => w.tap.frames.map(decode).filter((d) => d.proto === 17);
    await w.pump(() => replies().length >= 2);
    const got = replies().map((d) =>
      `${d.src}:${u16(d.l4, 0)}>${u16(d.l4, 2)} ${
        new TextDecoder().decode(d.l4.subarray(8, u16(d.l4, 4)))
      }`
    ).sort();
    assert.deepEqual(got, [
      "10.0.2.50:5000>40000 echo v4",
      "fd00::50:5000>40001 echo v6",
    ]);
    assert.deepEqual(echo.peers, ["127.0.0.1", "127.0.0.1"]);
    assert.equal(w.asked.length, 0, "a redirect is not the firewall's business");
    assert.equal(w.stack.udp.stats.redirected, 2);
  } finally {
    echo.close();
  }
});

Deno.test("outbound udp: a redirected flow's ICMP errors come from the guest's destination", async () => {
  using w = world();
  const port = await closedPort();
  const fwd = ip("10.0.2.50");
  w.stack.outbound.addRedirect({
    proto: 17,
    family: 4,
    addr: fwd,
    port: 5000,
    target: () => ({ family: 4, addr: ip("127.0.0.1"), port }),
  });
  w.send(frame(fwd, 17, udp(40000, 5000, "anyone?")));
  const icmp = () => w.tap.frames.map(decode).filter((d) => d.proto === 1);
  await w.pump(() => icmp().length >= 1);
  const e = icmp()[0];
  assert.ok(e, "an ICMP error reached the guest");
  assert.equal(e.src, "10.0.2.50", "from where the guest sent, not the host's loopback");
  assert.deepEqual([e.l4[0], e.l4[1]], [3, 3], "port unreachable");
  // The quote names the guest's flow: its ports as the guest sent them.
  assert.deepEqual([u16(e.l4, 8 + 20), u16(e.l4, 8 + 22)], [40000, 5000]);
});

Deno.test("outbound udp: routed flows bind --outbound-addr; unreachable redirects answer ICMP", async () => {
  using w = world({ outbound4: ip("127.0.0.2") });
  const echo = await echoServer();
  try {
    w.send(frame(ip("127.0.0.1"), 17, udp(40000, echo.port, "hi")));
    await w.pump(() => echo.peers.length >= 1);
    assert.deepEqual(echo.peers, ["127.0.0.2"], "bound before connect to the outbound address");
    assert.deepEqual(w.asked, ["4/17/127.0.0.1"]);

    const gone = ip("10.0.2.60");
    w.stack.outbound.addRedirect({
      proto: 17,
      family: 4,
      addr: gone,
      port: 0,
      target: () => null,
      unreachable: true,
    });
    w.tap.frames.length = 0;
    w.send(frame(gone, 17, udp(40002, 53, "x")));
    const [e] = w.tap.frames.map(decode);
    assert.equal(e?.proto, 1);
    assert.equal(e.src, "10.0.2.60");
    assert.deepEqual([e.l4[0], e.l4[1]], [3, 0], "network unreachable");
    assert.deepEqual([u16(e.l4, 28), u16(e.l4, 30)], [40002, 53]);
    assert.equal(w.stack.udp.stats.unreachable, 1);
    assert.equal(w.stack.udp.flows.size, 1, "no flow for the unreachable one");
  } finally {
    echo.close();
  }
});

Deno.test("outbound tcp: an unreachable verdict answers the SYN with ICMP net unreachable", () => {
  using w = world({ hostLoopback: "unreachable" });
  for (const gw of [plan.gateway4, plan.gateway6]) {
    w.tap.frames.length = 0;
    const seq = 0x12345678;
    const f = frame(gw, 6, syn(41000, 8080, seq));
    w.send(f);
    assert.equal(w.tap.frames.length, 1);
    const e = decode(w.tap.frames[0]);
    const v4 = gw.length === 4;
    assert.equal(e.proto, v4 ? 1 : 58, "ICMP, not a RST");
    assert.deepEqual(e.dst, v4 ? plan.guest4 : plan.guest6);
    assert.deepEqual([e.l4[0], e.l4[1]], v4 ? [3, 0] : [1, 0]);
    // The quote: the SYN's IP header and the first 8 bytes of TCP (ports, sequence number).
    const hl = v4 ? 20 : 40;
    assert.equal(e.l4.length, 8 + hl + 8);
    assert.deepEqual(e.l4.subarray(8, 8 + hl + 8), f.subarray(14, 14 + hl + 8));
    assert.equal(u32(e.l4, 8 + hl + 4), seq);
    // The checksum is valid (ICMPv6 with its pseudo header).
    const ps = v4 ? 0 : pseudoSum(w.tap.frames[0], 14 + 8, 14 + 24, 16, 58, e.l4.length);
    assert.equal(finish(sum(e.l4, 0, e.l4.length, ps)), 0);
  }
  assert.equal(w.stack.tcp.stats.unreachable, 2);
  assert.equal(w.stack.tcp.table.size, 0, "nothing was opened");
  assert.equal(w.asked.length, 0);
});

Deno.test("outbound: addHostLoopback takes TCP and UDP to the gateway, every port, nothing else", () => {
  const asked: string[] = [];
  const out = new Outbound((f, proto, dst, port) => {
    asked.push(`${f}/${proto}/${dst.join(".")}/${port}`);
    return false;
  });
  const undo = addHostLoopback(out, plan.gateway4, plan.gateway6, "redirect");
  assert.equal(out.size, 4);
  for (const proto of [6, 17] as const) {
    assert.equal(out.decide(proto, 4, plan.gateway4, 8080), FlowVerdict.Redirected);
    assert.deepEqual([out.target?.family, [...out.target!.addr], out.target?.port], [
      4,
      [127, 0, 0, 1],
      8080,
    ]);
    assert.equal(out.decide(proto, 6, plan.gateway6, 53), FlowVerdict.Redirected);
    assert.equal(out.target?.family, 6);
    assert.deepEqual([...out.target!.addr], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.equal(out.target?.port, 53);
  }
  assert.equal(out.decide(6, 4, plan.dns4, 8080), FlowVerdict.Refused);
  assert.equal(out.decide(17, 4, ip("192.0.2.2"), 7), FlowVerdict.Refused);
  assert.deepEqual(asked, ["4/6/10.0.2.3/8080", "4/17/192.0.2.2/7"]);
  undo();
  assert.equal(out.size, 0);
  addHostLoopback(out, plan.gateway4, plan.gateway6, "unreachable");
  assert.equal(out.decide(6, 4, plan.gateway4, 1), FlowVerdict.Unreachable);
  assert.equal(out.decide(17, 6, plan.gateway6, 1), FlowVerdict.Unreachable);
});

Deno.test("outbound: a port's redirect beats the every-port one; each undo removes only its own", () => {
  const out = new Outbound(() => false);
  const to = (port: number) => () => ({ family: 4 as const, addr: ip("192.0.2.9"), port });
  const gw = plan.gateway4;
  const undoAll = out.addRedirect({ proto: 6, family: 4, addr: gw, port: 0, target: to(1) });
  const undoOne = out.addRedirect({ proto: 6, family: 4, addr: gw, port: 80, target: to(2) });
  // Same port and family, other address or protocol: not taken.
  out.addRedirect({ proto: 6, family: 4, addr: plan.dns4, port: 80, target: to(3) });
  assert.throws(() => out.addRedirect({ proto: 6, family: 4, addr: gw, port: 80, target: to(4) }));
  const via = (proto: 6 | 17, dst: Uint8Array, port: number) =>
    out.decide(proto, 4, dst, port) === FlowVerdict.Redirected ? out.target!.port : -1;
  assert.equal(via(6, gw, 80), 2);
  assert.equal(via(6, gw, 81), 1);
  assert.equal(via(6, plan.dns4, 80), 3);
  assert.equal(via(17, gw, 80), -1);
  assert.equal(via(6, ip("192.0.2.2"), 80), -1);
  undoOne();
  assert.equal(via(6, gw, 80), 1);
  undoOne(); // twice: nothing more
  assert.equal(via(6, plan.dns4, 80), 3);
  undoAll();
  assert.equal(via(6, gw, 80), -1);
  assert.equal(via(6, plan.dns4, 80), 3);
});
