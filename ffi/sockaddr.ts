// Socket addresses as slirpd passes them around: a family (4 | 6), the address as a
// Uint8Array of 4 or 16 bytes, and a port number. This file encodes them into and decodes
// them from the kernel's sockaddr_in / sockaddr_in6 layouts, which are the same on x86_64 and
// aarch64 Linux:
//
//   sockaddr_in   (16 bytes): u16 family (host order), u16 port (BE), 4 addr, 8 zero
//   sockaddr_in6  (28 bytes): u16 family (host order), u16 port (BE), u32 flowinfo,
//                             16 addr, u32 scope_id
//
// Encoding writes into a caller-provided (preallocated) buffer and allocates nothing; the
// decoders that return objects are for setup and logging paths only.

/** Address family as slirpd names it: IPv4 or IPv6. */
export type Family = 4 | 6;

/** An address and port, as returned by getsockname/getpeername-style calls (allocated). */
export interface SockAddr {
  addr: Uint8Array;
  port: number;
}

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCKADDR_IN_LEN = 16;
export const SOCKADDR_IN6_LEN = 28;
/** sizeof(struct sockaddr_storage): room for any address the kernel hands back. */
export const SOCKADDR_STORAGE_LEN = 128;

/** The kernel's AF_ constant for a family. */
export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

/**
 * Writes family/addr/port as a sockaddr at `o` in `u8` (which must have room for 28 bytes);
 * returns the sockaddr length to pass to the kernel. Throws RangeError when the address
 * length does not match the family (a programming error, never a runtime condition).
 */
export function writeSockaddr(
  u8: Uint8Array,
  o: number,
  family: Family,
  addr: Uint8Array,
  port: number,
): number {
  if (family === 4) {
    if (addr.length !== 4) throw new RangeError(`IPv4 address of ${addr.length} bytes`);
    u8[o] = AF_INET; // little-endian u16 family on both supported targets
    u8[o + 1] = 0;
    u8[o + 2] = (port >>> 8) & 0xff;
    u8[o + 3] = port & 0xff;
    u8.set(addr, o + 4);
    u8.fill(0, o + 8, o + 16);
    return SOCKADDR_IN_LEN;
  }
  if (addr.length !== 16) throw new RangeError(`IPv6 address of ${addr.length} bytes`);
  u8[o] = AF_INET6;
  u8[o + 1] = 0;
  u8[o + 2] = (port >>> 8) & 0xff;
  u8[o + 3] = port & 0xff;
  u8.fill(0, o + 4, o + 8); // flowinfo
  u8.set(addr, o + 8);
  u8.fill(0, o + 24, o + 28); // scope_id
  return SOCKADDR_IN6_LEN;
}

/** Writes the wildcard address (0.0.0.0 / ::) with `port`; returns the sockaddr length. */
export function writeAnySockaddr(u8: Uint8Array, o: number, family: Family, port: number): number {
  return writeSockaddr(u8, o, family, family === 4 ? ANY4 : ANY6, port);
}

const ANY4 = new Uint8Array(4);
const ANY6 = new Uint8Array(16);

/** The family stored in a sockaddr at `o`, or 0 for anything but AF_INET/AF_INET6. */
export function sockaddrFamily(u8: Uint8Array, o: number): Family | 0 {
  const af = u8[o] | (u8[o + 1] << 8);
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : 0;
}

/** The port of a sockaddr_in/sockaddr_in6 at `o`. */
export function sockaddrPort(u8: Uint8Array, o: number): number {
  return (u8[o + 2] << 8) | u8[o + 3];
}

/** Offset of the address bytes inside a sockaddr of `family`. */
export function sockaddrAddrOffset(family: Family): number {
  return family === 4 ? 4 : 8;
}

/** Decodes a sockaddr at `o` into a new SockAddr (allocates; setup/log paths only). */
export function readSockaddr(u8: Uint8Array, o: number): SockAddr | null {
  const family = sockaddrFamily(u8, o);
  if (family === 0) return null;
  const a = o + sockaddrAddrOffset(family);
  return { addr: u8.slice(a, a + (family === 4 ? 4 : 16)), port: sockaddrPort(u8, o) };
}

/** "192.0.2.1" / "2001:db8::1" (RFC 5952 compressed form), for logs and tests. */
export function formatAddr(addr: Uint8Array): string {
  if (addr.length === 4) return addr.join(".");
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((addr[i] << 8) | addr[i + 1]);
  // Longest run (>= 2) of zero words becomes "::".
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** Parses a dotted IPv4 or an IPv6 literal into 4 or 16 bytes; null when malformed. */
export function parseAddr(s: string): Uint8Array | null {
  if (!s.includes(":")) {
    const parts = s.split(".");
    if (parts.length !== 4) return null;
    const out = new Uint8Array(4);
    for (let i = 0; i < 4; i++) {
      if (!/^\d{1,3}$/.test(parts[i]) || Number(parts[i]) > 255) return null;
      out[i] = Number(parts[i]);
    }
    return out;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const words = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    for (const w of h.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
      out.push(parseInt(w, 16));
    }
    return out;
  };
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  if (head === null || tail === null) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}
