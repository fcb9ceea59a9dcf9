// Command line → one typed Config. Two forms, as the tools slirpd replaces take them:
//
//   slirpnetstack form:  slirpd --netns PATH [--interface tun0] [OPTIONS]
//   slirp4netns form:    slirpd [OPTIONS] PID|PATH [TAPNAME]    (the tap, default tap0, is created)
//
// Flags are accepted with one or two dashes (Go's flag package, which slirpnetstack uses,
// takes both). Errors are one line in Go's flag wording, so scripts written for
// slirpnetstack see what they expect: `invalid value "X" for flag -mtu: REASON`.

import { parseArgs } from "./flags.ts";
import { FLAGS, MTU_MAX, MTU_MIN } from "./options.ts";
import { type FlagRules, parseRules, RuleError } from "../firewall/rules.ts";
import { parseIp } from "../stack/wire/bytes.ts";
import { type Cidr, parseCidr } from "../stack/base/netplan.ts";
import {
  type ForwardSpec,
  parseForwardSpec,
  SpecError,
  type SpliceMode,
} from "../stack/forwards/spec.ts";

export interface Config {
  /** Path of the guest's network namespace (`/proc/PID/ns/net` or a bind mount). */
  netns: string;
  /** Tap device name inside the guest namespace. */
  ifname: string;
  /** Create the tap and configure the guest (lo up, addresses, routes). */
  configure: boolean;
  /** Create the tap if it does not exist (slirp4netns form always creates it). */
  createTap: boolean;
  mtu: number;
  /** Use IFF_VNET_HDR and TSO/checksum offloads when the kernel offers them. */
  vnetHdr: boolean;
  readyFd: number | null;
  quiet: boolean;
  enableRouting: boolean;
  enableHost: boolean;
  /** Which command-line form was used; they differ in defaults (see README). */
  form: "slirpnetstack" | "slirp4netns";
  /** Milliseconds a host connect() may take before the guest gets RST. */
  connectTimeoutMs: number;
  /** Milliseconds a UDP flow may stay idle before its host socket is closed. */
  udpTimeoutMs: number;
  /** Most UDP flows at once (the one idle longest is evicted for a new one). */
  maxUdpFlows: number;
  /** --allow / --deny: one entry per flag occurrence (names resolved at start, daemon/run.ts). */
  allow: FlagRules[];
  deny: FlagRules[];
  /** Never reach the host's 127.0.0.0/8 or ::1 (slirp4netns --disable-host-loopback). */
  disableHostLoopback: boolean;
  /** Host address for outgoing IPv4/IPv6 flows (--outbound-addr[6] IP|IFNAME, --source-ipv4/6). */
  outbound4: Outbound | null;
  outbound6: Outbound | null;
  /** The guest networks (--cidr, --cidr6): addresses are network+2 (gateway), +3 (DNS), +100. */
  cidr4: Cidr;
  cidr6: Cidr;
  /** The DNS forwarder at network+3 (off with --disable-dns). */
  dns: boolean;
  /** Where the DNS forwarder reads its upstream servers (--resolv-conf). */
  resolvConf: string;
  /** --exit-fd: stop (exit 0) when this inherited fd becomes readable or hangs up. */
  exitFd: number | null;
  /** --userns-path: the user namespace that must own the netns (checked at start). */
  usernsPath: string | null;
  /** --macaddress: the guest tap's MAC (6 bytes; with --configure). */
  mac: Uint8Array | null;
  /** --enable-sandbox / --enable-seccomp: confine the process after start-up (daemon/confine.ts). */
  sandbox: boolean;
  seccomp: boolean;
  /** -L then -R, in the order given (stack/forwards/spec.ts; defaults filled in at start). */
  forwards: ForwardSpec[];
  /** --api-socket: slirp4netns' JSON API on this unix socket path. */
  apiSocket: string | null;
  /** --dns-ttl: how long a forward's resolved host name is used before a new lookup. */
  dnsTtlMs: number;
  /** -fd: frames on this inherited descriptor (a SOCK_DGRAM socket or a tap), no netns. */
  linkFd: number | null;
  /** -pcap: capture every frame to and from the guest into this file. */
  pcap: string | null;
  /** -pcap-max-bytes: the capture stops (for good) before the file would exceed this. */
  pcapMaxBytes: number;
  /** -m ADDR / --metrics: /health and /metrics over HTTP on this address. */
  metrics: MetricsAddr | null;
  /** -exit-with-parent: SIGTERM (a clean stop) when the parent process dies. */
  exitWithParent: boolean;
  /** -maxprocs: accepted for slirpnetstack (slirpd's packet path is one thread). */
  maxprocs: number;
  /** --forward-splice: when a -L TCP connection into the guest is spliced (stack/forwards). */
  forwardSplice: SpliceMode;
}

