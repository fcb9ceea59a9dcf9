// The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) that a `tcppp://` local
// forward's clients send first: it names the original client, whom the guest then sees as the
// source. Only the header is consumed from the host socket; what follows goes to the guest.
//
//   v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN ...\r\n", at most 107 bytes
//   v2: 12-byte signature, ver/cmd, family, u16 length, addresses (+ TLVs, skipped)
//
// A LOCAL (v2) or UNKNOWN (v1) header is valid and carries no address: the connection's own
// source is used then.

import { u16 } from "../wire/bytes.ts";
import { isV4Mapped, parseAddr } from "./spec.ts";

/** Most bytes a header may take here (v1 is at most 107; v2 TLVs beyond this are refused). */
export const PP_MAX = 4096;
/** parseProxyHeader: not enough bytes yet. */
export const PP_MORE = 0;
/** parseProxyHeader: not a valid header; `ppError.reason` says what was wrong. */
export const PP_BAD = -1;

/** Why the last parseProxyHeader returned PP_BAD (one line for the PP error log). */
export const ppError = { reason: "" };

function bad(reason: string): number {
  ppError.reason = reason;
  return PP_BAD;
}

export interface ProxyHeader {
  /** Bytes the header takes. */
  len: number;
  /** The original client and the address it connected to; null for LOCAL / UNKNOWN. */
  src: { addr: Uint8Array; port: number } | null;
  dst: { addr: Uint8Array; port: number } | null;
}

const V1 = new TextEncoder().encode("PROXY ");
const V2 = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

function prefixOf(b: Uint8Array, n: number, sig: Uint8Array): boolean {
  const k = Math.min(n, sig.length);
  for (let i = 0; i < k; i++) if (b[i] !== sig[i]) return false;
  return true;
}

/** Parses the header at the start of b[0, n): a ProxyHeader, PP_MORE or PP_BAD. */
export function parseProxyHeader(b: Uint8Array, n: number): ProxyHeader | number {
  if (n <= 0) return PP_MORE;
  if (prefixOf(b, n, V2)) return n < 16 ? PP_MORE : parseV2(b, n);
  if (prefixOf(b, n, V1)) return n < V1.length ? PP_MORE : parseV1(b, n);
  return bad('bad magic: neither "PROXY " (v1) nor the v2 signature');
}

function parseV1(b: Uint8Array, n: number): ProxyHeader | number {
  let end = -1;
  const lim = Math.min(n, V1_MAX);
  for (let i = 1; i < lim; i++) {
    if (b[i] === 0x0a) {
      end = i;
      break;
    }
  }
  if (end < 0) return n >= V1_MAX ? bad(`v1 header without "\\r\\n" in ${V1_MAX} bytes`) : PP_MORE;
  if (b[end - 1] !== 0x0d) return bad('v1 header line ends in "\\n" without "\\r"');
  const line = new TextDecoder().decode(b.subarray(V1.length, end - 1));
  const len = end + 1;
  const p = line.split(" ");
  if (p[0] === "UNKNOWN") return { len, src: null, dst: null };
  if (p[0] !== "TCP4" && p[0] !== "TCP6") {
    return bad(`v1 protocol "${p[0]}" (TCP4, TCP6 or UNKNOWN)`);
  }
  if (p.length !== 5) return bad(`v1 header has ${p.length - 1} fields after ${p[0]}, not 4`);
  const size = p[0] === "TCP4" ? 4 : 16;
  const src = parseAddr(p[1]), dst = parseAddr(p[2]);
  const sp = port(p[3]), dp = port(p[4]);
  // A TCP6 header may carry ::ffff:a.b.c.d, which parseAddr turns into IPv4: accept both.
  if (src === null) return bad(`v1 source address "${p[1]}" is not an IP address`);
  if (dst === null) return bad(`v1 destination address "${p[2]}" is not an IP address`);
  if (sp < 0) return bad(`v1 source port "${p[3]}" is not a port number`);
  if (dp < 0) return bad(`v1 destination port "${p[4]}" is not a port number`);
  if (size === 4 && (src.length !== 4 || dst.length !== 4)) {
    return bad("v1 TCP4 header with IPv6 addresses");
  }
  return { len, src: { addr: src, port: sp }, dst: { addr: dst, port: dp } };
}

function port(s: string): number {
  return /^[0-9]{1,5}$/.test(s) && Number(s) <= 65535 ? Number(s) : -1;
}

function parseV2(b: Uint8Array, n: number): ProxyHeader | number {
  const verCmd = b[12];
  if (verCmd >> 4 !== 2) return bad(`v2 version ${verCmd >> 4} (only 2)`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return bad(`v2 command ${cmd} (LOCAL or PROXY)`);
  const len = 16 + u16(b, 14);
  if (len > PP_MAX) return bad(`v2 header of ${len} bytes (at most ${PP_MAX})`);
  if (n < len) return PP_MORE;
  const af = b[13] >> 4;
  if (cmd === 0 || af === 0 || af === 3) return { len, src: null, dst: null }; // LOCAL, UNSPEC, UNIX
  if (af === 1) {
    if (len < 16 + 12) return bad("v2 IPv4 header too short for its addresses");
    return {
      len,
      src: { addr: b.slice(16, 20), port: u16(b, 24) },
      dst: { addr: b.slice(20, 24), port: u16(b, 26) },
    };
  }
  if (af === 2) {
    if (len < 16 + 36) return bad("v2 IPv6 header too short for its addresses");
    const src = b.slice(16, 32), dst = b.slice(32, 48);
    return {
      len,
      src: { addr: unmapped(src), port: u16(b, 48) },
      dst: { addr: unmapped(dst), port: u16(b, 50) },
    };
  }
  return bad(`v2 address family ${af}`);
}

function unmapped(a: Uint8Array): Uint8Array {
  return isV4Mapped(a) ? a.slice(12) : a;
}
