// Helpers for the ffi tests: hand-built frames the guest kernel answers to, and a bounded
// tap reader. Everything here is deliberately independent of stack/ (the ffi tests check the
// kernel interface, not our packet code).

import nodeAssert from "node:assert";
import type { Tap } from "../../ffi/tap.ts";

export const GW_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
export const GW4 = new Uint8Array([10, 0, 2, 2]);
export const GUEST4 = new Uint8Array([10, 0, 2, 100]);
export const GW6 = new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
export const GUEST6 = new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);

export const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const put16 = (b: Uint8Array, o: number, v: number) => {
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
};
export const eq = (b: Uint8Array, o: number, x: Uint8Array | number[]) =>
  x.every((v, i) => b[o + i] === v);

/** One's complement sum of b[o, o+n) folded with `init`. */
function sum(b: Uint8Array, o: number, n: number, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < n; i += 2) s += (b[o + i] << 8) | b[o + i + 1];
  if (n & 1) s += b[o + n - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
const fin = (s: number) => (~s & 0xffff) || 0xffff;

/** Reads frames until `pred` accepts one (its length is returned) or `ms` pass. */
export async function readUntil(
  tap: Tap,
  buf: Uint8Array,
  pred: (b: Uint8Array, n: number) => boolean,
  ms: number,
  what: string,
): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = tap.read(buf);
    if (n === 0) {
      await new Promise((r) => setTimeout(r, 2));
      continue;
    }
    if (pred(buf, n)) return n;
  }
  throw new Error(`no ${what} read from ${tap.name} within ${ms} ms`);
}

/** Ethernet frame at `e` carries an ARP request for `target`. */
export function isArpRequest(b: Uint8Array, e: number, target: Uint8Array): boolean {
  return be16(b, e + 12) === 0x0806 && be16(b, e + 14 + 6) === 1 && eq(b, e + 14 + 24, target);
}

/** ARP reply "target is at GW_MAC" to the requester of the request at `e`; returns the length. */
export function arpReply(req: Uint8Array, e: number, out: Uint8Array): number {
  out.fill(0, 0, e + 42);
  out.set(req.subarray(e + 6, e + 12), e); // to the requester
  out.set(GW_MAC, e + 6);
  put16(out, e + 12, 0x0806);
  out.set([0, 1, 8, 0, 6, 4, 0, 2], e + 14); // Ethernet/IPv4, reply
  out.set(GW_MAC, e + 22);
  out.set(req.subarray(e + 38, e + 42), e + 28); // sender IP = the asked-for target
  out.set(req.subarray(e + 22, e + 32), e + 32); // target = the requester's MAC + IP
  return e + 42;
}

/** IPv4 ICMP echo request to `dst` at Ethernet offset `e`. */
export function isIcmp4Echo(b: Uint8Array, e: number, dst: Uint8Array): boolean {
  return be16(b, e + 12) === 0x0800 && b[e + 23] === 1 && eq(b, e + 30, dst) &&
    b[e + 14 + ((b[e + 14] & 15) * 4)] === 8;
}

/** Turns the echo request at `e` (length n) into its reply, in `out`. */
export function icmp4EchoReply(req: Uint8Array, e: number, n: number, out: Uint8Array): number {
  out.fill(0, 0, e); // vnet header: no offloads
  out.set(req.subarray(e, n), e);
  out.set(req.subarray(e + 6, e + 12), e);
  out.set(GW_MAC, e + 6);
  out.set(req.subarray(e + 30, e + 34), e + 26); // swapping the addresses keeps the IP checksum
  out.set(req.subarray(e + 26, e + 30), e + 30);
  const ih = e + 14 + (req[e + 14] & 15) * 4;
  out[ih] = 0;
  put16(out, ih + 2, 0);
  put16(out, ih + 2, fin(sum(out, ih, n - ih)));
  return n;
}

function icmp6Sum(b: Uint8Array, ip: number, len: number): number {
  let s = sum(b, ip + 8, 32); // source and destination
  s = sum(new Uint8Array([0, 0, len >> 8, len & 0xff, 0, 0, 0, 58]), 0, 8, s);
  return fin(sum(b, ip + 40, len, s));
}

/** Neighbor solicitation from `src` for `target` at Ethernet offset `e`. */
export function isNeighborSolicitation(
  b: Uint8Array,
  e: number,
  src: Uint8Array,
  target: Uint8Array,
): boolean {
  return be16(b, e + 12) === 0x86dd && b[e + 14 + 6] === 58 && b[e + 54] === 135 &&
    eq(b, e + 22, src) && eq(b, e + 62, target);
}

/** Solicited neighbor advertisement "GW6 is at GW_MAC" answering the NS at `e`. */
export function neighborAdvert(req: Uint8Array, e: number, out: Uint8Array): number {
  const len = 32; // ICMPv6 header 4 + flags 4 + target 16 + TLLA option 8
  out.fill(0, 0, e + 54 + len);
  out.set(req.subarray(e + 6, e + 12), e);
  out.set(GW_MAC, e + 6);
  put16(out, e + 12, 0x86dd);
  const ip = e + 14;
  out[ip] = 0x60;
  put16(out, ip + 4, len);
  out[ip + 6] = 58;
  out[ip + 7] = 255;
  out.set(GW6, ip + 8);
  out.set(req.subarray(ip + 8, ip + 24), ip + 24); // to the solicitor
  const icmp = ip + 40;
  out[icmp] = 136;
  out[icmp + 4] = 0x60; // solicited + override
  out.set(GW6, icmp + 8);
  out.set([2, 1, ...GW_MAC], icmp + 24); // target link-layer address
  put16(out, icmp + 2, icmp6Sum(out, ip, len));
  return icmp + len;
}

/** ICMPv6 echo request to `dst`. */
export function isIcmp6Echo(b: Uint8Array, e: number, dst: Uint8Array): boolean {
  return be16(b, e + 12) === 0x86dd && b[e + 20] === 58 && eq(b, e + 38, dst) && b[e + 54] === 128;
}

export function icmp6EchoReply(req: Uint8Array, e: number, n: number, out: Uint8Array): number {
  out.fill(0, 0, e);
  out.set(req.subarray(e, n), e);
  out.set(req.subarray(e + 6, e + 12), e);
  out.set(GW_MAC, e + 6);
  out.set(req.subarray(e + 38, e + 54), e + 22);
  out.set(req.subarray(e + 22, e + 38), e + 38);
  const ip = e + 14;
  out[ip + 40] = 129;
  put16(out, ip + 42, 0);
  put16(out, ip + 42, icmp6Sum(out, ip, be16(out, ip + 4)));
  return n;
}

// Assertions on node:assert (JSR's @std/assert is not reachable here).
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}
export function assertMatch(s: string, re: RegExp): void {
  nodeAssert.match(s, re);
}
/** Runs `fn`, which must throw (an instance of `cls`, message containing `includes`); returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    if (cls && !(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
    if (!(e instanceof Error)) throw new Error(`expected an Error, got ${e}`);
    if (includes !== undefined && !e.message.includes(includes)) {
      throw new Error(`expected a message with "${includes}", got "${e.message}"`);
    }
    return e as E;
  }
  throw new Error("expected an exception, none was thrown");
}