/** Where -m serves: `tcp://HOST:PORT` (port 0: any free one) or `unix://PATH`. */
export type MetricsAddr = { kind: "tcp"; host: string; port: number } | {
  kind: "unix";
  path: string;
};

/** A bind address: literal, or an interface whose address the daemon looks up at start. */
export type Outbound = { addr: Uint8Array } | { ifname: string };

/** A command-line error: printed as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function invalid(flag: string, value: string, reason: string): UsageError {
  return new UsageError(
    `invalid value "${value}" for flag -${flag}: ${reason}`,
  );
}

function intFlag(
  flag: string,
  value: string,
  min: number,
  max: number,
): number {
  if (!/^[0-9]+$/.test(value)) throw invalid(flag, value, "not a whole number");
  const n = Number(value);
  if (n < min || n > max) {
    throw invalid(flag, value, `must be between ${min} and ${max}`);
  }
  return n;
}

function cidrFlag(flag: string, value: string, family: 4 | 6): Cidr {
  const c = parseCidr(value, family);
  if (typeof c === "string") throw invalid(flag, value, family === 4 ? s4nCidrWording(c) : c);
  return c;
}

/**
 * --cidr is slirp4netns' flag, and scripts grep its wording: every error says `invalid CIDR`,
 * and the two checks slirp4netns makes say it its way (our detail follows in parentheses).
 */
function s4nCidrWording(reason: string): string {
  if (reason.startsWith("prefix length")) return "invalid CIDR: prefix length needs to be 1-25";
  const host = /^host bits must be zero (\(.*\))$/.exec(reason);
  if (host) {
    return "invalid CIDR: CIDR needs to be a network address like 10.0.2.0/24, not like " +
      `10.0.2.100/24 ${host[1]}`;
  }
  return `invalid CIDR: ${reason}`;
}

function nonEmpty(flag: string, value: string): string {
  if (value === "") throw invalid(flag, value, "must not be empty");
  return value;
}

function ruleFlag(flag: string, values: string[] | undefined): FlagRules[] {
  return (values ?? []).map((value) => {
    try {
      return { flag, value, specs: parseRules(value) };
    } catch (e) {
      if (e instanceof RuleError) throw invalid(flag, value, e.message);
      throw e;
    }
  });
}

/** --outbound-addr[6] (IP or interface) and --source-ipv4/6 (IP): one bind address a family. */
function outboundFlag(
  v: Record<string, unknown>,
  family: 4 | 6,
  addrFlag: string,
  sourceFlag: string,
): Outbound | null {
  const size = family === 4 ? 4 : 16;
  const out = v[addrFlag] as string | undefined;
  const src = v[sourceFlag] as string | undefined;
  if (out !== undefined && src !== undefined) {
    throw invalid(sourceFlag, src, `-${addrFlag} is given too (they set the same address)`);
  }
  if (src !== undefined) {
    const ip = parseIp(src);
    if (!ip || ip.length !== size) throw invalid(sourceFlag, src, `not an IPv${family} address`);
    return { addr: ip };
  }
  if (out === undefined) return null;
  const ip = parseIp(out);
  if (ip && ip.length === size) return { addr: ip };
  if (
    ip === null && /^[A-Za-z0-9_.:-]{1,15}$/.test(out) && !out.includes(":") && out !== "." &&
    out !== ".." && !/^[0-9.]+$/.test(out)
  ) {
    return { ifname: out };
  }
  throw invalid(addrFlag, out, `has to be a valid IPv${family} address or interface name`);
}

