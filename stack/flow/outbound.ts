// Where a new guest flow goes on the host. Every transport asks this one place when a guest
// flow starts (never per packet):
//
//   1. a redirect matches (proto, family, destination address, port) → the flow goes to the
//      redirect's target, and the firewall is not asked: the operator named it. Remote
//      forwards (-R), DNS over TCP (10.0.2.3:53 → the upstream resolver) and the slirp4netns
//      host loopback (10.0.2.2:* → 127.0.0.1:*) are redirects.
//   2. otherwise the firewall's policy decides, and the flow goes to its own destination.
//
// The host socket of a routed flow binds the --outbound-addr of its family when one is set, and
// so does a redirected one whose target asks for it (the host loopback).

import type { Policy } from "../base/names.ts";
import { routable } from "./routable.ts";
import { bytesEqual } from "../wire/bytes.ts";

export interface FlowTarget {
  family: 4 | 6;
  addr: Uint8Array;
  port: number;
  /**
   * The remote forward (-R) behind this redirect; absent for the others (DNS over TCP, host
   * loopback). Its flows carry it: they log as "remote-fwd conn" and end when it is removed.
   */
  owner?: object;
  /** udprpc: the flow ends once the target's first answer reached the guest. */
  rpc?: boolean;
  /** "dns": the flow must carry DNS over TCP only (stack/tcp/dnsframe.ts). */
  framing?: "dns";
  /**
   * The host socket binds the --outbound-addr of the target's family, as a routed flow's does
   * (the host loopback: slirp4netns binds every socket it opens for the guest).
   */
  bindOutbound?: boolean;
}

/** Gives the target now (hostnames and resolv.conf servers change); null = refuse. */
export type TargetFn = (family: 4 | 6, dst: Uint8Array, port: number) => FlowTarget | null;

export interface Redirect {
  proto: 6 | 17;
  family: 4 | 6;
  /** Destination address the guest uses (4 or 16 bytes). */
  addr: Uint8Array;
  /** Destination port; 0 = every port (the host loopback). */
  port: number;
  target: TargetFn;
  /** The guest gets "network unreachable" instead of a connection (--disable-host-loopback). */
  unreachable?: boolean;
  /** The guest gets no answer at all: not a reset, it times out (--disable-dns). */
  drop?: boolean;
}

/** What happens to a new flow. */
export const FlowVerdict = {
  /** Refused by the policy (TCP: RST; UDP: dropped). */
  Refused: 0,
  /** Routed to its own destination, allowed by the policy. */
  Routed: 1,
  /** Redirected: the target is in `Outbound.target`. */
  Redirected: 2,
  /** The guest must see ICMP network unreachable. */
  Unreachable: 3,
  /** Dropped without a word (no RST, no ICMP): the guest times out. */
  Dropped: 4,
} as const;
export type FlowVerdict = typeof FlowVerdict[keyof typeof FlowVerdict];

function key(proto: number, family: number, addr: Uint8Array, port: number): string {
  return `${proto}/${family}/${addr.join(".")}/${port}`;
}

/**
 * The lookup index: (proto, family, port) as one number, the address compared in place. Every
 * new flow asks (two lookups); building the string key for them cost more than the rest of
 * the decision (measured in TCP_CRR profiles: ~6% of slirpd's runtime-side samples).
 */
function slot(proto: number, family: number, port: number): number {
  return ((proto === 6 ? 0 : 2) + (family === 4 ? 0 : 1)) * 65536 + port;
}

export class Outbound {
  readonly #redirects = new Map<string, Redirect>();
  readonly #bySlot = new Map<number, Redirect[]>();
  /** The target of the last `decide` that returned Redirected (reused; copy what you keep). */
  target: FlowTarget | null = null;

  constructor(
    private readonly policy: Policy,
    /** --outbound-addr / --outbound-addr6: the source address routed flows bind. */
    readonly bind4: Uint8Array | null = null,
    readonly bind6: Uint8Array | null = null,
    /** The guest network's IPv4 broadcast (routable.ts broadcast4); -1: none. */
    readonly bcast4 = -1,
  ) {}

  /** Can a flow go to the address at b[o] at all (stack/flow/routable.ts)? */
  routable(family: 4 | 6, b: Uint8Array, o: number): boolean {
    return routable(family, b, o, this.bcast4);
  }

