// --allow/--deny rule parsing: `[PROTO://]HOST[:PORT[-PORT]]`, comma-separated.
//
// The syntax and the error wording follow slirpnetstack's IPPortRangeSlice.Set (addr.go), so a
// command line written for it behaves the same and fails with the same words:
//   - PROTO is tcp (the default), udp, icmp or any (slirpnetstack knows tcp and udp);
//   - HOST is an address, a CIDR prefix, a bracketed IPv6 address or prefix (`[::1]:53`,
//     `[2001:db8::/32]:443`), or a DNS name; the host/port split is slirpnetstack's
//     SplitHostPort: colons inside brackets do not split;
//   - PORT is one port or MIN-MAX; 0 or none means every port;
//   - the value `all` alone means every destination (any://0.0.0.0/0,any://[::]/0; in
//     slirpnetstack tcp and udp only, it has no ICMP rules).
// Port errors carry Go's strconv text (`strconv.ParseUint: parsing "a": invalid syntax`);
// a reversed range says `min port must be smaller equal than max port` (slirpnetstack's text
// ends at "max"; a script matching that still matches).
//
// Two steps, because flags are parsed synchronously and DNS is not: `parseRules` checks the
// syntax and leaves names unresolved (daemon/config.ts calls it, so a bad rule stops slirpd before
// anything starts); `resolveRules` looks the names up once at start (with the resolver it is
// given: start.ts's getaddrinfo one; this file does no I/O) and turns every spec into prefix
// rules. Differences from slirpnetstack: a name gives a rule for each address it resolves
// to (slirpnetstack takes the first IPv4 one); ICMP flows carry port 0 and only match rules that
// cover port 0, so an icmp:// rule must not name ports.

import { formatIp, parseIp } from "../stack/wire/bytes.ts";
import { maskAddr, type Rule, SLOT_ICMP, SLOT_TCP, SLOT_UDP } from "./decide.ts";

/** A rule problem: the reason part of `invalid value "X" for flag -allow: REASON`. */
export class RuleError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "RuleError";
  }
}

export type RuleProto = "tcp" | "udp" | "icmp" | "any";

const PROTOS: Record<RuleProto, readonly number[]> = {
  tcp: [SLOT_TCP],
  udp: [SLOT_UDP],
  icmp: [SLOT_ICMP],
  any: [SLOT_TCP, SLOT_UDP, SLOT_ICMP],
};

/** One parsed rule; `addr` is null while `name` waits for resolution. */
export interface RuleSpec {
  /** The element of the comma list it came from (for logs). */
  text: string;
  proto: RuleProto;
  addr: Uint8Array | null;
  len: number;
  name: string | null;
  portMin: number;
  portMax: number;
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
    } else {
      part += c;
    }
  }
  parts.push(part);
  return parts;
}

/** Go's strconv.ParseUint(s, 10, 16), errors included. */
function parsePort(s: string): number {
  if (!/^[0-9]+$/.test(s)) throw new RuleError(`strconv.ParseUint: parsing "${s}": invalid syntax`);
  const n = Number(s);
  if (n > 65535) throw new RuleError(`strconv.ParseUint: parsing "${s}": value out of range`);
  return n;
}