/** slirp4netns' PID|PATH argument under --netns-type (absent: a number is a PID). */
function netnsTarget(type: string | undefined, arg: string): string {
  const pid = /^[0-9]+$/.test(arg);
  if (type === "path") return arg;
  if (type === "pid") {
    if (!pid) throw new UsageError(`expected a PID with --netns-type=pid, got "${arg}"`);
    return `/proc/${arg}/ns/net`;
  }
  if (type !== undefined) throw invalid("netns-type", type, 'must be "pid" or "path"');
  return pid ? `/proc/${arg}/ns/net` : arg;
}

/** --macaddress: a unicast MAC, only with --configure (as slirp4netns). */
function macFlag(value: string | undefined, configure: boolean): Uint8Array | null {
  if (value === undefined) return null;
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(value)) {
    throw invalid("macaddress", value, "not a MAC address (6 hex bytes separated by ':')");
  }
  const mac = Uint8Array.from(value.split(":").map((h) => parseInt(h, 16)));
  if (mac[0] & 1) throw invalid("macaddress", value, "a multicast address");
  if (mac.every((b) => b === 0)) throw invalid("macaddress", value, "the zero address");
  if (!configure) throw invalid("macaddress", value, "only valid with --configure");
  return mac;
}

/** -L / -R values (Go's flag names in messages: `invalid value "X" for flag -L: ...`). */
function forwardFlag(flag: "L" | "R", values: unknown): ForwardSpec[] {
  return ((values ?? []) as string[]).map((value) => {
    try {
      return parseForwardSpec(flag === "L" ? "local" : "remote", value);
    } catch (e) {
      if (e instanceof SpecError) throw invalid(flag, value, e.message);
      throw e;
    }
  });
}

function spliceFlag(value: string): SpliceMode {
  if (value === "auto" || value === "always" || value === "never") return value;
  throw invalid("forward-splice", value, 'must be "auto", "always" or "never"');
}

/** A Go duration ("5s", "1m30s", "500ms") or plain seconds, in ms. */
function durationFlag(flag: string, value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (/^[0-9]+(\.[0-9]+)?$/.test(value)) return Number(value) * 1000;
  const re = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/gy;
  let ms = 0, end = 0;
  for (let m = re.exec(value); m !== null; m = re.exec(value)) {
    ms += Number(m[1]) * units[m[2]];
    end = re.lastIndex;
  }
  if (end === 0 || end !== value.length) {
    throw invalid(flag, value, "not a duration like 5s, 1m30s or 500ms");
  }
  return ms;
}

/** Go's flag package takes `-flag`; node's parseArgs wants `--flag`. */
function normalize(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    // A short flag with "=" (`-R=SPEC`, Go style): node would keep the "=" in the value.
    const short = a.match(/^-([A-Za-z0-9])=(.*)$/s);
    if (short) out.push(`-${short[1]}`, short[2]);
    else out.push(/^-[a-z][a-z0-9-]+(=.*)?$/i.test(a) ? "-" + a : a);
  }
  return out;
}

/** The result of parsing: a Config to run, or a request for help. */
/** `help: true`: print the help, or with `version` the version lines, and exit 0. */
export type ParseResult =
  | { help: true; version?: "slirpnetstack" | "slirp4netns" }
  | { help: false; config: Config };

