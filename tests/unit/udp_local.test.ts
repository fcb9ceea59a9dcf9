// The local-service API of the UDP transport (for DNS, DHCP and the like), in-process with a
// capture tap: services get datagrams before routing and without the policy, exact addresses
// win over wildcards, replies swap addresses and ports and carry a valid checksum, large
// replies are fragmented, unregistering works, bad checksums never reach a service.

import assert from "node:assert/strict";
import { Stack } from "../../stack/mod.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { Poller } from "../../ffi/poller.ts";
import type { PacketMeta } from "../../stack/ip/meta.ts";
import { setU16, u16 } from "../../stack/wire/bytes.ts";
import { finish, pseudoSum, sum } from "../../stack/wire/checksum.ts";
import { Ip } from "../../stack/ip/ip.ts";
import { Reassembler } from "../../stack/ip/reasm.ts";
import { Counters } from "../../stack/base/counters.ts";
import { TimerWheel } from "../../stack/flow/timers.ts";

const plan = defaultNetPlan();
const GUEST_MAC = [2, 0, 0, 0, 0, 0x64];

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

/** An Ethernet + IPv4 + UDP frame from the guest (full checksums). */
function frame4(dst: Uint8Array, srcPort: number, dstPort: number, payload: Uint8Array) {
  const f = new Uint8Array(14 + 20 + 8 + payload.length);
  f.set(plan.mac, 0);
  f.set(GUEST_MAC, 6);
  setU16(f, 12, 0x0800);
  const ip = 14;
  f[ip] = 0x45;
  setU16(f, ip + 2, 28 + payload.length);
  f[ip + 8] = 64;
  f[ip + 9] = 17;
  f.set(plan.guest4, ip + 12);
  f.set(dst, ip + 16);
  setU16(f, ip + 10, finish(sum(f, ip, 20)));
  const u = ip + 20;
  setU16(f, u, srcPort);
  setU16(f, u + 2, dstPort);
  setU16(f, u + 4, 8 + payload.length);
  f.set(payload, u + 8);
  setU16(
    f,
    u + 6,
    finish(
      sum(f, u, 8 + payload.length, pseudoSum(f, ip + 12, ip + 16, 4, 17, 8 + payload.length)),
    ) || 0xffff,
  );
  return f;
}

function world() {
  const tap = new Tap();
  const poller = new Poller();
  let asked = 0;
  const stack = new Stack({
    plan,
    mtu: 1500,
    tap,
    poller,
    policy: () => {
      asked++;
      return false;
    },
    log: () => {},
    quiet: true,
    connectTimeoutMs: 1000,
  });
  return {
    tap,
    stack,
    asked: () => asked,
    [Symbol.dispose]() {
      stack.close();
      poller.close();
    },
  };
}

Deno.test("udp local services: before routing, no policy, exact before any, reply swaps", () => {
  using w = world();
  const calls: string[] = [];
  const udp = w.stack.udp;
  udp.addLocalService(4, null, 53, () => calls.push("any"));
  udp.addLocalService(4, plan.dns4, 53, (m: PacketMeta, off: number, len: number) => {
    calls.push(`dns ${new TextDecoder().decode(m.b.subarray(off, off + len))}`);
    const o = udp.payloadOffset(4);
    w.stack.tx.buf.set(new TextEncoder().encode("answer"), o);
    assert.ok(udp.reply(m, w.stack.tx.buf, o, 6));
  });
  assert.throws(() => udp.addLocalService(4, plan.dns4, 53, () => {}), /registered already/);
  const q = new TextEncoder().encode("query");
  w.stack.input(frame4(plan.dns4, 40000, 53, q), 14 + 28 + 5);
  w.stack.input(frame4(plan.gateway4, 40001, 53, q), 14 + 28 + 5);
  assert.deepEqual(calls, ["dns query", "any"]);
  assert.equal(w.asked(), 0, "the policy is not asked for local services");
  const r = w.tap.frames[0];
  assert.deepEqual(r.subarray(14 + 12, 14 + 16), plan.dns4, "from the address asked");
  assert.deepEqual(r.subarray(14 + 16, 14 + 20), plan.guest4);
  assert.deepEqual([u16(r, 34), u16(r, 36), u16(r, 38)], [53, 40000, 14]);
  assert.equal(new TextDecoder().decode(r.subarray(42, 48)), "answer");
  assert.equal(finish(sum(r, 34, 14, pseudoSum(r, 26, 30, 4, 17, 14))), 0, "UDP checksum");
});

Deno.test("udp local services: unregister, bad checksum never delivered, routing asks policy", () => {
  using w = world();
  let n = 0;
  const off = w.stack.udp.addLocalService(4, null, 67, () => n++);
  const f = frame4(new Uint8Array([255, 255, 255, 255]), 68, 67, new Uint8Array(300));
  w.stack.input(f, f.length);
  const bad = f.slice();
  bad[bad.length - 1] ^= 1;
  w.stack.input(bad, bad.length);
  assert.equal(n, 1);
  assert.equal(w.stack.counters.dropBadL4Checksum, 1);
  off();
  w.stack.input(f, f.length);
  assert.equal(n, 1, "unregistered");
  // Not a service any more: routing; 255.255.255.255 is not a trackable flow.
  assert.equal(w.stack.udp.stats.notRoutable, 1);
  const g = frame4(new Uint8Array([192, 0, 2, 9]), 5000, 7, new Uint8Array(10));
  w.stack.input(g, g.length);
  assert.equal(w.asked(), 1);
  assert.equal(w.stack.udp.stats.policyRefused, 1);
  assert.equal(w.stack.counters.dropPolicy, 1);
});

Deno.test("udp local services: sendTo fragments a reply larger than the MTU", () => {
  using w = world();
  const data = new Uint8Array(4000).map((_, i) => i * 13);
  assert.ok(w.stack.udp.sendTo(4, plan.dns4, 53, plan.guest4, 40000, data));
  assert.equal(w.tap.frames.length, 3, "4008 bytes at MTU 1500: three fragments");
  // Put them back together with the stack's own reassembly: the datagram is intact.
  const counters = new Counters();
  const got: Uint8Array[] = [];
  const ip = new Ip(counters, {
    udp: { input: (m: PacketMeta) => got.push(m.b.slice(m.l4Off + 8, m.l4Off + m.l4Len)) },
  });
  ip.reasm = new Reassembler(
    new TimerWheel(0),
    counters,
    (f, b, o, n) => ip.reassembled(f, b, o, n),
  );
  for (const f of w.tap.frames) ip.input4(f, 14, f.length - 14);
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], data);
  assert.equal(w.stack.udp.sendTo(4, plan.dns4, 53, plan.guest4, 1, new Uint8Array(65508)), false);
});
