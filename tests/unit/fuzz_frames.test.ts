// Malformed input: hundreds of thousands of random and mutated frames go through the frame
// handler. Nothing may throw out of it, no frame may hit an internal error, memory must not
// grow without bound, and the drop counters must say what was dropped.
//
// Seeds are real kernel frames (tests/fixtures/frames.ts). Mutations: truncation, bit flips,
// length fields set to random values, random option bytes, random vnet headers, pure noise.
// The generator is seeded, so a failure names a reproducible case. The seeds are re-addressed
// from the guest's own addresses to slirpd's, so they pass the source check and reach the
// transports (bad sources are still made by the mutations).

import assert from "node:assert/strict";
import { frameBytes, type FrameName, frames } from "../fixtures/frames.ts";
import { Stack } from "../../stack/mod.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { Poller } from "../../ffi/poller.ts";
import { setU16, u16 } from "../../stack/wire/bytes.ts";
import { finish, pseudoSum, sum } from "../../stack/wire/checksum.ts";

/** xorshift32: small, fast, reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

class CaptureTap {
  written = 0;
  lastLen = 0;
  constructor(readonly vnetLen: 0 | 10, readonly offloaded: boolean) {}
  read(): number {
    return 0;
  }
  write(_b: Uint8Array, len: number): boolean {
    this.written++;
    this.lastLen = len;
    return true;
  }
}

/**
 * The fixtures were captured between two test hosts; point each one at slirpd (its MAC, and
 * 10.0.2.2 / fd00::2 as destination, checksums redone) so the seeds reach ARP, NDP, echo and
 * the transports instead of being dropped as "not for us".
 */
function retarget(f: Uint8Array): Uint8Array {
  const b = new Uint8Array(f);
  const plan = defaultNetPlan();
  if ((b[0] & 1) === 0) b.set(plan.mac, 0);
  const type = u16(b, 12);
  if (type === 0x0806) b.set(plan.gateway4, 14 + 24);
  if (type === 0x0800) {
    const ip = 14;
    const hl = (b[ip] & 15) * 4;
    b.set(plan.gateway4, ip + 16);
    b.set(plan.guest4, ip + 12); // a source the guest may use (stack/ip/source.ts)
    setU16(b, ip + 10, 0);
    setU16(b, ip + 10, finish(sum(b, ip, hl)));
    const proto = b[ip + 9];
    const frag = u16(b, ip + 6) & 0x3fff;
    const l4 = ip + hl;
    const len = u16(b, ip + 2) - hl;
    const at = proto === 6 ? 16 : proto === 17 ? 6 : proto === 1 ? 2 : -1;
    if (frag === 0 && at >= 0 && l4 + len <= b.length) {
      setU16(b, l4 + at, 0);
      const pseudo = proto === 1 ? 0 : pseudoSum(b, ip + 12, ip + 16, 4, proto, len);
      setU16(b, l4 + at, finish(sum(b, l4, len, pseudo)));
    }
  }
  if (type === 0x86dd) {
    const ip = 14;
    const next = b[ip + 6];
    const len = u16(b, ip + 4);
    const multicastDst = b[ip + 24] === 0xff;
    if (!multicastDst) b.set(plan.gateway6, ip + 24);
    // A source the guest may use (stack/ip/source.ts); :: and link-local ones already are.
    const src = b.subarray(ip + 8, ip + 24);
    if (!src.every((x) => x === 0) && !(src[0] === 0xfe && (src[1] & 0xc0) === 0x80)) {
      b.set(plan.guest6, ip + 8);
    }
    if (next === 58 && b[ip + 40] === 135) b.set(plan.gateway6, ip + 48); // NS target
    const at = next === 6 ? 16 : next === 17 ? 6 : next === 58 ? 2 : -1;
    if (at >= 0 && ip + 40 + len <= b.length) {
      setU16(b, ip + 40 + at, 0);
      const pseudo = pseudoSum(b, ip + 8, ip + 24, 16, next, len);
      setU16(b, ip + 40 + at, finish(sum(b, ip + 40, len, pseudo)));
    }
  }
  return b;
}

const SEEDS: Uint8Array[] = (Object.keys(frames) as FrameName[]).map((n) =>
  retarget(frameBytes(n))
);

