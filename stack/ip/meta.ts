// The packet being processed, as the IP layer hands it to a transport. One object is reused
// for every packet (no allocation per frame); it is valid only during the input call.

export class PacketMeta {
  family: 4 | 6 = 4;
  /** The receive buffer holding the whole frame. */
  b: Uint8Array = new Uint8Array(0);
  /** Offsets of the source and destination addresses in `b` (4 or 16 bytes each). */
  srcOff = 0;
  dstOff = 0;
  /** Offset of the IP header in `b` (for ICMP errors that quote it). */
  ipOff = 0;
  /** Upper-layer protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6). */
  proto = 0;
  l4Off = 0;
  l4Len = 0;
  /** The guest kernel marked the L4 checksum as partial or already valid: do not verify it. */
  csumTrusted = false;
  /** The frame is a TSO super-frame of segments of this size (0 = a plain frame). */
  gsoSize = 0;
  /** IPv4 TTL / IPv6 hop limit as received. */
  ttl = 0;
}
