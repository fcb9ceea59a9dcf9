// Malformed input: hundreds of thousands of random and mutated frames go through the frame
// handler. Nothing may throw out of it, no frame may hit an internal error, memory must not
// grow without bound, and the drop counters must say what was dropped.
//
// Seeds are real kernel frames (tests/fixtures/frames.ts). Mutations: truncation, bit flips,
// length fields set to random values, random option bytes, random vnet headers, pure noise.
// The generator is seeded, so a failure names a reproducible case.

import { assert, assertEquals } from "node:assert";
import { frameBytes, type FrameName, frames } from "./fixtures/frames.ts";
import { Stack } from "../stack/stack.ts";
import { defaultNetPlan } from "../stack/netplan.ts";
import { Poller } from "../ffi/poller.ts";

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

const SEEDS: Uint8Array[] = (Object.keys(frames) as FrameName[]).map(frameBytes);

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
      assertEquals(c.framesIn, N);
      assertEquals(c.dropInternalError, 0, "a frame hit an internal error");
      // Every reason of dropping is exercised and counted.
      assert(c.dropMalformedLink + c.dropNotForUs + c.dropUnknownEthertype > 0);
      assert(c.dropMalformedIp > 0, "malformed IP counted");
      assert(c.dropBadIpChecksum > 0, "bad IPv4 header checksums counted");
      assert(c.dropBadL4Checksum > 0, "bad L4 checksums counted");
      assert(c.dropMalformedL4 > 0 || c.dropMalformedArp > 0, "malformed L4/ARP counted");
      assert(c.drops() > N / 4, `most mutated frames are dropped: ${JSON.stringify(c.snapshot())}`);
      // Answers still go out (the unmodified seeds: ARP, NS, echo).
      assert(tap.written > 0, "the stack still answered well-formed frames");
      // Nothing grows without bound: heap growth stays small after 120k frames.
      const grown = Deno.memoryUsage().heapUsed - heapBefore;
      assert(grown < 64 * 1024 * 1024, `heap grew by ${grown} bytes`);
      console.log(`fuzz vnet=${vnetLen}:`, JSON.stringify(c.snapshot()));
    } finally {
      stack.close();
      poller.close();
    }
  });
}