function mutate(r: () => number, out: Uint8Array, vnetLen: number): number {
  const kind = r() % 8;
  if (kind === 0) {
    // Pure noise of a random length.
    const n = r() % 1600;
    for (let i = 0; i < n; i++) out[i] = r() & 0xff;
    return n;
  }
  const seed = SEEDS[r() % SEEDS.length];
  out.fill(0, 0, vnetLen);
  if (vnetLen > 0 && (r() & 3) === 0) {
    for (let i = 0; i < vnetLen; i++) out[i] = r() & 0xff; // random virtio-net header
  }
  out.set(seed, vnetLen);
  let n = vnetLen + seed.length;
  switch (kind) {
    case 1: // truncate anywhere, including inside the headers
      n = r() % (n + 1);
      break;
    case 2: { // flip a few bits
      const flips = 1 + (r() % 4);
      for (let i = 0; i < flips; i++) out[vnetLen + (r() % seed.length)] ^= 1 << (r() & 7);
      break;
    }
    case 3: { // overwrite a 16-bit field in the first 80 bytes (lengths, offsets, ports)
      const at = vnetLen + 12 + (r() % Math.min(68, Math.max(1, seed.length - 14)));
      out[at] = r() & 0xff;
      out[at + 1] = r() & 0xff;
      break;
    }
    case 4: { // random bytes in the L4 header region (TCP options, ICMP/NDP options)
      const from = vnetLen + 14 + 20 + (r() % 40);
      for (let i = 0; i < 24 && from + i < n; i++) out[from + i] = r() & 0xff;
      break;
    }
    case 5: // grow with garbage after the packet (bad total length vs. frame length)
      for (let i = 0; i < 64; i++) out[n + i] = r() & 0xff;
      n += r() % 64;
      break;
    case 6: // the IP version/IHL byte or the IPv6 next header
      out[vnetLen + 14] = r() & 0xff;
      out[vnetLen + 20] = r() & 0xff;
      break;
    default: // the unmodified seed (the stack still answers or drops it sanely)
      break;
  }
  return n;
}

for (const vnetLen of [10, 0] as const) {
  Deno.test(`fuzz: 120k mutated frames (vnet header ${vnetLen}) never break the stack`, () => {
    const poller = new Poller();
    const tap = new CaptureTap(vnetLen, vnetLen > 0);
    const stack = new Stack({
      plan: defaultNetPlan(),
      mtu: 1500,
      tap,
      poller,
      policy: () => false, // flows are refused: the fuzz never reaches a real host socket
      log: () => {},
      quiet: true,
      connectTimeoutMs: 1000,
    });
    try {
      const r = rng(0x5eed + vnetLen);
      const buf = new Uint8Array(70_000);
      const heapBefore = Deno.memoryUsage().heapUsed;
      const N = 120_000;
      for (let i = 0; i < N; i++) {
        const n = mutate(r, buf, vnetLen);
        stack.input(buf, n);
        stack.tick();
      }
      const c = stack.counters;
      assert.deepEqual(c.framesIn, N);
      assert.deepEqual(c.dropInternalError, 0, "a frame hit an internal error");
      // Every reason of dropping is exercised and counted.
      assert.ok(c.dropMalformedLink + c.dropNotForUs + c.dropUnknownEthertype > 0);
      assert.ok(c.dropMalformedIp > 0, "malformed IP counted");
      assert.ok(c.dropBadIpChecksum > 0, "bad IPv4 header checksums counted");
      assert.ok(c.dropBadL4Checksum > 0, "bad L4 checksums counted");
      assert.ok(c.dropMalformedL4 > 0 || c.dropMalformedArp > 0, "malformed L4/ARP counted");
      assert.ok(
        c.drops() > N / 4,
        `most mutated frames are dropped: ${JSON.stringify(c.snapshot())}`,
      );
      // The seeds reach the transports (a source check or a retarget gone wrong would stop
      // them at the IP layer and leave the rest of the stack unfuzzed).
      assert.ok(c.echoReplies > 0 && c.dropPolicy > 0 && c.reasmDone > 0, "seeds reach L4");
      // Answers still go out (the unmodified seeds: ARP, NS, echo).
      assert.ok(tap.written > 0, "the stack still answered well-formed frames");
      // Nothing grows without bound: heap growth stays small after 120k frames.
      const grown = Deno.memoryUsage().heapUsed - heapBefore;
      assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${grown} bytes`);
      console.log(`fuzz vnet=${vnetLen}:`, JSON.stringify(c.snapshot()));
    } finally {
      stack.close();
      poller.close();
    }
  });
}
