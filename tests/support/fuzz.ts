// The frame fuzzer shared by tests/unit/fuzz_frames.test.ts (120k frames per mode in the suite)
// and scripts/fuzz.ts (a million and more, by hand): seeded random and mutated frames through a
// whole Stack with a capturing tap, flows refused by the policy so nothing reaches a host socket.
//
// Seeds are real kernel frames (tests/fixtures/frames.ts), re-addressed from the guest's own
// addresses to slirpd's, so they pass the source check and reach the transports (bad sources
// are still made by the mutations). Mutations: truncation, bit flips, length fields set to
// random values, random option bytes, random vnet headers, pure noise.

import { frameBytes, type FrameName, frames } from "../fixtures/frames.ts";
import { Stack } from "../../stack/mod.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { Poller } from "../../ffi/poller.ts";
import { setU16, u16 } from "../../stack/wire/bytes.ts";
import { finish, pseudoSum, sum } from "../../stack/wire/checksum.ts";
import type { Counters } from "../../stack/base/counters.ts";

/** xorshift32: small, fast, reproducible. */
export function rng(seed: number): () => number {
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

export class CaptureTap {
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

export function mutate(r: () => number, out: Uint8Array, vnetLen: number): number {
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

export interface FuzzResult {
  counters: Counters;
  /** Frames the stack wrote to the tap. */
  written: number;
  /** Heap growth over the run, bytes. */
  heapGrowth: number;
  /** The unmodified ARP request seed still got an answer after the run. */
  answersAfter: boolean;
}

/** Runs `n` fuzzed frames (seeded) through a fresh Stack; `every` reports progress. */
export function fuzzStack(
  n: number,
  vnetLen: 0 | 10,
  seed: number,
  every?: (i: number) => void,
): FuzzResult {
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
    const r = rng(seed);
    const buf = new Uint8Array(70_000);
    const heapBefore = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < n; i++) {
      const len = mutate(r, buf, vnetLen);
      stack.input(buf, len);
      stack.tick();
      if (every !== undefined && (i & 0xffff) === 0) every(i);
    }
    const heapGrowth = Deno.memoryUsage().heapUsed - heapBefore;
    // A well-formed frame is still served: the ARP request seed gets its reply.
    const arp = SEEDS.find((f) => u16(f, 12) === 0x0806 && u16(f, 20) === 1);
    let answersAfter = false;
    if (arp !== undefined) {
      buf.fill(0, 0, vnetLen);
      buf.set(arp, vnetLen);
      const before = tap.written;
      stack.input(buf, vnetLen + arp.length);
      answersAfter = tap.written > before;
    }
    return { counters: stack.counters, written: tap.written, heapGrowth, answersAfter };
  } finally {
    stack.close();
    poller.close();
  }
}
