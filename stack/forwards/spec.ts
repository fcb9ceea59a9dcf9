// Port forward specs as slirpnetstack takes them (`-L` local → guest, `-R` guest → host):
//
//   [PROTO://]BINDPORT
//   [PROTO://]BINDIP:BINDPORT
//   [PROTO://]BINDPORT:TARGETIP:TARGETPORT
//   [PROTO://]BINDIP:BINDPORT:TARGETIP:TARGETPORT
//
// The spec splits on colons outside `[...]` (so `[::1]:80` is two parts); every part may be
// empty (`udp://:0::53`). PROTO is tcp (default), udp, tcppp (TCP whose clients start with
// a PROXY protocol header, v1 or v2), udpspp (UDP whose datagrams carry Cloudflare's 38-byte
// Simple Proxy Protocol header: spp.ts) or udprpc (UDP whose flow ends after the first reply). A missing target port is the bind port; port 0 is "pick
// one" when binding and "the port the flow came to" as a target. IP parts are literals or host
// names (resolved later, with a TTL). Defaults depend on the guest's addresses (--cidr), so
// parsing leaves them null and `withDefaults` fills them in.
//
// Differences from slirpnetstack, on purpose: a spec with more than four parts, a port that is
// not a number or an IP part that is neither an address nor a host name is refused here
// (slirpnetstack ignores the first and fails later on the others).

import { isV4Mapped, parseIp } from "../wire/bytes.ts";
import { parseSrvLabel } from "./srv.ts";

export { isV4Mapped };

export type FwdDir = "local" | "remote";

/**
 * --forward-splice (stack/forwards/splice.ts): when a local TCP forward's connection is
 * spliced to a socket made in the guest netns instead of going through the TCP engine.
 */
export type SpliceMode = "auto" | "always" | "never";

export interface ForwardSpec {
  dir: FwdDir;
  /** As written: tcp, udp, tcppp (the API socket also gives tcp4, tcp6, udp4, udp6). */
  network: string;
  proto: 6 | 17;
  /** tcppp: clients send a PROXY protocol header first; udpspp: SPP on every datagram. */
  proxy: boolean;
  /** udprpc: a client's flow ends with the guest's first reply (one request, one answer). */
  rpc: boolean;
  /** Only this family for the listener (API tcp4/tcp6/udp4/udp6); null: from the address. */
  family: 4 | 6 | null;
  /** IP literal or host name; null: the default for the direction. */
  bindHost: string | null;
  bindPort: number;
  targetHost: string | null;
  targetPort: number;
  /** The flag value as given (for messages). */
  text: string;
  /** Per forward (the API's "splice" argument); absent: the --forward-splice default. */
  splice?: SpliceMode;
}

/** A spec that does not parse; the message is the reason alone. */
export class SpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpecError";
  }
}

/** slirpnetstack's SplitHostPort: split on ':' outside brackets, brackets dropped. */
export function splitHostPort(s: string): string[] {
  const parts: string[] = [];
  let part = "";
  let depth = 0;
  for (const c of s) {
    if (c === "[") {
      if (depth > 0) part += c;
      depth++;
    } else if (c === "]") {
      if (depth > 1) part += c;
      depth--;
    } else if (depth === 0 && c === ":") {
      parts.push(part);
      part = "";
    } else part += c;
  }
  parts.push(part);
  return parts;
}

const HOSTNAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;

/** An IP literal (v4-mapped IPv6 becomes IPv4, as Go's NetParseIP does), or null. */
export function parseAddr(s: string): Uint8Array | null {
  const ip = parseIp(s);
  if (ip === null) return null;
  if (ip.length === 16 && isV4Mapped(ip)) return ip.slice(12);
  return ip;
}

function hostPart(what: string, s: string): string | null {
  if (s === "") return null;
  if (parseAddr(s) !== null) return s;
  if (s.includes("@")) {
    // slirpnetstack's SRV label: name@srv-PORT or [name@srv-HOST:PORT] (srv.ts)
    const l = parseSrvLabel(s);
    if (l.kind === "error") throw new SpecError(`${what} "${s}": ${l.reason}`);
    if (l.kind === "srv" && HOSTNAME.test(l.srv.query)) return s;
    throw new SpecError(`${what} "${s}" is not a name@srv-[HOST:]PORT label`);
  }
  if (s.includes(":")) throw new SpecError(`${what} "${s}" is not an IP address`);
  if (!HOSTNAME.test(s) || /^[0-9.]+$/.test(s)) {
    throw new SpecError(`${what} "${s}" is neither an IP address nor a host name`);
  }
  return s;
}

