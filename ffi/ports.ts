// Ephemeral ports for host connects once the kernel's own choice ran out (see
// TcpSocket.connect). A guest that opens and closes short connections makes slirpd's host
// socket the side that closes first (it carries the guest's FIN), so each one ends in
// TIME-WAIT for 60 s on the host; at a few hundred connections per second to one destination
// the kernel finds no free 4-tuple in ip_local_port_range and connect() fails with
// EADDRNOTAVAIL. Linux lets a connect() from an explicitly bound port take over a TIME-WAIT
// entry of the same 4-tuple when both sockets set SO_REUSEADDR and the old connection used
// TCP timestamps (PAWS then tells old segments from new ones: tcp_twsk_unique). That is what
// the fallback does: bind() to the next port of the range (reserved ports skipped), connect().

/** Ports tried per connect before giving up with EADDRNOTAVAIL. */
export const REUSE_TRIES = 32;

let lo = 0;
let hi = -1;
let next = 0;
let reserved: Set<number> | null = null;

function readRange(): void {
  lo = 32768;
  hi = 60999; // the kernel's default, if /proc cannot be read (e.g. after --enable-sandbox)
  try {
    const [a, b] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
      .split(/\s+/).map(Number);
    if (a > 0 && b >= a && b < 65536) [lo, hi] = [a, b];
  } catch { /* default */ }
  reserved = new Set();
  try {
    const r = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_reserved_ports").trim();
    for (const part of r.split(",").filter(Boolean)) {
      const [a, b] = part.split("-").map(Number);
      for (let p = a; p <= (b ?? a) && p - a < 65536; p++) reserved.add(p);
    }
  } catch { /* none */ }
  next = lo + Math.floor(Math.random() * (hi - lo + 1));
}

/** The next port of the ephemeral range to bind explicitly (round robin from a random start). */
export function nextEphemeralPort(): number {
  if (hi < lo) readRange();
  for (let i = 0; i <= hi - lo; i++) {
    const p = next;
    next = next >= hi ? lo : next + 1;
    if (!reserved!.has(p)) return p;
  }
  return lo;
}
