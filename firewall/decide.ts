// The decision structure: "does any rule cover (family, proto, dst, port)?" without scanning the
// rules.
//
// Rules are grouped per address family and transport (TCP, UDP, ICMP: six groups). Each group
// is a path-compressed binary prefix trie (a PATRICIA tree) over the destination address; a node
// that ends a rule prefix holds the union of those rules' port ranges, merged into sorted
// disjoint intervals. A lookup walks from the root along the address bits, checks the skipped
// bits of each node once, and at each node that ends a prefix binary-searches the port: at most
// 33 (IPv4) or 129 (IPv6) nodes whatever the number of rules, plus log(k) per node for its k
// port intervals. So the cost does not grow with the rule count beyond that log.
//
// Built once (start, or a host-prefix rescan) into flat typed arrays, so a lookup touches no
// object and allocates nothing. Node i: `len[i]` prefix bits, its prefix bytes at
// `pfx[i*B ..]`, children `kid[2i]`/`kid[2i+1]` (0 = none: the root is never a child), port
// intervals `lo/hi[rs[i] .. re[i])`.

/** One entry: a prefix of `addr` (4 or 16 bytes) and an inclusive port range. */
export interface PrefixEntry {
  addr: Uint8Array;
  len: number;
  portMin: number;
  portMax: number;
}

interface BuildNode {
  addr: Uint8Array;
  len: number;
  kids: [BuildNode | null, BuildNode | null];
  ranges: [number, number][];
}

function bitAt(a: Uint8Array, off: number, i: number): number {
  return (a[off + (i >> 3)] >> (7 - (i & 7))) & 1;
}

/** Length of the common prefix of a and b, at most `max` bits. */
function commonLen(a: Uint8Array, b: Uint8Array, max: number): number {
  let i = 0;
  while (i + 8 <= max && a[i >> 3] === b[i >> 3]) i += 8;
  while (i < max && bitAt(a, 0, i) === bitAt(b, 0, i)) i++;
  return i;
}

/** `addr` with the bits after `len` cleared (a new array). */
export function maskAddr(addr: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(addr.length);
  const whole = len >> 3;
  out.set(addr.subarray(0, whole));
  if (len & 7) out[whole] = addr[whole] & (0xff00 >> (len & 7));
  return out;
}

/** Sorted, merged (adjacent ranges joined) copy of inclusive ranges. */
function mergeRanges(r: [number, number][]): [number, number][] {
  const s = [...r].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of s) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** A frozen prefix trie over one address family. */
export class PrefixTrie {
  readonly width: number;
  readonly nodes: number;
  readonly #bytes: number;
  readonly #len: Uint8Array;
  readonly #pfx: Uint8Array;
  readonly #kid: Int32Array;
  readonly #rs: Int32Array;
  readonly #re: Int32Array;
  readonly #lo: Uint16Array;
  readonly #hi: Uint16Array;

  /** Builds the trie of `entries` (all of one family: `bytes` 4 or 16). */
  constructor(bytes: 4 | 16, entries: readonly PrefixEntry[]) {
    this.#bytes = bytes;
    this.width = bytes * 8;
    const root: BuildNode = { addr: new Uint8Array(bytes), len: 0, kids: [null, null], ranges: [] };
    for (const e of entries) {
      if (e.addr.length !== bytes) throw new Error(`PrefixTrie: ${e.addr.length}-byte address`);
      if (e.len < 0 || e.len > this.width) throw new Error(`PrefixTrie: prefix length ${e.len}`);
      if (e.portMin > e.portMax) throw new Error("PrefixTrie: portMin > portMax");
      insert(root, maskAddr(e.addr, e.len), e.len, [e.portMin, e.portMax]);
    }
    // Freeze in preorder: the root gets index 0, so kid 0 can mean "none".
    const order: BuildNode[] = [];
    const stack: BuildNode[] = [root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      order.push(n);
      if (n.kids[1]) stack.push(n.kids[1]);
      if (n.kids[0]) stack.push(n.kids[0]);
    }
    const index = new Map<BuildNode, number>();
    order.forEach((n, i) => index.set(n, i));
    const count = order.length;
    this.nodes = count;
    this.#len = new Uint8Array(count);
    this.#pfx = new Uint8Array(count * bytes);
    this.#kid = new Int32Array(count * 2);
    this.#rs = new Int32Array(count);
    this.#re = new Int32Array(count);
    const lo: number[] = [];
    const hi: number[] = [];
    order.forEach((n, i) => {
      this.#len[i] = n.len;
      this.#pfx.set(n.addr, i * bytes);
      this.#kid[2 * i] = n.kids[0] ? index.get(n.kids[0])! : 0;
      this.#kid[2 * i + 1] = n.kids[1] ? index.get(n.kids[1])! : 0;
      this.#rs[i] = lo.length;
      for (const [a, b] of mergeRanges(n.ranges)) {
        lo.push(a);
        hi.push(b);
      }
      this.#re[i] = lo.length;
    });
    this.#lo = Uint16Array.from(lo);
    this.#hi = Uint16Array.from(hi);
  }