function portPart(what: string, s: string): number | null {
  if (s === "") return null;
  if (!/^[0-9]{1,5}$/.test(s) || Number(s) > 65535) {
    throw new SpecError(`${what} "${s}" is not a port number (0-65535)`);
  }
  return Number(s);
}

const NETWORKS: Record<
  string,
  { proto: 6 | 17; proxy: boolean; rpc: boolean; family: 4 | 6 | null }
> = {
  tcp: { proto: 6, proxy: false, rpc: false, family: null },
  udp: { proto: 17, proxy: false, rpc: false, family: null },
  tcppp: { proto: 6, proxy: true, rpc: false, family: null },
  udpspp: { proto: 17, proxy: true, rpc: false, family: null },
  udprpc: { proto: 17, proxy: false, rpc: true, family: null },
};

/** Parses one -L / -R value; throws SpecError with the reason. */
export function parseForwardSpec(dir: FwdDir, value: string): ForwardSpec {
  // Go's flag package takes `-L=SPEC`; node's parser hands that over as "=SPEC".
  const text = value.startsWith("=") ? value.slice(1) : value;
  let network = "tcp";
  let rest = text;
  const i = text.indexOf("://");
  if (i >= 0) {
    network = text.slice(0, i);
    rest = text.slice(i + 3);
  }
  const net = NETWORKS[network];
  if (net === undefined) {
    throw new SpecError(
      `unknown network type "${network}" (tcp, udp, tcppp, udpspp or udprpc)`,
    );
  }
  if (net.proxy && dir === "remote") {
    throw new SpecError(`${network} is for -L only`);
  }
  const p = splitHostPort(rest);
  let bindIp = "", bindPort = "", hostIp = "", hostPort = "";
  switch (p.length) {
    case 1:
      [bindPort] = p;
      break;
    case 2:
      [bindIp, bindPort] = p;
      break;
    case 3:
      [bindPort, hostIp, hostPort] = p;
      break;
    case 4:
      [bindIp, bindPort, hostIp, hostPort] = p;
      break;
    default:
      throw new SpecError(
        `${p.length} colon-separated parts, at most 4 (write IPv6 addresses in [...])`,
      );
  }
  const bp = portPart("bind port", bindPort) ?? 0;
  return {
    dir,
    network,
    proto: net.proto,
    proxy: net.proxy,
    rpc: net.rpc,
    family: net.family,
    bindHost: hostPart("bind address", bindIp),
    bindPort: bp,
    // A missing target port is the bind port (slirpnetstack).
    targetPort: portPart("target port", hostPort) ?? bp,
    targetHost: hostPart("target address", hostIp),
    text,
  };
}

/** The guest's and the gateway's addresses, as --cidr/--cidr6 made them. */
export interface DefaultAddrs {
  guest4: Uint8Array;
  guest6: Uint8Array;
  gateway4: Uint8Array;
  gateway6: Uint8Array;
}

function isV6Literal(h: string | null): boolean {
  return h !== null && parseAddr(h)?.length === 16;
}

const LOOP4 = new Uint8Array([127, 0, 0, 1]);
const LOOP6 = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/**
 * The bind and target hosts with the defaults filled in (as slirpnetstack's SetDefaultAddrs:
 * the IPv6 defaults only when one side is an IPv6 literal, or the family is forced to 6):
 *   -L: bind 127.0.0.1 / ::1, target the guest (10.0.2.100 / fd00::100);
 *   -R: bind the gateway (10.0.2.2 / fd00::2), target 127.0.0.1 / ::1.
 */
export function withDefaults(
  s: ForwardSpec,
  a: DefaultAddrs,
): { bind: string | Uint8Array; target: string | Uint8Array } {
  const v6 = s.family === 6 ||
    (s.family === null && (isV6Literal(s.bindHost) || isV6Literal(s.targetHost)));
  if (s.dir === "local") {
    return {
      bind: s.bindHost ?? (v6 ? LOOP6 : LOOP4),
      target: s.targetHost ?? (v6 ? a.guest6 : a.guest4),
    };
  }
  return {
    bind: s.bindHost ?? (v6 ? a.gateway6 : a.gateway4),
    target: s.targetHost ?? (v6 ? LOOP6 : LOOP4),
  };
}
