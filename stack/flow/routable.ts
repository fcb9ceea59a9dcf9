// Destinations that are never a flow, whatever the firewall says: one check for TCP, UDP and
// ICMP echo alike (Outbound.routable). A host socket "connected" to one of these would not reach
// what the guest addressed, or would reach the host itself:
//   - 0.0.0.0/8 and :: : Linux connects an unspecified destination to the host's own loopback;
//   - ::ffff:0:0/96 (IPv4-mapped) and ::/96 (IPv4-compatible, ::1 aside): on an IPv6 socket
//     they are IPv4 addresses in disguise (RFC 4291 §2.5.5: not for the wire), which would
//     dodge every IPv4 rule; slirpd's IPv6 sockets are IPV6_V6ONLY besides;
//   - multicast and broadcast (224.0.0.0/3 with 255.255.255.255, the guest network's broadcast,
//     ff00::/8): replies would not come from where the guest sent;
//   - fe80::/10: a link-local address means the guest's link, which holds only slirpd.
// 169.254.0.0/16 is routable here (a cloud's metadata service lives there) but sits on the
// firewall's sanity block list: only an --allow rule opens it. Loopback (127/8, ::1) is the
// firewall's business too (--allow can name it, --disable-host-loopback closes it for good).

/** The guest network's IPv4 broadcast address as an unsigned 32-bit number. */
export function broadcast4(prefix4: Uint8Array, prefixLen4: number): number {
  const net = ((prefix4[0] << 24) | (prefix4[1] << 16) | (prefix4[2] << 8) | prefix4[3]) >>> 0;
  const host = prefixLen4 >= 32 ? 0 : (0xffffffff >>> prefixLen4);
  return (net | host) >>> 0;
}

/**
 * May a flow go to the address at b[o] (4 or 16 bytes)? `bcast4` is the guest network's
 * broadcast (broadcast4), -1 for none. No allocation: called once per new flow.
 */
export function routable(family: 4 | 6, b: Uint8Array, o: number, bcast4: number): boolean {
  if (family === 4) {
    const a = b[o];
    if (a === 0 || a >= 224) return false; // this network; multicast, reserved, broadcast
    const v = ((a << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
    return v !== bcast4;
  }
  const a = b[o];
  if (a === 0xff) return false; // multicast
  if (a === 0xfe && (b[o + 1] & 0xc0) === 0x80) return false; // link-local
  if (a !== 0) return true;
  let zero10 = true;
  for (let i = 1; i < 10 && zero10; i++) zero10 = b[o + i] === 0;
  if (!zero10) return true;
  const w5 = (b[o + 10] << 8) | b[o + 11];
  if (w5 === 0xffff) return false; // ::ffff:0:0/96, IPv4-mapped
  if (w5 !== 0) return true;
  // ::/96: the unspecified address and the IPv4-compatible ones; ::1 (loopback) is the
  // firewall's to decide.
  return b[o + 12] === 0 && b[o + 13] === 0 && b[o + 14] === 0 && b[o + 15] === 1;
}
