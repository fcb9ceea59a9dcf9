// The decision (firewall/decide.ts, policy.ts): the prefix trie against a brute-force scan of
// random rules, then the six steps one by one for TCP, UDP, ICMP and any, IPv4 and IPv6, port
// ranges and prefix lengths /0../32../128, and the counted, rate-limited block log.

import assert from "node:assert/strict";
import {
  Decider,
  PrefixSet,
  PrefixTrie,
  type Rule,
  SLOT_ICMP,
  SLOT_TCP,
  SLOT_UDP,
  Verdict,
} from "../../firewall/decide.ts";
import { Firewall, LOG_BUDGET } from "../../firewall/policy.ts";
import { parseRules } from "../../firewall/rules.ts";
import { sanitySet } from "../../firewall/sanity.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { parseIp } from "../../stack/wire/bytes.ts";

/** Rules from rule text (literal addresses only). */
function rules(text: string): Rule[] {
  if (text === "") return [];
  const protos = { tcp: [SLOT_TCP], udp: [SLOT_UDP], icmp: [SLOT_ICMP], any: [0, 1, 2] };
  return parseRules(text).map((s) => ({
    protos: protos[s.proto],
    addr: s.addr!,
    len: s.len,
    portMin: s.portMin,
    portMax: s.portMax,
  }));
}

function ip(s: string): Uint8Array {
  const a = parseIp(s);
  if (!a) throw new Error(`bad test address ${s}`);
  return a;
}

