// The sanity block list: destinations a guest must never reach through slirpd unless a rule
// names them explicitly. Loopback and "this host" ranges would let a sandboxed guest talk to
// services bound to the host's loopback; the guest's own network would loop back into itself;
// the IPv4-mapped, IPv4-compatible and NAT64 ranges are other spellings of IPv4 addresses that
// would dodge the IPv4 rules. (slirpnetstack's StaticRoutingDeny, plus the guest's IPv6 network.)
// An --allow rule opens a range of it (step 2 comes before step 3).

import type { NetPlan } from "../stack/base/netplan.ts";
import { PrefixSet } from "./decide.ts";

export interface Prefix {
  addr: Uint8Array;
  len: number;
}

function p(bytes: number[], len: number, size: 4 | 16): Prefix {
  const addr = new Uint8Array(size);
  addr.set(bytes);
  return { addr, len };
}

/** The fixed part of the list; the guest network (--cidr) is added per config. */
export const SANITY_V4: Prefix[] = [
  p([0], 8, 4), // "this network"
  p([127], 8, 4), // loopback
  p([169, 254], 16, 4), // link-local (a cloud's metadata service): only an --allow opens it
  p([255, 255, 255, 255], 32, 4), // limited broadcast
];

export const SANITY_V6: Prefix[] = [
  p([], 128, 16), // ::/128 unspecified
  p([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128, 16), // ::1 loopback
  p([], 96, 16), // ::/96 IPv4-compatible
  p([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 96, 16), // ::ffff:0:0/96 IPv4-mapped
  p([0, 0x64, 0xff, 0x9b], 96, 16), // 64:ff9b::/96 NAT64
];

/** Does `addr` (4 or 16 bytes) lie in `prefix`? */
export function inPrefix(addr: Uint8Array, prefix: Prefix): boolean {
  if (addr.length !== prefix.addr.length) return false;
  const whole = prefix.len >> 3;
  for (let i = 0; i < whole; i++) if (addr[i] !== prefix.addr[i]) return false;
  const rest = prefix.len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr[whole] & mask) === (prefix.addr[whole] & mask);
}

/** The whole list for one configuration: the fixed part plus the guest's two networks. */
export function sanityList(plan: NetPlan): Prefix[] {
  return [
    ...SANITY_V4,
    { addr: plan.prefix4, len: plan.prefixLen4 },
    ...SANITY_V6,
    { addr: plan.prefix6, len: plan.prefixLen6 },
  ];
}

/** sanityList as a PrefixSet (what the decision looks up). */
export function sanitySet(plan: NetPlan): PrefixSet {
  return new PrefixSet(sanityList(plan));
}
