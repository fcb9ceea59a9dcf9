// The addresses slirpd owns and hands out on the guest link. slirp4netns' defaults: network
// 10.0.2.0/24 with the gateway at .2, the DNS forwarder at .3 and the guest at .100; the same
// layout in fd00::/64. A later `--cidr`/`--cidr6` only changes the two prefixes.

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

export function defaultNetPlan(): NetPlan {
  const prefix4 = new Uint8Array([10, 0, 2, 0]);
  const prefix6 = new Uint8Array(16);
  prefix6[0] = 0xfd;
  const mac = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
  const linkLocal6 = new Uint8Array(16);
  linkLocal6.set([0xfe, 0x80]);
  linkLocal6.set([mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]], 8);
  return {
    prefix4,
    prefixLen4: 24,
    gateway4: withHost(prefix4, 2),
    dns4: withHost(prefix4, 3),
    guest4: withHost(prefix4, 100),
    prefix6,
    prefixLen6: 64,
    gateway6: withHost(prefix6, 2),
    dns6: withHost(prefix6, 3),
    guest6: withHost(prefix6, 0x100),
    linkLocal6,
    mac,
  };
}