  /** True when no entry exists (lookups answer false at once). */
  get empty(): boolean {
    return this.#lo.length === 0;
  }

  /** Does an entry cover the address at dst[off] (4 or 16 bytes) and `port`? */
  match(dst: Uint8Array, off: number, port: number): boolean {
    const len = this.#len, pfx = this.#pfx, kid = this.#kid;
    const rs = this.#rs, re = this.#re;
    const B = this.#bytes, W = this.width;
    let n = 0;
    let checked = 0; // address bits known to equal the current node's prefix
    for (let step = 0; step <= W; step++) {
      const L = len[n];
      if (L > checked) {
        // The bits this node skipped (path compression): compare them once.
        const base = n * B;
        const full = L >> 3;
        for (let i = checked >> 3; i < full; i++) if (dst[off + i] !== pfx[base + i]) return false;
        const rem = L & 7;
        if (rem !== 0 && ((dst[off + full] ^ pfx[base + full]) & (0xff00 >> rem) & 0xff) !== 0) {
          return false;
        }
        checked = L;
      }
      const s = rs[n], e = re[n];
      if (s !== e && this.#inRanges(s, e, port)) return true;
      if (L >= W) return false;
      n = kid[2 * n + ((dst[off + (L >> 3)] >> (7 - (L & 7))) & 1)];
      if (n === 0) return false;
    }
    return false;
  }

  #inRanges(s: number, e: number, port: number): boolean {
    const lo = this.#lo, hi = this.#hi;
    let a = s, b = e - 1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (port < lo[m]) b = m - 1;
      else if (port > hi[m]) a = m + 1;
      else return true;
    }
    return false;
  }
}

function insert(root: BuildNode, key: Uint8Array, klen: number, range: [number, number]): void {
  let node = root;
  for (;;) {
    if (klen === node.len) {
      node.ranges.push(range);
      return;
    }
    const bit = bitAt(key, 0, node.len);
    const child = node.kids[bit];
    if (child === null) {
      node.kids[bit] = { addr: key, len: klen, kids: [null, null], ranges: [range] };
      return;
    }
    const cpl = commonLen(key, child.addr, Math.min(klen, child.len));
    if (cpl === child.len) {
      node = child; // the key lies inside the child's prefix: go down
      continue;
    }
    // Split: a new node for the common part, the old child and the key below it.
    const mid: BuildNode = { addr: maskAddr(key, cpl), len: cpl, kids: [null, null], ranges: [] };
    node.kids[bit] = mid;
    mid.kids[bitAt(child.addr, 0, cpl)] = child;
    if (cpl === klen) mid.ranges.push(range);
    else {mid.kids[bitAt(key, 0, cpl)] = {
        addr: key,
        len: klen,
        kids: [null, null],
        ranges: [range],
      };}
    return;
  }
}

