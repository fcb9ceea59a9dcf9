// DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): the guest's connections to slirpd's DNS
// address:53 are redirected to the upstream resolver, and they must carry DNS queries only —
// each a 2-byte length and a message of at least a DNS header (12 bytes) that reads as a query
// (QR clear, opcode QUERY/NOTIFY/UPDATE, Z and RCODE clear, at most one question).
// Anything else (an HTTP request, a stream of garbage) would use the resolver's address as a
// tunnel the firewall never decided on: the connection is reset. The check runs over in-order
// guest bytes once each (Conn.dnsSeen: how far it got), with four numbers of state per
// connection and no copy.

import type { Conn } from "./conn.ts";

/** A DNS message is at least its header. */
export const DNS_HEADER_LEN = 12;

/** Marks `c` as a DNS-over-TCP connection: its guest bytes are checked from now on. */
export function expectDnsFraming(c: Conn): void {
  c.dnsFramed = true;
  c.dnsSeen = c.rcvNxt;
  c.dnsLenBytes = 0;
  c.dnsLen = 0;
  c.dnsPos = 0;
}

/** Checks the next `len` in-order guest bytes at b[off]; false: not DNS over TCP. */
export function dnsFramesOk(c: Conn, b: Uint8Array, off: number, len: number): boolean {
  let i = 0;
  while (i < len) {
    if (c.dnsLenBytes < 2) {
      c.dnsLen = (c.dnsLen << 8) | b[off + i];
      c.dnsLenBytes++;
      i++;
      if (c.dnsLenBytes === 2) {
        if (c.dnsLen < DNS_HEADER_LEN) return false;
        c.dnsPos = 0;
      }
      continue;
    }
    const k = Math.min(c.dnsLen - c.dnsPos, len - i);
    // The header bytes that say "a query" (they may straddle segments): each checked once.
    const end = c.dnsPos + k < 6 ? c.dnsPos + k : 6;
    for (let j = c.dnsPos > 2 ? c.dnsPos : 2; j < end; j++) {
      if (!queryHeaderByte(j, b[off + i + j - c.dnsPos])) return false;
    }
    c.dnsPos += k;
    i += k;
    if (c.dnsPos === c.dnsLen) c.dnsLenBytes = c.dnsLen = c.dnsPos = 0;
  }
  return true;
}

/**
 * Byte `j` (2..5) of a DNS header as a query has it (RFC 1035 §4.1.1, RFC 6895): QR clear and
 * opcode QUERY, NOTIFY or UPDATE; Z clear and RCODE 0; QDCOUNT (ZOCOUNT) 0 or 1.
 */
function queryHeaderByte(j: number, x: number): boolean {
  if (j === 2) {
    const opcode = (x >> 3) & 0xf;
    return (x & 0x80) === 0 && (opcode === 0 || opcode === 4 || opcode === 5);
  }
  if (j === 3) return (x & 0x4f) === 0;
  if (j === 4) return x === 0;
  return x <= 1;
}