export function parseConfig(argv: string[]): ParseResult {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const [name, f] of Object.entries(FLAGS)) {
    options[name] = f.short ? { type: f.type, short: f.short } : { type: f.type };
    if (f.multiple) options[name].multiple = true;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: normalize(argv),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(describeParseError(e));
  }
  const v = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (v.help) return { help: true };
  // -version is slirpnetstack's flag (Go spells it with one dash); --version slirp4netns'.
  if (v.version) {
    return { help: true, version: argv.includes("-version") ? "slirpnetstack" : "slirp4netns" };
  }
  const str = (k: string) => (v[k] as string | undefined) ?? (FLAGS[k].default as string);

  const pos = parsed.positionals;
  let netns = v.netns as string | undefined;
  let ifname = str("interface");
  let form: Config["form"] = "slirpnetstack";
  if (pos.length > 0) {
    if (netns !== undefined) {
      throw new UsageError(`unexpected argument "${pos[0]}": --netns is given`);
    }
    if (pos.length > 2) {
      throw new UsageError(
        `expected PID|PATH [TAPNAME] (slirp4netns form), got ${pos.length} argument(s): ${
          pos.join(" ")
        }`,
      );
    }
    form = "slirp4netns";
    netns = netnsTarget(v["netns-type"] as string | undefined, pos[0]);
    ifname = pos[1] ?? "tap0"; // slirp4netns' default
  } else netnsTarget(v["netns-type"] as string | undefined, "0"); // checks the value only
  const fdRaw = v.fd as string | undefined;
  const linkFd = fdRaw === undefined ? null : intFlag("fd", fdRaw, 0, 1 << 20);
  if (linkFd !== null) {
    // slirpnetstack: "Please specify either -fd or -netns" (exit 252 there, 2 here).
    if (netns !== undefined) throw invalid("fd", fdRaw!, "-netns is given too (one or the other)");
    netns = "";
  } else if (netns === undefined || netns === "") {
    throw new UsageError(
      "missing --netns PATH (or PID|PATH [TAPNAME], or -- CMD [ARGS...]); see --help",
    );
  }
  if (
    !/^[A-Za-z0-9_.:-]{1,15}$/.test(ifname) || ifname === "." || ifname === ".."
  ) {
    throw invalid(
      "interface",
      ifname,
      "not a valid interface name (1-15 characters)",
    );
  }
  const readyRaw = v["ready-fd"] as string | undefined;
  const exitRaw = v["exit-fd"] as string | undefined;
  const configure = Boolean(v.configure);
  if (linkFd !== null && configure) {
    throw invalid("fd", fdRaw!, "-configure needs a netns (the fd's peer sets its side up)");
  }
  const { mtu, metrics } = mtuOrMetrics(v);
  return {
    help: false,
    config: {
      netns,
      ifname,
      configure,
      createTap: configure || form === "slirp4netns",
      mtu,
      vnetHdr: !v["no-vnet-hdr"],
      readyFd: readyRaw === undefined ? null : intFlag("ready-fd", readyRaw, 0, 1 << 20),
      quiet: Boolean(v.quiet),
      // The slirp4netns form is open, as slirp4netns (anything routed, the host's own
      // addresses included); --deny narrows it, --locked starts from the closed policy.
      enableRouting: Boolean(v["enable-routing"]) || (form === "slirp4netns" && !v.locked),
      enableHost: Boolean(v["enable-host"]) || (form === "slirp4netns" && !v.locked),
      form,
      connectTimeoutMs: intFlag("connect-timeout", str("connect-timeout"), 1, 3600) * 1000,
      udpTimeoutMs: intFlag("udp-timeout", str("udp-timeout"), 1, 86400) * 1000,
      maxUdpFlows: intFlag("max-udp-flows", str("max-udp-flows"), 1, 1 << 20),
      allow: ruleFlag("allow", v.allow as string[] | undefined),
      deny: ruleFlag("deny", v.deny as string[] | undefined),
      disableHostLoopback: Boolean(v["disable-host-loopback"]),
      outbound4: outboundFlag(v, 4, "outbound-addr", "source-ipv4"),
      outbound6: outboundFlag(v, 6, "outbound-addr6", "source-ipv6"),
      cidr4: cidrFlag("cidr", str("cidr"), 4),
      cidr6: cidrFlag("cidr6", str("cidr6"), 6),
      dns: !v["disable-dns"],
      resolvConf: nonEmpty("resolv-conf", str("resolv-conf")),
      exitFd: exitRaw === undefined ? null : intFlag("exit-fd", exitRaw, 0, 1 << 20),
      usernsPath: v["userns-path"] === undefined
        ? null
        : nonEmpty("userns-path", v["userns-path"] as string),
      mac: macFlag(v.macaddress as string | undefined, configure),
      sandbox: v["enable-sandbox"] === true,
      seccomp: v["enable-seccomp"] === true,
      forwards: [...forwardFlag("L", v["local-fwd"]), ...forwardFlag("R", v["remote-fwd"])],
      apiSocket: v["api-socket"] === undefined
        ? null
        : nonEmpty("api-socket", v["api-socket"] as string),
      dnsTtlMs: durationFlag("dns-ttl", str("dns-ttl")),
      linkFd,
      pcap: v.pcap === undefined ? null : nonEmpty("pcap", v.pcap as string),
      pcapMaxBytes: intFlag("pcap-max-bytes", str("pcap-max-bytes"), 0, Number.MAX_SAFE_INTEGER),
      metrics,
      exitWithParent: Boolean(v["exit-with-parent"]),
      maxprocs: v.maxprocs === undefined ? 0 : intFlag("maxprocs", v.maxprocs as string, 0, 4096),
      forwardSplice: spliceFlag(str("forward-splice")),
    },
  };
}

