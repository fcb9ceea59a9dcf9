// Every parse on truncated, mutated and random input: it must never throw, must return false
// below its minimum length, and when it returns true every offset/length it exposes must lie
// inside the bytes it was given (so no caller can be led to read past a packet).

import assert from "node:assert/strict";
import { frameBytes, type FrameName, frames } from "../fixtures/frames.ts";
import { EthernetView } from "../../stack/wire/ethernet.ts";
import { ArpView } from "../../stack/wire/arp.ts";
import { Ipv4View } from "../../stack/wire/ipv4.ts";
import { Ipv6View } from "../../stack/wire/ipv6.ts";
import { Icmpv4View } from "../../stack/wire/icmpv4.ts";
import { Icmpv6View } from "../../stack/wire/icmpv6.ts";
import { NdpOptionIter, NdpView } from "../../stack/wire/ndp.ts";
import { UdpView } from "../../stack/wire/udp.ts";
import { TcpOptions, TcpView } from "../../stack/wire/tcp.ts";
import { VnetView } from "../../stack/wire/vnet.ts";

const eth = new EthernetView();
const arp = new ArpView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const icmp4 = new Icmpv4View();
const icmp6 = new Icmpv6View();
const ndp = new NdpView();
const it = new NdpOptionIter();
const udp = new UdpView();
const tcp = new TcpView();
const opts = new TcpOptions();
const vnet = new VnetView();

function within(what: string, o: number, n: number, off: number, len: number) {
  assert.ok(
    off >= o && len >= 0 && off + len <= o + n,
    `${what}: [${off}, +${len}) outside [${o}, +${n})`,
  );
}

/** [name, minimum length, parse-and-check]; the check runs only when parse returned true. */
const layers: [string, number, (b: Uint8Array, o: number, n: number) => boolean][] = [
  ["ethernet", 14, (b, o, n) => {
    if (!eth.parse(b, o, n)) return false;
    within("eth payload", o, n, eth.payloadOffset, eth.payloadLen);
    return true;
  }],
  ["arp", 28, (b, o, n) => {
    if (!arp.parse(b, o, n)) return false;
    within("arp tpa", o, n, arp.tpaOffset, 4);
    return true;
  }],
  ["ipv4", 20, (b, o, n) => {
    if (!ip4.parse(b, o, n)) return false;
    assert.ok(ip4.headerLen >= 20);
    within("ipv4 payload", o, n, ip4.payloadOffset, ip4.payloadLen);
    ip4.verifyChecksum();
    return true;
  }],
  ["ipv6", 40, (b, o, n) => {
    if (!ip6.parse(b, o, n)) return false;
    within("ipv6 upper layer", o, n, ip6.l4Offset, ip6.l4Len);
    assert.ok(ip6.l4Offset >= o + 40);
    if (ip6.fragHeaderOffset >= 0) within("fragment header", o, n, ip6.fragHeaderOffset, 8);
    return true;
  }],
  ["icmpv4", 8, (b, o, n) => {
    if (!icmp4.parse(b, o, n)) return false;
    within("icmp data", o, n, icmp4.dataOffset, icmp4.dataLen);
    icmp4.verifyChecksum();
    return true;
  }],
  ["icmpv6", 8, (b, o, n) => {
    if (!icmp6.parse(b, o, n)) return false;
    within("icmpv6 data", o, n, icmp6.dataOffset, icmp6.dataLen);
    return true;
  }],
  ["ndp", 8, (b, o, n) => {
    if (!ndp.parse(b, o, n)) return false;
    within("nd options", o, n, ndp.optionsOffset, ndp.optionsLen);
    if (ndp.srcLinkAddrOffset >= 0) within("sll", o, n, ndp.srcLinkAddrOffset, 6);
    if (ndp.tgtLinkAddrOffset >= 0) within("tll", o, n, ndp.tgtLinkAddrOffset, 6);
    ndp.options(it);
    for (let i = 0; it.next(); i++) {
      assert.ok(i < n, "option walk is bounded");
      within("option", o, n, it.offset, it.len);
    }
    assert.ok(!it.error);
    return true;
  }],
  ["udp", 8, (b, o, n) => {
    if (!udp.parse(b, o, n)) return false;
    within("udp payload", o, n, udp.payloadOffset, udp.payloadLen);
    return true;
  }],
  ["tcp", 20, (b, o, n) => {
    if (!tcp.parse(b, o, n)) return false;
    within("tcp options", o, n, tcp.optionsOffset, tcp.optionsLen);
    within("tcp payload", o, n, tcp.payloadOffset, tcp.payloadLen);
    if (tcp.parseOptions(opts)) assert.ok(opts.sackCount <= 4);
    return true;
  }],
  ["tcp options alone", 0, (b, o, n) => opts.parse(b, o, n)],
  ["vnet", 10, (b, o, n) => vnet.parse(b, o, n)],
];