  /** Adds a redirect; returns the function that removes it. Throws if the key is taken. */
  addRedirect(r: Redirect): () => void {
    const k = key(r.proto, r.family, r.addr, r.port);
    if (this.#redirects.has(k)) {
      throw new Error(`a redirect for ${r.proto === 6 ? "tcp" : "udp"} ${k} exists already`);
    }
    this.#redirects.set(k, r);
    const sk = slot(r.proto, r.family, r.port);
    let list = this.#bySlot.get(sk);
    if (list === undefined) this.#bySlot.set(sk, list = []);
    list.push(r);
    return () => {
      if (this.#redirects.get(k) !== r) return;
      this.#redirects.delete(k);
      const l = this.#bySlot.get(sk);
      const i = l === undefined ? -1 : l.indexOf(r);
      if (l === undefined || i < 0) return;
      l.splice(i, 1);
      if (l.length === 0) this.#bySlot.delete(sk);
    };
  }

  /** Is there a redirect (of any port) for this address? For ARP/NDP of -R bind addresses. */
  hasAddress(family: 4 | 6, addr: Uint8Array, off = 0): boolean {
    const n = family === 4 ? 4 : 16;
    for (const r of this.#redirects.values()) {
      if (r.family !== family) continue;
      let same = true;
      for (let i = 0; i < n && same; i++) same = r.addr[i] === addr[off + i];
      if (same) return true;
    }
    return false;
  }

  #find(proto: number, family: 4 | 6, dst: Uint8Array, port: number): Redirect | undefined {
    if (this.#redirects.size === 0) return undefined;
    return this.#inSlot(slot(proto, family, port), dst) ??
      (port === 0 ? undefined : this.#inSlot(slot(proto, family, 0), dst));
  }

  #inSlot(sk: number, dst: Uint8Array): Redirect | undefined {
    const list = this.#bySlot.get(sk);
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) {
      const r = list[i];
      if (r.addr.length === dst.length && bytesEqual(r.addr, 0, dst, 0, dst.length)) return r;
    }
    return undefined;
  }

  /**
   * Decides a new guest flow (proto 6 or 17) to dst:port: a redirect, else a destination that
   * is routable (routable.ts) and that the policy allows.
   */
  decide(proto: 6 | 17, family: 4 | 6, dst: Uint8Array, port: number): FlowVerdict {
    const r = this.#find(proto, family, dst, port);
    if (r) {
      if (r.unreachable) return FlowVerdict.Unreachable;
      if (r.drop) return FlowVerdict.Dropped;
      const t = r.target(family, dst, port);
      if (t === null) return FlowVerdict.Refused;
      this.target = t;
      return FlowVerdict.Redirected;
    }
    if (!routable(family, dst, 0, this.bcast4)) return FlowVerdict.Refused;
    return this.policy(family, proto, dst, port) ? FlowVerdict.Routed : FlowVerdict.Refused;
  }

  /** The source address a routed flow's host socket binds (null: the kernel picks). */
  bindFor(family: 4 | 6): Uint8Array | null {
    return family === 4 ? this.bind4 : this.bind6;
  }

  /** How many redirects exist (for tests and the stop line). */
  get size(): number {
    return this.#redirects.size;
  }
}

/** What the guest's flows to its gateway become (slirp4netns: the host's loopback). */
export type HostLoopback = "redirect" | "unreachable";

/**
 * slirp4netns' host loopback: TCP and UDP to the gateway (10.0.2.2, fd00::2), every port,
 * reach the host's 127.0.0.1 / ::1 on the same port ("redirect"), or, with
 * --disable-host-loopback, get ICMP network unreachable as from slirp4netns ("unreachable").
 * Ping of the gateway is not a flow: stack/icmp/icmp.ts answers it either way. Returns the undo.
 */
export function addHostLoopback(
  out: Outbound,
  gateway4: Uint8Array,
  gateway6: Uint8Array,
  mode: HostLoopback,
): () => void {
  const unreachable = mode === "unreachable";
  // One target object per family, refilled per flow (decide's callers copy what they keep).
  // --outbound-addr binds these too: the host sees that source, as with slirp4netns.
  const t4: FlowTarget = {
    family: 4,
    addr: new Uint8Array([127, 0, 0, 1]),
    port: 0,
    bindOutbound: true,
  };
  const lo6 = new Uint8Array(16);
  lo6[15] = 1;
  const t6: FlowTarget = { family: 6, addr: lo6, port: 0, bindOutbound: true };
  const to4: TargetFn = (_f, _dst, port) => {
    t4.port = port;
    return t4;
  };
  const to6: TargetFn = (_f, _dst, port) => {
    t6.port = port;
    return t6;
  };
  const undo: (() => void)[] = [];
  for (const proto of [6, 17] as const) {
    undo.push(out.addRedirect({
      proto,
      family: 4,
      addr: gateway4.slice(),
      port: 0,
      target: to4,
      unreachable,
    }));
    undo.push(out.addRedirect({
      proto,
      family: 6,
      addr: gateway6.slice(),
      port: 0,
      target: to6,
      unreachable,
    }));
  }
  return () => undo.forEach((u) => u());
}

/**
 * --disable-dns: TCP and UDP to the DNS address's port 53 (10.0.2.3, fd00::3) get no answer at
 * all, as from slirp4netns (the guest's resolver times out rather than being refused).
 */
export function addDnsBlackhole(out: Outbound, dns4: Uint8Array, dns6: Uint8Array): void {
  const nowhere: TargetFn = () => null;
  for (const proto of [6, 17] as const) {
    out.addRedirect({
      proto,
      family: 4,
      addr: dns4.slice(),
      port: 53,
      target: nowhere,
      drop: true,
    });
    out.addRedirect({
      proto,
      family: 6,
      addr: dns6.slice(),
      port: 53,
      target: nowhere,
      drop: true,
    });
  }
}
