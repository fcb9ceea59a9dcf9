// Firewall decision speed: decisions per second with 0, 100, 1000 and 10 000 --allow/--deny
// rules (half each, random IPv4 and IPv6 prefixes of random lengths and port ranges), against
// a linear scan of the same rules for scale. Prints a small table; `--json` prints it as JSON.
//
//   deno run -A --v8-flags=--expose-gc scripts/bench/firewall.ts [--json] [--seconds S]
//
// (scripts/bench/main.ts can call it as a subprocess; with --expose-gc the heap growth over the
// timed loop is reported too: the decision must not allocate.)

import {
  Decider,
  PrefixSet,
  type Rule,
  SLOT_ICMP,
  SLOT_TCP,
  SLOT_UDP,
} from "../../firewall/decide.ts";
import { sanitySet } from "../../firewall/sanity.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";

const args = Deno.args;
const json = args.includes("--json");
const secIdx = args.indexOf("--seconds");
const seconds = secIdx >= 0 ? Number(args[secIdx + 1]) : 0.5;

let seed = 0x12345678;
function rand(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 0x100000000;
}

function randomRule(): Rule {
  const v6 = rand() < 0.5;
  const bytes = v6 ? 16 : 4;
  const addr = Uint8Array.from({ length: bytes }, () => rand() * 256);
  if (v6) addr[0] = 0x20; // 2000::/8-ish, like real rules
  const W = bytes * 8;
  const len = rand() < 0.5 ? W : Math.floor(W / 2 + rand() * (W / 2));
  const protos = [[SLOT_TCP], [SLOT_UDP], [SLOT_ICMP], [SLOT_TCP, SLOT_UDP, SLOT_ICMP]][
    Math.floor(rand() * 4)
  ];
  const a = Math.floor(rand() * 65536), b = Math.floor(rand() * 65536);
  const all = rand() < 0.3;
  return {
    protos,
    addr,
    len,
    portMin: all ? 0 : Math.min(a, b),
    portMax: all ? 65535 : Math.max(a, b),
  };
}

interface Query {
  family: 4 | 6;
  proto: number;
  dst: Uint8Array;
  port: number;
}

/** Half the queries hit a rule's prefix (inside it), half are random. */
function queries(rules: Rule[], n: number): Query[] {
  const out: Query[] = [];
  for (let i = 0; i < n; i++) {
    const hit = rules.length > 0 && rand() < 0.5;
    let dst: Uint8Array;
    if (hit) {
      const r = rules[Math.floor(rand() * rules.length)];
      dst = new Uint8Array(r.addr);
      dst[dst.length - 1] ^= rand() < 0.5 ? 0 : 1;
    } else {
      dst = Uint8Array.from({ length: rand() < 0.5 ? 4 : 16 }, () => rand() * 256);
      if (dst.length === 16) dst[0] = 0x20;
    }
    const proto = [6, 17, dst.length === 4 ? 1 : 58][Math.floor(rand() * 3)];
    out.push({ family: dst.length === 4 ? 4 : 6, proto, dst, port: Math.floor(rand() * 65536) });
  }
  return out;
}

/** The naive answer for scale: scan every rule (then the same sanity and host steps). */
function linear(allow: Rule[], deny: Rule[], sanity: PrefixSet, host: PrefixSet) {
  const cover = (r: Rule, q: Query, p: number) => {
    if (r.addr.length !== q.dst.length || !r.protos.includes(p)) return false;
    if (q.port < r.portMin || q.port > r.portMax) return false;
    for (let i = 0; i < r.len; i++) {
      const s = 7 - (i & 7);
      if (((q.dst[i >> 3] >> s) & 1) !== ((r.addr[i >> 3] >> s) & 1)) return false;
    }
    return true;
  };
  return (q: Query) => {
    const p = q.proto === 6 ? 0 : q.proto === 17 ? 1 : 2;
    if (deny.some((r) => cover(r, q, p))) return false;
    if (allow.some((r) => cover(r, q, p))) return true;
    return !sanity.contains(q.family, q.dst) && !host.contains(q.family, q.dst);
  };
}

const gc = (globalThis as { gc?: () => void }).gc;

function time(fn: (q: Query) => unknown, qs: Query[], budgetS: number) {
  const w0 = performance.now(); // warm up (JIT), at most 20k calls or 100 ms
  for (let i = 0; i < 20_000 && (i & 255 || performance.now() - w0 < 100); i++) {
    fn(qs[i % qs.length]);
  }
  gc?.();
  const heap0 = Deno.memoryUsage().heapUsed;
  let n = 0, sink = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetS * 1000) {
    for (let i = 0; i < 4096; i++) if (fn(qs[(n + i) % qs.length])) sink++;
    n += 4096;
    t = performance.now();
  }
  const heap = Deno.memoryUsage().heapUsed - heap0;
  return { perSec: n / ((t - t0) / 1000), n, heap, sink };
}

const plan = defaultNetPlan();
const rows: Record<string, string | number>[] = [];
for (const count of [0, 100, 1000, 10_000]) {
  const all = Array.from({ length: count }, randomRule);
  const allow = all.slice(0, count >> 1), deny = all.slice(count >> 1);
  const sanity = sanitySet(plan);
  const host = new PrefixSet([{ addr: new Uint8Array([192, 0, 2, 0]), len: 24 }]);
  const tb = performance.now();
  const d = new Decider({
    allow,
    deny,
    sanity,
    host,
    enableHost: false,
    enableRouting: true,
  });
  const buildMs = performance.now() - tb;
  const qs = queries(all, 8192);
  const fast = time((q) => d.decide(q.family, q.proto, q.dst, q.port), qs, seconds);
  const slowBudget = count >= 1000 ? Math.min(seconds, 0.3) : seconds;
  const slow = time(linear(allow, deny, sanity, host), qs, slowBudget);
  rows.push({
    rules: count,
    "build ms": Number(buildMs.toFixed(1)),
    "decisions/s": Math.round(fast.perSec),
    "ns/decision": Number((1e9 / fast.perSec).toFixed(0)),
    "heap growth B": gc ? `${fast.heap} / ${fast.n}` : "n/a (--expose-gc)",
    "linear scan/s": Math.round(slow.perSec),
    speedup: Number((fast.perSec / slow.perSec).toFixed(1)),
  });
}

if (json) {
  console.log(JSON.stringify(rows));
} else {
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(width[i])).join("  ");
  console.log("firewall: decisions per second (half --allow, half --deny; IPv4+IPv6; 50% hits)");
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
}
