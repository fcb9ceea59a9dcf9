// The names every layer of the stack shares, each defined once: IP protocol numbers, epoll
// bits, the policy a new flow asks, the poller interface transports register with, and the
// address:port form used in logs. Import them from here, never redefine them.
//
// The numbers themselves live where they are facts: protocol numbers in each protocol's
// wire view (IANA), epoll bits in ffi/poller.ts (the kernel ABI). This module gives them the
// stack's names so no layer reaches sideways into another to find one.

import { IPPROTO_ICMP } from "../wire/icmpv4.ts";
import { IPPROTO_ICMPV6 } from "../wire/icmpv6.ts";
import { IPPROTO_TCP } from "../wire/tcp.ts";
import { IPPROTO_UDP } from "../wire/udp.ts";
import { formatIp, isV4Mapped } from "../wire/bytes.ts";

export { bytesEqual, isV4Mapped } from "../wire/bytes.ts";
export { EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP } from "../../ffi/poller.ts";

/** IP protocol numbers (IANA), as they appear in the IPv4 protocol / IPv6 next-header field. */
export const PROTO_ICMP = IPPROTO_ICMP;
export const PROTO_TCP = IPPROTO_TCP;
export const PROTO_UDP = IPPROTO_UDP;
export const PROTO_ICMPV6 = IPPROTO_ICMPV6;

/**
 * "May a new guest flow to (family, proto, dst, port) start?" The daemon builds it from the
 * firewall (firewall/policy.ts); the stack only calls it, once per new flow.
 */
export type Policy = (family: 4 | 6, proto: number, dst: Uint8Array, port: number) => boolean;

/** The part of ffi/poller.ts's Poller that transports use (tests pass a fake). */
export interface PollerLike {
  add(
    p: { readonly fd: number },
    events: number,
    h: (events: number, owner: never) => void,
    owner?: unknown,
  ): void;
  modify(p: { readonly fd: number }, events: number): void;
  remove(p: { readonly fd: number }, closing?: boolean): void;
}

/** The IPv4 address inside a v4-mapped IPv6 one (::ffff:a.b.c.d), else the address itself. */
export function unmap(a: Uint8Array): Uint8Array {
  return isV4Mapped(a) ? a.subarray(12) : a;
}

/**
 * "1.2.3.4:80" or "[::1]:80", from 4/16 bytes (a v4-mapped address prints as IPv4) or from
 * text. Allocates: for logs and messages only.
 */
export function addrPort(addr: Uint8Array | string, port: number): string {
  const a = typeof addr === "string" ? addr : formatIp(unmap(addr));
  return a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`;
}

/** Two addresses (4 or 16 bytes each) are the same. */
export function sameAddr(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