/** A seeded PRNG (xorshift32): the random tests are the same on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function inPrefix(a: Uint8Array, p: Uint8Array, len: number): boolean {
  for (let i = 0; i < len; i++) {
    const b = 7 - (i & 7);
    if (((a[i >> 3] >> b) & 1) !== ((p[i >> 3] >> b) & 1)) return false;
  }
  return true;
}

Deno.test("firewall trie: same answers as a linear scan, random rules, both families", () => {
  const rand = rng(0x5eed);
  for (const bytes of [4, 16] as const) {
    const W = bytes * 8;
    // Few distinct base addresses so prefixes nest and share paths (the hard cases).
    const bases = Array.from(
      { length: 6 },
      () => Uint8Array.from({ length: bytes }, () => rand() * 256),
    );
    const entries = Array.from({ length: 300 }, () => {
      const addr = new Uint8Array(bases[Math.floor(rand() * bases.length)]);
      addr[Math.floor(rand() * bytes)] ^= 1 << Math.floor(rand() * 8); // a nearby neighbour
      const lens = [0, W, W, Math.floor(rand() * (W + 1)), 8, 24, W - 1];
      const len = lens[Math.floor(rand() * lens.length)];
      const a = Math.floor(rand() * 65536), b = Math.floor(rand() * 65536);
      const all = rand() < 0.3;
      return {
        addr,
        len,
        portMin: all ? 0 : Math.min(a, b),
        portMax: all ? 65535 : Math.max(a, b),
      };
    });
    for (const n of [0, 1, 2, 10, 300]) {
      const es = entries.slice(0, n);
      const t = new PrefixTrie(bytes, es);
      assert.ok(t.nodes <= 2 * n + 1, `path compression: ${t.nodes} nodes for ${n} entries`);
      for (let q = 0; q < 3000; q++) {
        const dst = new Uint8Array(bases[Math.floor(rand() * bases.length)]);
        if (rand() < 0.7) dst[Math.floor(rand() * bytes)] ^= 1 << Math.floor(rand() * 8);
        const port = rand() < 0.2 ? 0 : Math.floor(rand() * 65536);
        const want = es.some((e) =>
          port >= e.portMin && port <= e.portMax && inPrefix(dst, e.addr, e.len)
        );
        assert.equal(
          t.match(dst, 0, port),
          want,
          `${bytes}-byte dst ${dst} port ${port}, ${n} rules`,
        );
      }
    }
  }
});

Deno.test("firewall trie: offsets, /0, /32, /128, adjacent port ranges", () => {
  const t4 = new PrefixTrie(4, [
    { addr: ip("192.0.2.7"), len: 32, portMin: 10, portMax: 20 },
    { addr: ip("192.0.2.7"), len: 32, portMin: 21, portMax: 30 }, // merged with 10-20
    { addr: ip("198.51.100.0"), len: 24, portMin: 0, portMax: 65535 },
    { addr: ip("192.0.2.8"), len: 32, portMin: 10, portMax: 20 },
    { addr: ip("192.0.2.8"), len: 32, portMin: 22, portMax: 30 }, // a one-port gap: 21
    { addr: ip("192.0.2.8"), len: 32, portMin: 15, portMax: 16 }, // inside 10-20
  ]);
  const eight = ip("192.0.2.8");
  assert.deepEqual([9, 10, 16, 20, 21, 22, 30, 31].map((p) => t4.match(eight, 0, p)), [
    false,
    true,
    true,
    true,
    false,
    true,
    true,
    false,
  ]);
  const buf = new Uint8Array([9, 9, 192, 0, 2, 7, 9]);
  assert.ok(t4.match(buf, 2, 10) && t4.match(buf, 2, 25) && t4.match(buf, 2, 30));
  assert.ok(!t4.match(buf, 2, 9) && !t4.match(buf, 2, 31));
  assert.ok(!t4.match(ip("192.0.2.6"), 0, 15), "/32 is one address");
  assert.ok(t4.match(ip("198.51.100.255"), 0, 1) && !t4.match(ip("198.51.101.0"), 0, 1));
  const all = new PrefixTrie(4, [{ addr: ip("0.0.0.0"), len: 0, portMin: 443, portMax: 443 }]);
  assert.ok(all.match(ip("203.0.113.9"), 0, 443) && !all.match(ip("203.0.113.9"), 0, 80));
  const t6 = new PrefixTrie(16, [
    { addr: ip("2001:db8::1"), len: 128, portMin: 0, portMax: 65535 },
    { addr: ip("2001:db8:ff00::"), len: 40, portMin: 53, portMax: 53 },
  ]);
  assert.ok(t6.match(ip("2001:db8::1"), 0, 7) && !t6.match(ip("2001:db8::2"), 0, 7));
  assert.ok(t6.match(ip("2001:db8:ffff::9"), 0, 53) && !t6.match(ip("2001:db8:fe00::"), 0, 53));
  assert.ok(new PrefixTrie(16, []).empty && !new PrefixTrie(16, []).match(ip("::1"), 0, 0));
  const set = new PrefixSet([{ addr: ip("10.0.0.0"), len: 8 }, { addr: ip("fd00::"), len: 8 }]);
  assert.ok(set.contains(4, ip("10.9.9.9")) && !set.contains(4, ip("11.0.0.0")));
  assert.ok(set.contains(6, ip("fd12::1")) && !set.contains(6, ip("fe00::1")));
});

interface World {
  allow?: string;
  deny?: string;
  host?: boolean;
  routing?: boolean;
}

const plan = defaultNetPlan();
/** "On this host" for the matrix: 192.0.2.0/24 and 2001:db8::/64 (like the test host ns). */
const HOST = new PrefixSet([{ addr: ip("192.0.2.0"), len: 24 }, {
  addr: ip("2001:db8::"),
  len: 64,
}]);

function decider(w: World): Decider {
  return new Decider({
    allow: rules(w.allow ?? ""),
    deny: rules(w.deny ?? ""),
    sanity: sanitySet(plan),
    host: HOST,
    enableHost: w.host ?? false,
    enableRouting: w.routing ?? false,
  });
}

/** [world, proto, dst, port, verdict] */
type Row = [World, number, string, number, Verdict];