/** A set of prefixes of both families, no ports (the sanity list, the host's prefixes). */
export class PrefixSet {
  readonly v4: PrefixTrie;
  readonly v6: PrefixTrie;
  constructor(prefixes: readonly { addr: Uint8Array; len: number }[]) {
    const all = (p: { addr: Uint8Array; len: number }) => ({ ...p, portMin: 0, portMax: 0 });
    this.v4 = new PrefixTrie(4, prefixes.filter((p) => p.addr.length === 4).map(all));
    this.v6 = new PrefixTrie(16, prefixes.filter((p) => p.addr.length === 16).map(all));
  }

  /** Is the address (4 or 16 bytes at dst[off]) inside one of the prefixes? */
  contains(family: 4 | 6, dst: Uint8Array, off = 0): boolean {
    return (family === 4 ? this.v4 : this.v6).match(dst, off, 0);
  }
}

/** Transports a rule can name: slots (indices into RuleSet's tries), not IP protocol numbers. */
export const SLOT_TCP = 0;
export const SLOT_UDP = 1;
export const SLOT_ICMP = 2;

/** IP protocol number → rule transport index; -1 for one no rule can name. */
export function protoIndex(ipProto: number): number {
  if (ipProto === 6) return SLOT_TCP;
  if (ipProto === 17) return SLOT_UDP;
  if (ipProto === 1 || ipProto === 58) return SLOT_ICMP;
  return -1;
}

/** A resolved rule: which transports, which prefix, which ports (inclusive). */
export interface Rule {
  /** Transport indexes (PROTO_*) the rule applies to. */
  protos: readonly number[];
  addr: Uint8Array;
  len: number;
  portMin: number;
  portMax: number;
}

/** The --allow or the --deny list: six tries, one per family and transport. */
export class RuleSet {
  readonly #tries: PrefixTrie[];
  readonly size: number;

  constructor(rules: readonly Rule[]) {
    this.size = rules.length;
    this.#tries = [];
    for (const bytes of [4, 16] as const) {
      for (const proto of [SLOT_TCP, SLOT_UDP, SLOT_ICMP]) {
        const mine = rules.filter((r) => r.addr.length === bytes && r.protos.includes(proto));
        this.#tries.push(new PrefixTrie(bytes, mine));
      }
    }
  }

  /** Does a rule cover this flow? `proto` is a PROTO_* index (not an IP protocol number). */
  matches(family: 4 | 6, proto: number, dst: Uint8Array, off: number, port: number): boolean {
    const t = this.#tries[(family === 4 ? 0 : 3) + proto];
    return !t.empty && t.match(dst, off, port);
  }
}

