// "May this flow start?" — the one question the stack asks, once per new flow (a TCP SYN, the
// first datagram of a UDP flow, an ICMP echo to a new destination), never per packet.
//
// The answer (slirpnetstack's FirewallRoutingBlock, in order; decide.ts):
//   1. a --deny rule covers it           → blocked (--deny beats --allow)
//   2. an --allow rule covers it         → allowed (even inside the sanity block list)
//   3. the sanity block list (sanity.ts) → blocked
//   4. a prefix on this host (hostprefixes.ts) → allowed only with --enable-host
//   5. anything else                     → allowed only with --enable-routing
// so with no flag at all everything is blocked (slirpd's own DNS/DHCP and forwards never ask).
// --disable-host-loopback adds `any://127.0.0.0/8` and `any://[::1]` to the --deny rules.
//
// The transports act on a "no" (TCP RST, UDP drop, ICMP no answer); the Firewall counts each
// block and, unless --quiet, logs it at most once per destination (proto, address, port) per
// minute, and at most LOG_BUDGET lines a minute in all: a guest scanning ports cannot flood the
// log. The rate-limit table is a fixed direct-mapped cache: bounded memory, no allocation.

import type { NetPlan } from "../stack/base/netplan.ts";
import { formatIp } from "../stack/wire/bytes.ts";
import {
  Decider,
  type HostLookup,
  type Rule,
  SLOT_ICMP,
  SLOT_TCP,
  SLOT_UDP,
  Verdict,
  VERDICT_ALLOWS,
  VERDICT_REASON,
} from "./decide.ts";
import { sanitySet } from "./sanity.ts";
import type { Policy } from "../stack/base/names.ts";

/** Decides whether a guest flow to dst:port (proto 6 TCP, 17 UDP, 1/58 ICMP) may start. */
export type { Policy };

/** Plain counters (the daemon prints them at exit). */
export class FirewallStats {
  allowed = 0;
  blocked = 0;
  /** Blocked by step: --deny rule, sanity list, host prefix, elsewhere, nothing enabled. */
  blockedDeny = 0;
  blockedSanity = 0;
  blockedHost = 0;
  blockedRouted = 0;
  blockedClosed = 0;
  /** Block lines written, and blocks not logged because of the rate limit. */
  logged = 0;
  logSuppressed = 0;
}

export interface FirewallOptions {
  allow: readonly Rule[];
  deny: readonly Rule[];
  plan: NetPlan;
  enableHost: boolean;
  enableRouting: boolean;
  disableHostLoopback?: boolean;
  /** "On this host" (the watcher); needed only when enableHost !== enableRouting. */
  host?: HostLookup;
  /** Where block lines go; none (or --quiet): blocks are only counted. */
  log?: (line: string) => void;
  /** Monotonic ms (tests move time). */
  now?: () => number;
}

const ANY = [SLOT_TCP, SLOT_UDP, SLOT_ICMP];

/** What --disable-host-loopback denies. */
export const HOST_LOOPBACK_RULES: readonly Rule[] = [
  { protos: ANY, addr: new Uint8Array([127, 0, 0, 0]), len: 8, portMin: 0, portMax: 65535 },
  {
    protos: ANY,
    addr: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
    len: 128,
    portMin: 0,
    portMax: 65535,
  },
];

const NO_HOST: HostLookup = { contains: () => false };

/** Rate-limit table size (slots) and window. */
export const LOG_SLOTS = 1024;
export const LOG_WINDOW_MS = 60_000;
/** Most block lines per window, all destinations together. */
export const LOG_BUDGET = 100;
const KEY = 20; // family, proto, port (2), address (16)

export class Firewall {
  readonly decider: Decider;
  readonly stats = new FirewallStats();
  /** The function handed to the stack. */
  readonly policy: Policy;
  readonly #log: ((line: string) => void) | undefined;
  readonly #now: () => number;
  readonly #keys = new Uint8Array(LOG_SLOTS * KEY);
  readonly #times = new Float64Array(LOG_SLOTS).fill(-Infinity);
  #windowStart = -Infinity;
  #windowLines = 0;
  #windowSuppressed = 0;

  constructor(o: FirewallOptions) {
    if (o.enableHost !== o.enableRouting && o.host === undefined) {
      throw new Error(
        "Firewall: --enable-host without --enable-routing (or the reverse) needs host prefixes",
      );
    }
    this.decider = new Decider({
      allow: o.allow,
      deny: o.disableHostLoopback ? [...o.deny, ...HOST_LOOPBACK_RULES] : o.deny,
      sanity: sanitySet(o.plan),
      host: o.host ?? NO_HOST,
      enableHost: o.enableHost,
      enableRouting: o.enableRouting,
    });
    this.#log = o.log;
    this.#now = o.now ?? (() => performance.now());
    this.policy = (family, proto, dst, port) => this.check(family, proto, dst, port);
  }