/**
 * -m is slirp4netns' --mtu and slirpnetstack's metrics address: a number is an MTU, an
 * address (NET://...) is the metrics endpoint (as --metrics).
 */
function mtuOrMetrics(v: Record<string, unknown>): { mtu: number; metrics: MetricsAddr | null } {
  let mtuText = (v.mtu as string | undefined) ?? (FLAGS.mtu.default as string);
  let metricsText = v.metrics as string | undefined;
  if (v.mtu !== undefined && /^[a-z0-9]+:\/\//i.test(mtuText)) {
    if (metricsText !== undefined) {
      throw invalid("m", mtuText, "--metrics is given too");
    }
    metricsText = mtuText;
    mtuText = FLAGS.mtu.default as string;
  }
  return {
    mtu: intFlag("mtu", mtuText, MTU_MIN, MTU_MAX),
    metrics: metricsText === undefined ? null : metricsFlag(metricsText),
  };
}

/** `tcp://HOST:PORT` (HOST an IP, [IPv6] or a name) or `unix://PATH`. */
export function metricsFlag(value: string): MetricsAddr {
  const why = "must be tcp://HOST:PORT or unix://PATH";
  const m = value.match(/^([a-z0-9]+):\/\/(.*)$/i);
  if (!m) throw invalid("m", value, why);
  const [, net, rest] = m;
  if (net === "unix") {
    if (rest === "") throw invalid("m", value, "empty socket path");
    return { kind: "unix", path: rest };
  }
  if (net !== "tcp") throw invalid("m", value, `network "${net}": ${why}`);
  const hp = rest.match(/^(?:\[([^\]]+)\]|([^:\[\]]*)):([0-9]{1,5})$/);
  if (!hp || Number(hp[3]) > 65535) throw invalid("m", value, why);
  const host = hp[1] ?? hp[2];
  if (hp[1] !== undefined && parseIp(host)?.length !== 16) {
    throw invalid("m", value, `"${host}" is not an IPv6 address`);
  }
  return { kind: "tcp", host: host === "" ? "0.0.0.0" : host, port: Number(hp[3]) };
}

function describeParseError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // node's messages are long and multi-line; keep one line naming the flag.
  const unknown = msg.match(/Unknown option '([^']+)'/);
  if (unknown) return `flag provided but not defined: ${unknown[1]}`;
  const needs = msg.match(
    /Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/,
  );
  if (needs) return `flag needs an argument: ${needs[1]}`;
  const noValue = msg.match(
    /Option '(?:-\w, )?(--[\w-]+)' does not take an argument/,
  );
  if (noValue) return `flag does not take a value: ${noValue[1]}`;
  return msg.split("\n")[0];
}