/** Why a flow was allowed or blocked: the step of the decision that answered. */
export const Verdict = {
  /** 1. a --deny rule matched. */
  DENY_RULE: 0,
  /** 2. an --allow rule matched. */
  ALLOW_RULE: 1,
  /** 3. the sanity block list. */
  SANITY: 2,
  /** 4. a prefix on this host, with --enable-host. */
  HOST: 3,
  /** 4. a prefix on this host, without --enable-host. */
  HOST_BLOCKED: 4,
  /** 5. elsewhere, with --enable-routing. */
  ROUTED: 5,
  /** 5. elsewhere, without --enable-routing. */
  ROUTED_BLOCKED: 6,
  /** 4./5. both --enable-host and --enable-routing: "on this host" does not matter. */
  OPEN: 7,
  /** 6. neither --enable-host nor --enable-routing (nor a rule): everything is blocked. */
  CLOSED: 8,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** Verdict → may the flow start? */
export const VERDICT_ALLOWS: readonly boolean[] = [
  false,
  true,
  false,
  true,
  false,
  true,
  false,
  true,
  false,
];

/** Short words for logs, indexed by Verdict. */
export const VERDICT_REASON: readonly string[] = [
  "--deny rule",
  "--allow rule",
  "sanity block list",
  "host prefix (--enable-host)",
  "host prefix, needs --enable-host",
  "routed (--enable-routing)",
  "not on this host, needs --enable-routing",
  "--enable-host and --enable-routing",
  "no --allow rule, --enable-host or --enable-routing",
];

/** Which destinations are "on this host" (the watcher, or a fixed set in tests). */
export interface HostLookup {
  contains(family: 4 | 6, dst: Uint8Array, off: number): boolean;
}

export interface DeciderOptions {
  allow: readonly Rule[];
  deny: readonly Rule[];
  /** The sanity block list (see sanity.ts). */
  sanity: PrefixSet;
  host: HostLookup;
  enableHost: boolean;
  enableRouting: boolean;
}

/** The six steps, pure: no I/O, no allocation per decision. */
export class Decider {
  readonly allow: RuleSet;
  readonly deny: RuleSet;
  readonly #sanity: PrefixSet;
  readonly #host: HostLookup;
  readonly #enableHost: boolean;
  readonly #enableRouting: boolean;

  constructor(o: DeciderOptions) {
    this.allow = new RuleSet(o.allow);
    this.deny = new RuleSet(o.deny);
    this.#sanity = o.sanity;
    this.#host = o.host;
    this.#enableHost = o.enableHost;
    this.#enableRouting = o.enableRouting;
  }

  /** Host-prefix lookups matter only when --enable-host and --enable-routing differ. */
  get needsHostPrefixes(): boolean {
    return this.#enableHost !== this.#enableRouting;
  }

  /**
   * The verdict for a flow to dst[off..] (4 or 16 bytes). An IPv6 address that spells an IPv4
   * one is decided as that IPv4 address too, so no rule and no sanity entry can be dodged by
   * writing the address differently: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
   * (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::) must be allowed both as
   * themselves and as the IPv4 address they embed. (The stack never starts a flow to the first
   * two at all: stack/flow/routable.ts.)
   */
  decide(family: 4 | 6, ipProto: number, dst: Uint8Array, port: number, off = 0): Verdict {
    if (family === 6) {
      const e = embeddedV4(dst, off);
      if (e >= 0) {
        const v4 = this.#decide(4, ipProto, dst, port, off + e);
        if (!VERDICT_ALLOWS[v4]) return v4;
      }
    }
    return this.#decide(family, ipProto, dst, port, off);
  }

  #decide(family: 4 | 6, ipProto: number, dst: Uint8Array, port: number, off: number): Verdict {
    const p = protoIndex(ipProto);
    if (p >= 0) {
      if (this.deny.matches(family, p, dst, off, port)) return Verdict.DENY_RULE;
      if (this.allow.matches(family, p, dst, off, port)) return Verdict.ALLOW_RULE;
    }
    if (this.#sanity.contains(family, dst, off)) return Verdict.SANITY;
    if (this.#enableHost === this.#enableRouting) {
      return this.#enableRouting ? Verdict.OPEN : Verdict.CLOSED;
    }
    if (this.#host.contains(family, dst, off)) {
      return this.#enableHost ? Verdict.HOST : Verdict.HOST_BLOCKED;
    }
    return this.#enableRouting ? Verdict.ROUTED : Verdict.ROUTED_BLOCKED;
  }
}

/**
 * Where an IPv6 address at dst[off] carries an IPv4 address: the byte offset of the IPv4
 * address for ::ffff:0:0/96 (IPv4-mapped), ::/96 (IPv4-compatible, but not :: or ::1),
 * 64:ff9b::/96 (NAT64, RFC 6052) and 2002::/16 (6to4, RFC 3056), else -1.
 */
export function embeddedV4(dst: Uint8Array, off: number): number {
  const a = dst[off], b = dst[off + 1];
  if (a === 0x20 && b === 0x02) return 2;
  let zero = true; // bytes 4..9 are zero in all the /96 forms
  for (let i = 4; i < 10 && zero; i++) zero = dst[off + i] === 0;
  if (!zero) return -1;
  const w5 = (dst[off + 10] << 8) | dst[off + 11];
  if (a === 0 && b === 0x64 && dst[off + 2] === 0xff && dst[off + 3] === 0x9b) {
    return w5 === 0 ? 12 : -1;
  }
  if (a !== 0 || b !== 0 || dst[off + 2] !== 0 || dst[off + 3] !== 0) return -1;
  if (w5 === 0xffff) return 12;
  if (w5 !== 0) return -1;
  const hi = dst[off + 12] | dst[off + 13] | dst[off + 14];
  return hi === 0 && dst[off + 15] <= 1 ? -1 : 12;
}