Deno.test("firewall decision: the six steps, in order, for every transport and family", () => {
  const V = Verdict;
  const rows: Row[] = [
    // 6. nothing given: everything blocked, sanity list first
    [{}, 6, "198.51.100.1", 80, V.CLOSED],
    [{}, 17, "2001:db8:1::1", 53, V.CLOSED],
    [{}, 1, "192.0.2.2", 0, V.CLOSED],
    [{}, 6, "127.0.0.1", 80, V.SANITY],
    // 5. routing: elsewhere open, host prefixes not
    [{ routing: true }, 6, "198.51.100.1", 80, V.ROUTED],
    [{ routing: true }, 17, "2001:db8:1::1", 53, V.ROUTED],
    [{ routing: true }, 58, "2001:db8:1::1", 0, V.ROUTED],
    [{ routing: true }, 6, "192.0.2.2", 80, V.HOST_BLOCKED],
    [{ routing: true }, 1, "2001:db8::2", 0, V.HOST_BLOCKED],
    // 4. host: host prefixes open, elsewhere not
    [{ host: true }, 6, "192.0.2.1", 80, V.HOST],
    [{ host: true }, 17, "192.0.2.2", 53, V.HOST],
    [{ host: true }, 58, "2001:db8::1", 0, V.HOST],
    [{ host: true }, 6, "198.51.100.1", 80, V.ROUTED_BLOCKED],
    [{ host: true, routing: true }, 6, "198.51.100.1", 80, V.OPEN],
    [{ host: true, routing: true }, 6, "192.0.2.1", 80, V.OPEN],
    // 3. sanity list, whatever is enabled
    ...[
      "0.1.2.3",
      "10.0.2.2",
      "10.0.2.100",
      "127.0.0.1",
      "127.255.0.1",
      "255.255.255.255",
      "::",
      "::1",
      "::192.0.2.1",
      "::ffff:192.0.2.1",
      "64:ff9b::192.0.2.1",
      "fd00::2",
      "fd00::ffff",
    ].flatMap((d): Row[] => [
      [{ host: true, routing: true }, 6, d, 80, V.SANITY],
      [{ host: true, routing: true }, 17, d, 53, V.SANITY],
      [{ host: true, routing: true }, d.includes(":") ? 58 : 1, d, 0, V.SANITY],
    ]),
    [{ host: true, routing: true }, 6, "10.0.3.1", 80, V.OPEN], // just outside 10.0.2.0/24
    [{ host: true, routing: true }, 6, "fd00:0:0:1::1", 80, V.OPEN], // outside fd00::/64
    [{ host: true, routing: true }, 6, "255.255.255.254", 80, V.OPEN],
    // 2. allow: opens exactly its proto/prefix/ports, even inside the sanity list
    [{ allow: "tcp://127.0.0.1:8080" }, 6, "127.0.0.1", 8080, V.ALLOW_RULE],
    [{ allow: "tcp://127.0.0.1:8080" }, 6, "127.0.0.1", 8081, V.SANITY],
    [{ allow: "tcp://127.0.0.1:8080" }, 17, "127.0.0.1", 8080, V.SANITY],
    [{ allow: "tcp://127.0.0.1:8080" }, 6, "127.0.0.2", 8080, V.SANITY],
    [{ allow: "udp://[::1]:53" }, 17, "::1", 53, V.ALLOW_RULE],
    [{ allow: "udp://[::1]:53" }, 6, "::1", 53, V.SANITY],
    [{ allow: "192.0.2.2:100-200" }, 6, "192.0.2.2", 99, V.CLOSED],
    [{ allow: "192.0.2.2:100-200" }, 6, "192.0.2.2", 100, V.ALLOW_RULE],
    [{ allow: "192.0.2.2:100-200" }, 6, "192.0.2.2", 200, V.ALLOW_RULE],
    [{ allow: "192.0.2.2:100-200" }, 6, "192.0.2.2", 201, V.CLOSED],
    [{ allow: "192.0.2.2" }, 6, "192.0.2.2", 1, V.ALLOW_RULE], // no port: every port
    [{ allow: "192.0.2.2" }, 6, "192.0.2.2", 65535, V.ALLOW_RULE],
    [{ allow: "192.0.2.2" }, 17, "192.0.2.2", 1, V.CLOSED], // tcp is the default proto
    [{ allow: "icmp://198.51.100.0/24" }, 1, "198.51.100.9", 0, V.ALLOW_RULE],
    [{ allow: "icmp://198.51.100.0/24" }, 6, "198.51.100.9", 0, V.CLOSED],
    [{ allow: "icmp://[2001:db8:1::]/48" }, 58, "2001:db8:1:2::3", 0, V.ALLOW_RULE],
    [{ allow: "any://198.51.100.7" }, 6, "198.51.100.7", 80, V.ALLOW_RULE],
    [{ allow: "any://198.51.100.7" }, 17, "198.51.100.7", 80, V.ALLOW_RULE],
    [{ allow: "any://198.51.100.7" }, 1, "198.51.100.7", 0, V.ALLOW_RULE],
    [{ allow: "any://198.51.100.7:80" }, 1, "198.51.100.7", 0, V.CLOSED], // ICMP is port 0
    [{ allow: "any://198.51.100.7:0-80" }, 1, "198.51.100.7", 0, V.ALLOW_RULE],
    [{ allow: "any://198.51.100.7" }, 47, "198.51.100.7", 0, V.CLOSED], // GRE: no rule names it
    [{ allow: "0.0.0.0/0:443" }, 6, "203.0.113.1", 443, V.ALLOW_RULE], // /0
    [{ allow: "0.0.0.0/0:443" }, 6, "2001:db8:1::1", 443, V.CLOSED], // v4 rules ≠ v6 flows
    [{ allow: "[::]/0" }, 6, "2001:db8:1::1", 9, V.ALLOW_RULE],
    [{ allow: "[::]/0" }, 6, "::1", 9, V.ALLOW_RULE], // /0 opens the sanity list too
    [{ allow: "[2001:db8:1::5]" }, 6, "2001:db8:1::5", 1, V.ALLOW_RULE], // /128
    [{ allow: "[2001:db8:1::5]" }, 6, "2001:db8:1::4", 1, V.CLOSED],
    [{ allow: "[::ffff:198.51.100.7]:22" }, 6, "198.51.100.7", 22, V.ALLOW_RULE],
    [{ allow: "all" }, 17, "255.255.255.255", 67, V.ALLOW_RULE],
    // 1. deny beats allow, enable-routing and enable-host
    [{ allow: "192.0.2.2:7", deny: "192.0.2.2:7" }, 6, "192.0.2.2", 7, V.DENY_RULE],
    [{ allow: "192.0.2.0/24", deny: "192.0.2.2:7" }, 6, "192.0.2.2", 8, V.ALLOW_RULE],
    [{ routing: true, deny: "198.51.100.0/24:80-90" }, 6, "198.51.100.1", 85, V.DENY_RULE],
    [{ routing: true, deny: "198.51.100.0/24:80-90" }, 6, "198.51.100.1", 91, V.ROUTED],
    [{ routing: true, deny: "198.51.100.0/24:80-90" }, 17, "198.51.100.1", 85, V.ROUTED],
    [{ host: true, deny: "udp://[2001:db8::]/64" }, 17, "2001:db8::1", 53, V.DENY_RULE],
    [{ host: true, deny: "udp://[2001:db8::]/64" }, 6, "2001:db8::1", 53, V.HOST],
    [{ host: true, routing: true, deny: "any://0.0.0.0/0" }, 1, "198.51.100.1", 0, V.DENY_RULE],
    [{ host: true, routing: true, deny: "all", allow: "all" }, 6, "198.51.100.1", 1, V.DENY_RULE],
  ];
  for (const [w, proto, dst, port, want] of rows) {
    const a = ip(dst);
    const got = decider(w).decide(a.length === 4 ? 4 : 6, proto, a, port);
    assert.equal(got, want, `${JSON.stringify(w)} proto ${proto} ${dst}:${port}`);
  }
});

