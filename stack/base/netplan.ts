// The addresses slirpd owns and hands out on the guest link. slirp4netns' defaults: network
// 10.0.2.0/24 with the gateway at .2, the DNS forwarder at .3, DHCP at .15-.30 and the guest
// at .100; the same layout in fd00::/64 (::2, ::3, ::100). `--cidr`/`--cidr6` only change the
// two prefixes (netPlanFrom); parseCidr is their validation.

import { formatIp, parseIp } from "../wire/bytes.ts";

export interface NetPlan {
  prefix4: Uint8Array;
  prefixLen4: number;
  gateway4: Uint8Array;
  dns4: Uint8Array;
  guest4: Uint8Array;
  prefix6: Uint8Array;
  prefixLen6: number;
  gateway6: Uint8Array;
  dns6: Uint8Array;
  guest6: Uint8Array;
  /** slirpd's IPv6 link-local address (EUI-64 of `mac`): routers speak NDP from it. */
  linkLocal6: Uint8Array;
  /** slirpd's MAC on the guest link: fixed and locally administered (libslirp uses the same). */
  mac: Uint8Array;
}

/** prefix + host number (host < 65536): 10.0.2.0 + 2, or fd00:: + 0x100 = fd00::100. */
function withHost(prefix: Uint8Array, host: number): Uint8Array {
  const a = new Uint8Array(prefix);
  a[a.length - 1] |= host & 0xff;
  a[a.length - 2] |= host >> 8;
  return a;
}

/** A network: its address (host bits zero) and prefix length. */
export interface Cidr {
  addr: Uint8Array;
  len: number;
}

export const DEFAULT_CIDR4 = "10.0.2.0/24";
export const DEFAULT_CIDR6 = "fd00::/64";
/** v4: network+100 (the guest) must fit, as slirp4netns requires (1..25). */
export const CIDR4_MAX_LEN = 25;
/** v6: at most /64; Linux's SLAAC only takes /64 prefixes (shorter ones: no A flag). */
export const CIDR6_MAX_LEN = 64;

/**
 * Parses "10.0.3.0/24" (family 4) or "fd00:1234::/64" (family 6). Returns the network, or a
 * one-line reason when it is not acceptable. Host bits must be zero, as slirp4netns
 * demands ("10.0.2.100/24" is refused, naming 10.0.2.0/24): a typo is not silently moved.
 */
export function parseCidr(text: string, family: 4 | 6): Cidr | string {
  const m = /^([0-9a-fA-F.:]+)\/([0-9]{1,3})$/.exec(text);
  if (!m) {
    return family === 4 ? "not an IPv4 CIDR like 10.0.2.0/24" : "not an IPv6 CIDR like fd00::/64";
  }
  const addr = parseIp(m[1]);
  const size = family === 4 ? 4 : 16;
  if (addr === null || addr.length !== size) {
    return `"${m[1]}" is not an IPv${family} address`;
  }
  const len = Number(m[2]);
  const max = family === 4 ? CIDR4_MAX_LEN : CIDR6_MAX_LEN;
  if (len < 1 || len > max) return `prefix length must be 1..${max}`;
  const net = new Uint8Array(addr);
  for (let bit = len; bit < size * 8; bit++) net[bit >> 3] &= ~(0x80 >> (bit & 7));
  if (!net.every((x, i) => x === addr[i])) {
    const shown = formatIp(net);
    return `host bits must be zero (the network is ${shown}/${len})`;
  }
  if (family === 4) {
    if (net[0] === 0 || net[0] === 127 || net[0] >= 224) {
      return "must not be in 0.0.0.0/8, 127.0.0.0/8 or 224.0.0.0/3";
    }
  } else if (net[0] === 0 || net[0] === 0xff || (net[0] === 0xfe && (net[1] & 0xc0) === 0x80)) {
    return "must not be in ::/8, fe80::/10 (link-local) or ff00::/8 (multicast)";
  }
  return { addr: net, len };
}

/** The default plan: 10.0.2.0/24 and fd00::/64. */
export function defaultNetPlan(): NetPlan {
  return netPlanFrom(
    parseCidr(DEFAULT_CIDR4, 4) as Cidr,
    parseCidr(DEFAULT_CIDR6, 6) as Cidr,
  );
}

/** The plan for the networks of --cidr and --cidr6 (validated by parseCidr). */
export function netPlanFrom(cidr4: Cidr, cidr6: Cidr): NetPlan {
  const prefix4 = new Uint8Array(cidr4.addr);
  const prefix6 = new Uint8Array(cidr6.addr);
  const mac = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
  const linkLocal6 = new Uint8Array(16);
  linkLocal6.set([0xfe, 0x80]);
  linkLocal6.set([mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]], 8);
  return {
    prefix4,
    prefixLen4: cidr4.len,
    gateway4: withHost(prefix4, 2),
    dns4: withHost(prefix4, 3),
    guest4: withHost(prefix4, 100),
    prefix6,
    prefixLen6: cidr6.len,
    gateway6: withHost(prefix6, 2),
    dns6: withHost(prefix6, 3),
    guest6: withHost(prefix6, 0x100),
    linkLocal6,
    mac,
  };
}