function runAll(b: Uint8Array, o: number, n: number) {
  for (const [name, min, check] of layers) {
    let r: boolean;
    try {
      r = check(b, o, n);
    } catch (e) {
      throw new Error(`${name} at ${o}+${n}: ${e instanceof Error ? e.message : e}`);
    }
    if (n < min) assert.equal(r, false, `${name} accepted ${n} < ${min} bytes`);
  }
}

/** Offsets where the layers of a frame start: 0 (Ethernet), 14 (IP), the upper layer. */
function starts(b: Uint8Array): number[] {
  const s = [0, 14];
  if (ip4.parse(b, 14, b.length - 14)) s.push(ip4.payloadOffset);
  if (ip6.parse(b, 14, b.length - 14)) s.push(ip6.l4Offset);
  return s;
}

Deno.test("truncated: every prefix of every kernel frame, at every layer", () => {
  for (const name of Object.keys(frames) as FrameName[]) {
    const full = frameBytes(name);
    for (const s of starts(full)) {
      for (let n = 0; n <= full.length - s; n++) {
        runAll(full, s, n); // n shorter than the bytes that follow
        runAll(full.slice(0, s + n), s, n); // and a buffer that really ends there
      }
    }
  }
});

Deno.test("truncated: out-of-range offsets and lengths are refused", () => {
  const b = frameBytes("tcp4Syn");
  for (const [name, , check] of layers) {
    if (name === "tcp options alone") continue;
    assert.equal(check(b, -1, 40), false, name);
    assert.equal(check(b, 0, b.length + 1), false, name);
    assert.equal(check(b, b.length, 60), false, name);
  }
});

/** Seeded xorshift. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

Deno.test("truncated: mutated kernel frames and random bytes", () => {
  const r = rng(42);
  const names = Object.keys(frames) as FrameName[];
  for (let t = 0; t < 4000; t++) {
    const b = frameBytes(names[r() % names.length]);
    const flips = 1 + (r() % 6);
    // Mutate header bytes (the first 80) where lengths and next-header values live.
    for (let i = 0; i < flips; i++) b[r() % Math.min(80, b.length)] = r() & 0xff;
    for (const s of starts(b)) runAll(b, s, b.length - s);
  }
  for (let t = 0; t < 4000; t++) {
    const b = new Uint8Array(r() % 120);
    for (let i = 0; i < b.length; i++) b[i] = r() & 0xff;
    if (b.length > 0 && t & 1) b[0] = (t & 2) ? 0x45 : 0x60; // look like IPv4/IPv6 sometimes
    runAll(b, 0, b.length);
  }
});

Deno.test("truncated: IPv6 extension chains: limits and ordering", () => {
  // 40-byte header, then `k` destination-options headers of 8 bytes, then No Next Header.
  const chain = (k: number, first = 60) => {
    const b = new Uint8Array(40 + 8 * k);
    b[0] = 0x60;
    b[4] = (8 * k) >> 8;
    b[5] = (8 * k) & 0xff;
    b[6] = k ? first : 59;
    for (let i = 0; i < k; i++) b[40 + 8 * i] = i === k - 1 ? 59 : 60;
    return b;
  };
  let b = chain(3);
  assert.ok(ip6.parse(b, 0, b.length));
  assert.equal(ip6.extCount, 3);
  assert.equal(ip6.protocol, 59);
  assert.equal(ip6.l4Len, 0);
  b = chain(12);
  assert.ok(ip6.parse(b, 0, b.length), "12 extension headers are accepted");
  b = chain(13);
  assert.ok(!ip6.parse(b, 0, b.length), "more than 12 are refused");
  // Hop-by-hop anywhere but first is malformed (RFC 8200 §4.1).
  b = chain(2);
  b[40] = 0;
  assert.ok(!ip6.parse(b, 0, b.length));
  b = chain(2, 0);
  assert.ok(ip6.parse(b, 0, b.length), "hop-by-hop first is fine");
  // An extension length running past the payload.
  b = chain(2);
  b[41] = 1;
  assert.ok(!ip6.parse(b, 0, b.length));
  // Two fragment headers.
  b = chain(2, 44);
  b[40] = 44;
  b[48] = 59;
  assert.ok(!ip6.parse(b, 0, b.length));
});
