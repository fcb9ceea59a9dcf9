// The host-prefix watcher: which destinations are "on this host" (step 4 of the decision).
//
// slirpnetstack reloads the main and local routing tables every 30 s. slirpd dumps the same
// (ffi/rtwatch.ts: local addresses and directly reachable prefixes, default and gatewayed routes
// excluded), but on changes: a NETLINK_ROUTE socket subscribed to the IPv4/IPv6 address and
// route groups sits in the Poller, and any message on it (or its overflow) triggers a new dump,
// so an address added to the host counts as "host" within milliseconds, not 30 s. The 30 s
// rescan runs only when that socket cannot be opened. Bursts (one `ip
// addr add` makes several messages) are coalesced: at most one dump per MIN_GAP_MS, or per 20
// times the last dump's duration when that is longer, so a host with a big, busy routing table
// (a BGP router: 1M routes, constant churn) spends at most ~5% of the loop on dumps.
//
// It must run with the main thread in the host netns (the daemon opens it after the guest
// setup window).
//
// A lookup is a PrefixSet lookup (decide.ts): no allocation; the set is rebuilt per dump.

import type { Poller } from "../ffi/poller.ts";
import { EPOLLIN } from "../ffi/poller.ts";
import { closeFd } from "../ffi/netns.ts";
import { formatIp } from "../stack/wire/bytes.ts";
import { type HostLookup, PrefixSet } from "./decide.ts";
import {
  drainMonitor,
  dumpHost,
  type HostDump,
  type HostPrefix,
  ifIndex,
  openRouteMonitor,
  RT_SCOPE_UNIVERSE,
} from "../ffi/rtwatch.ts";

/** slirpnetstack's period. */
export const RESCAN_MS = 30_000;
/** Least time between two dumps caused by change messages. */
export const MIN_GAP_MS = 50;

export interface HostPrefixOptions {
  /** Registers the change socket; without one only the periodic rescan runs. */
  poller?: Poller;
  rescanMs?: number;
  /** For problems (a failed dump keeps the previous set). */
  log?: (line: string) => void;
  /** Replace the netlink dump and the change socket (tests: the same, in another netns). */
  dump?: () => HostDump;
  openMonitor?: () => number;
}

export class HostPrefixes implements HostLookup {
  #set = new PrefixSet([]);
  #prefixes: HostPrefix[] = [];
  #fd = -1;
  #poller: Poller | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #pending: ReturnType<typeof setTimeout> | undefined;
  #lastScan = -Infinity;
  #lastDumpMs = 0;
  #closed = false;
  #lastError: unknown = null;
  readonly #dump: () => HostDump;
  readonly #log: (line: string) => void;
  /** Dumps done, change messages seen, dumps that failed. */
  rescans = 0;
  events = 0;
  failures = 0;
  /** Called after each successful rescan (tests wait on it). */
  onRescan: (() => void) | null = null;

  constructor(opts: HostPrefixOptions = {}) {
    this.#dump = opts.dump ?? dumpHost;
    const monitor = opts.openMonitor ?? (opts.dump ? null : openRouteMonitor);
    this.#log = opts.log ?? ((l) => console.error(l));
    // The change socket before the first dump: a change between the two is then an event,
    // not lost (nothing else would ever dump again).
    if (opts.poller && monitor) {
      try {
        this.#fd = monitor();
        this.#poller = opts.poller;
        opts.poller.add(this, EPOLLIN, () => this.#onEvents());
      } catch (e) {
        if (this.#fd >= 0) closeFd(this.#fd);
        this.#fd = -1;
        this.#poller = undefined;
        this.#log(`[!] host prefixes: no change events (${e}); rescanning every 30 s only`);
      }
    }
    // Before the first flow; a failure here stops slirpd instead of being a log line.
    if (!this.rescan()) {
      this.close();
      throw new Error(`host prefixes: ${this.#lastError}`);
    }
    // With the change socket, events (and its overflow, ENOBUFS: a full dump) cover every
    // change, so the periodic rescan is only the fallback without one: an idle daemon is not
    // woken every 30 s for a dump that finds nothing new.
    const every = opts.rescanMs ?? (this.#fd >= 0 ? 0 : RESCAN_MS);
    if (every > 0) {
      const t = setInterval(() => this.rescan(), every);
      Deno.unrefTimer(t);
      this.#timer = t;
    }
  }

  /** The change socket (Pollable); -1 without one. */
  get fd(): number {
    return this.#fd;
  }

  contains(family: 4 | 6, dst: Uint8Array, off = 0): boolean {
    return this.#set.contains(family, dst, off);
  }

  /** The current prefixes as text (logs, tests). */
  list(): string[] {
    return this.#prefixes.map((p) => `${formatIp(p.addr)}/${p.len}`);
  }

  /** Dumps again now. Returns false (and keeps the previous set) when the dump fails. */
  rescan(): boolean {
    if (this.#closed) return false;
    this.#lastScan = performance.now();
    let d: HostDump;
    try {
      d = this.#dump();
      this.#lastDumpMs = performance.now() - this.#lastScan;
    } catch (e) {
      this.#lastError = e;
      this.failures++;
      if (this.rescans === 0) return false; // the constructor throws it
      if (this.failures === 1 || this.failures % 100 === 0) {
        this.#log(`[!] host prefixes: rescan failed (${e}); keeping the previous set`);
      }
      return false;
    }
    const seen = new Set<string>();
    this.#prefixes = d.prefixes.filter((p) => {
      const k = `${p.addr.join(".")}/${p.len}`;
      return !seen.has(k) && seen.add(k) !== undefined;
    });
    this.#set = new PrefixSet(this.#prefixes);
    this.rescans++;
    this.onRescan?.();
    return true;
  }

  #onEvents(): void {
    const n = drainMonitor(this.#fd);
    if (n === 0) return;
    this.events += n < 0 ? 1 : n;
    if (this.#pending !== undefined) return;
    const gap = Math.max(MIN_GAP_MS, 20 * this.#lastDumpMs);
    const wait = this.#lastScan + gap - performance.now();
    if (wait <= 0) {
      this.rescan();
      return;
    }
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      this.rescan();
    }, wait);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    if (this.#pending !== undefined) clearTimeout(this.#pending);
    if (this.#fd >= 0) {
      this.#poller?.remove(this);
      closeFd(this.#fd);
      this.#fd = -1;
    }
  }
}

/**
 * The address to bind for --outbound-addr IFNAME / --outbound-addr6 IFNAME (slirp4netns takes
 * the interface's address at start): its first global address of the family.
 * Throws a one-line reason when the interface or an address is missing.
 */
export function interfaceAddress(name: string, family: 4 | 6, dump = dumpHost): Uint8Array {
  const index = ifIndex(name);
  if (index === 0) throw new Error(`no interface ${name}`);
  const bytes = family === 4 ? 4 : 16;
  const mine = dump().addrs.filter((a) => a.ifindex === index && a.addr.length === bytes);
  // A link-local address cannot be bound without its scope: only the last resort for IPv4.
  const pick = mine.find((a) => a.scope === RT_SCOPE_UNIVERSE) ??
    (family === 4 ? mine[0] : undefined);
  if (!pick) throw new Error(`interface ${name} has no usable IPv${family} address`);
  return pick.addr;
}