  /** The decision with its reason (no counting, no logging). */
  decide(family: 4 | 6, proto: number, dst: Uint8Array, port: number): Verdict {
    return this.decider.decide(family, proto, dst, port);
  }

  /** decide() + counters + the rate-limited block log: what the stack calls. */
  check(family: 4 | 6, proto: number, dst: Uint8Array, port: number): boolean {
    const v = this.decider.decide(family, proto, dst, port);
    const s = this.stats;
    if (VERDICT_ALLOWS[v]) {
      s.allowed++;
      return true;
    }
    s.blocked++;
    if (v === Verdict.DENY_RULE) s.blockedDeny++;
    else if (v === Verdict.SANITY) s.blockedSanity++;
    else if (v === Verdict.HOST_BLOCKED) s.blockedHost++;
    else if (v === Verdict.ROUTED_BLOCKED) s.blockedRouted++;
    else s.blockedClosed++;
    if (this.#log !== undefined) this.#maybeLog(v, family, proto, dst, port);
    return false;
  }

  #maybeLog(v: Verdict, family: 4 | 6, proto: number, dst: Uint8Array, port: number): void {
    const now = this.#now();
    // The slot of this destination: FNV-1a over the key bytes, read in place.
    const alen = family === 4 ? 4 : 16;
    let h = 0x811c9dc5;
    h = Math.imul(h ^ family, 0x01000193);
    h = Math.imul(h ^ proto, 0x01000193);
    h = Math.imul(h ^ (port >> 8), 0x01000193);
    h = Math.imul(h ^ (port & 0xff), 0x01000193);
    for (let i = 0; i < alen; i++) h = Math.imul(h ^ dst[i], 0x01000193);
    const slot = (h >>> 0) & (LOG_SLOTS - 1);
    const k = this.#keys, o = slot * KEY;
    let same = k[o] === family && k[o + 1] === proto && k[o + 2] === (port >> 8) &&
      k[o + 3] === (port & 0xff);
    for (let i = 0; same && i < alen; i++) same = k[o + 4 + i] === dst[i];
    if (same && now - this.#times[slot] < LOG_WINDOW_MS) {
      this.stats.logSuppressed++;
      return;
    }
    if (now - this.#windowStart >= LOG_WINDOW_MS) {
      if (this.#windowSuppressed > 0) {
        this.#log!(
          `[!] firewall: ${this.#windowSuppressed} more blocked flows not logged (rate limit)`,
        );
      }
      this.#windowStart = now;
      this.#windowLines = 0;
      this.#windowSuppressed = 0;
    }
    if (this.#windowLines >= LOG_BUDGET) {
      this.#windowSuppressed++;
      this.stats.logSuppressed++;
      return;
    }
    this.#windowLines++;
    k[o] = family;
    k[o + 1] = proto;
    k[o + 2] = port >> 8;
    k[o + 3] = port & 0xff;
    for (let i = 0; i < alen; i++) k[o + 4 + i] = dst[i];
    this.#times[slot] = now;
    this.stats.logged++;
    this.#log!(`[!] ${flowText(family, proto, dst, port)} blocked: ${VERDICT_REASON[v]}`);
  }
}

/** `tcp://192.0.2.2:80`, `udp://[2001:db8::2]:53`, `icmp://192.0.2.2` (slirpnetstack style). */
export function flowText(family: 4 | 6, proto: number, dst: Uint8Array, port: number): string {
  const name = proto === 6
    ? "tcp"
    : proto === 17
    ? "udp"
    : proto === 1 || proto === 58
    ? "icmp"
    : `ip${proto}`;
  const a = formatIp(dst, 0, family === 4 ? 4 : 16);
  const host = family === 6 ? `[${a}]` : a;
  return name === "icmp" ? `${name}://${host}` : `${name}://${host}:${port}`;
}

/** The flags-only policy (no rules, no host prefixes: --enable-host acts like routing). */
export interface PolicyFlags {
  enableRouting: boolean;
  enableHost: boolean;
}

/**
 * A policy without rules for callers that have no watcher (tests of other layers): with either
 * flag everything outside the sanity block list is allowed.
 */
export function makePolicy(flags: PolicyFlags, plan: NetPlan): Policy {
  const open = flags.enableRouting || flags.enableHost;
  return new Firewall({
    allow: [],
    deny: [],
    plan,
    enableHost: open,
    enableRouting: open,
  }).policy;
}