Deno.test("firewall policy: counts every block, logs once per destination per minute", () => {
  let now = 0;
  const lines: string[] = [];
  const fw = new Firewall({
    allow: rules("tcp://127.0.0.1:8080"),
    deny: rules("any://198.51.100.66"),
    plan,
    enableHost: false,
    enableRouting: true,
    host: HOST,
    log: (l) => lines.push(l),
    now: () => now,
  });
  const p = fw.policy;
  assert.equal(p(4, 6, ip("127.0.0.1"), 8080), true);
  assert.equal(p(4, 6, ip("198.51.100.1"), 80), true);
  for (let i = 0; i < 5; i++) assert.equal(p(4, 6, ip("198.51.100.66"), 80), false);
  assert.equal(p(4, 17, ip("198.51.100.66"), 80), false); // another destination (proto)
  assert.equal(p(6, 58, ip("::1"), 0), false);
  assert.equal(p(4, 6, ip("192.0.2.1"), 22), false);
  assert.deepEqual(lines, [
    "[!] tcp://198.51.100.66:80 blocked: --deny rule",
    "[!] udp://198.51.100.66:80 blocked: --deny rule",
    "[!] icmp://[::1] blocked: sanity block list",
    "[!] tcp://192.0.2.1:22 blocked: host prefix, needs --enable-host",
  ]);
  now = 59_000;
  p(4, 6, ip("198.51.100.66"), 80);
  assert.equal(lines.length, 4, "still inside the minute");
  now = 61_000;
  p(4, 6, ip("198.51.100.66"), 80);
  assert.equal(lines.length, 5, "a minute later it is logged again");
  const s = fw.stats;
  assert.deepEqual(
    [
      s.allowed,
      s.blocked,
      s.blockedDeny,
      s.blockedSanity,
      s.blockedHost,
      s.logged,
      s.logSuppressed,
    ],
    [2, 10, 8, 1, 1, 5, 5],
  );

  // A port scan: at most LOG_BUDGET lines a minute, then one line saying how many were not.
  lines.length = 0;
  now = 200_000;
  for (let port = 1; port <= LOG_BUDGET + 50; port++) p(4, 6, ip("198.51.100.66"), port);
  assert.equal(lines.length, LOG_BUDGET);
  now = 261_000;
  p(4, 6, ip("198.51.100.66"), 9999);
  assert.deepEqual(lines.slice(LOG_BUDGET), [
    "[!] firewall: 50 more blocked flows not logged (rate limit)",
    "[!] tcp://198.51.100.66:9999 blocked: --deny rule",
  ]);
});

Deno.test("firewall policy: quiet counts only; --disable-host-loopback beats --allow", () => {
  const fw = new Firewall({
    allow: rules("tcp://127.0.0.1:8080,tcp://[::1]:8080,tcp://10.0.2.2:8080"),
    deny: [],
    plan,
    enableHost: true,
    enableRouting: true,
    disableHostLoopback: true,
  });
  assert.equal(fw.policy(4, 6, ip("127.0.0.1"), 8080), false);
  assert.equal(fw.policy(6, 6, ip("::1"), 8080), false);
  assert.equal(fw.policy(4, 6, ip("10.0.2.2"), 8080), true, "other sanity ranges still open");
  assert.equal(fw.decide(4, 6, ip("127.0.0.1"), 8080), Verdict.DENY_RULE);
  assert.deepEqual([fw.stats.blocked, fw.stats.blockedDeny, fw.stats.logged], [2, 2, 0]);
  assert.throws(
    () => new Firewall({ allow: [], deny: [], plan, enableHost: true, enableRouting: false }),
    /needs host prefixes/,
  );
});