/** "a.b.c.d/n" or "x::/n" → masked prefix; Go's net.ParseCIDR wording on error. */
function parseCidr(s: string): { addr: Uint8Array; len: number } {
  const slash = s.indexOf("/");
  const addr = parseIp(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  const max = addr ? addr.length * 8 : 0;
  if (!addr || !/^[0-9]{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new RuleError(`invalid CIDR address: ${s}`);
  }
  const len = Number(lenText);
  return { addr: maskAddr(addr, len), len };
}

/** A name getaddrinfo may resolve: labels of letters, digits, '-' and '_'. */
const NAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;

function parseOne(text: string): RuleSpec {
  let proto = "tcp";
  let rest = text;
  const sep = text.indexOf("://");
  if (sep >= 0) {
    proto = text.slice(0, sep);
    rest = text.slice(sep + 3);
  }
  if (!(proto in PROTOS)) throw new RuleError(`unknown network type "${proto}"`);
  const parts = splitHostPort(rest);
  if (parts.length > 2) {
    throw new RuleError("error parsing ipportrange (an IPv6 address needs brackets: [::1]:53)");
  }
  const host = parts[0];
  let portMin = 0, portMax = 65535;
  if (parts.length === 2) {
    const dash = parts[1].indexOf("-");
    const min = parsePort(dash < 0 ? parts[1] : parts[1].slice(0, dash));
    const max = dash < 0 ? min : parsePort(parts[1].slice(dash + 1));
    if (max < min) throw new RuleError("min port must be smaller equal than max port");
    if (min !== 0 || max !== 0) [portMin, portMax] = [min, max];
  }
  if (proto === "icmp" && (portMin !== 0 || portMax !== 65535)) {
    throw new RuleError("icmp has no ports: use icmp://HOST");
  }
  const spec = { text, proto: proto as RuleProto, portMin, portMax };
  if (host === "") throw new RuleError("missing host: use [PROTO://]HOST[:PORT[-PORT]]");
  if (host.includes("/")) return { ...spec, ...parseCidr(host), name: null };
  const ip = parseIp(host);
  if (ip) {
    // Like Go's To4(): an IPv4-mapped address is the IPv4 address.
    const mapped = ip.length === 16 && ip.subarray(0, 10).every((b) => b === 0) &&
      ip[10] === 0xff && ip[11] === 0xff;
    const addr = mapped ? ip.slice(12) : ip;
    return { ...spec, addr, len: addr.length * 8, name: null };
  }
  if (/^[0-9.]+$/.test(host) || host.includes(":")) {
    throw new RuleError(`invalid IP address: ${host}`);
  }
  if (!NAME_RE.test(host)) throw new RuleError(`lookup ${host}: no such host`);
  return { ...spec, addr: null, len: 0, name: host };
}

/**
 * Parses one flag value (a comma-separated list). Throws RuleError with the reason for the
 * first bad element. Names stay unresolved (see resolveRules).
 */
export function parseRules(value: string): RuleSpec[] {
  if (value === "all") return [parseOne("any://0.0.0.0/0"), parseOne("any://[::]/0")];
  return value.split(",").map(parseOne);
}

/** A DNS lookup: every address of a name (start.ts: getaddrinfo; tests pass their own). */
export type Resolver = (name: string) => Promise<Uint8Array[]>;

/** A rule spec as it appeared on the command line, with its flag (for error messages). */
export interface FlagRules {
  /** "allow" or "deny". */
  flag: string;
  /** The whole flag value. */
  value: string;
  specs: RuleSpec[];
}

/** A flag value found bad at start (a name that does not resolve): the usage-error line. */
export class FlagValueError extends Error {
  constructor(readonly flag: string, readonly value: string, readonly reason: string) {
    super(`invalid value "${value}" for flag -${flag}: ${reason}`);
    this.name = "FlagValueError";
  }
}

/**
 * Resolves the names of every spec (once, at start) and returns the rules. `log` gets one line
 * per name: `--allow localhost: 127.0.0.1, ::1`.
 */
export async function resolveRules(
  lists: readonly FlagRules[],
  log: (line: string) => void,
  resolver: Resolver,
): Promise<Rule[]> {
  const rules: Rule[] = [];
  for (const { flag, value, specs } of lists) {
    for (const s of specs) {
      const protos = PROTOS[s.proto];
      if (s.addr !== null) {
        rules.push({ protos, addr: s.addr, len: s.len, portMin: s.portMin, portMax: s.portMax });
        continue;
      }
      let addrs: Uint8Array[];
      try {
        addrs = await resolver(s.name!);
      } catch (e) {
        const reason = e instanceof RuleError ? e.message : `lookup ${s.name}: ${e}`;
        throw new FlagValueError(flag, value, reason);
      }
      log(`[+] --${flag} ${s.text}: ${s.name} is ${addrs.map((a) => formatIp(a)).join(", ")}`);
      for (const addr of addrs) {
        rules.push({ protos, addr, len: addr.length * 8, portMin: s.portMin, portMax: s.portMax });
      }
    }
  }
  return rules;
}

/** Text form of a spec, normalized (for logs and tests): `tcp://[2001:db8::]/32:80-90`. */
export function formatSpec(s: RuleSpec): string {
  let host = s.name ?? formatIp(s.addr!);
  if (s.addr && s.len !== s.addr.length * 8) host += `/${s.len}`;
  if (s.addr?.length === 16) host = `[${host}]`;
  const ports = s.portMin === 0 && s.portMax === 65535
    ? ""
    : s.portMin === s.portMax
    ? `:${s.portMin}`
    : `:${s.portMin}-${s.portMax}`;
  return `${s.proto}://${host}${ports}`;
}
