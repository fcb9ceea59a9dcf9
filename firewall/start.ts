// Firewall setup for the daemon, in two steps around the guest setup:
//
//  1. prepareFirewall (before anything is attached): resolve the DNS names of --allow/--deny
//     and the interfaces of --outbound-addr[6]. A failure is a usage error naming the flag
//     (FlagValueError), so slirpd stops before it touches the guest.
//  2. openFirewall (after, main thread in the host netns, with the Poller): the host-prefix
//     watcher, only when --enable-host and --enable-routing differ (otherwise "on this host"
//     changes no answer), and the Firewall whose `policy` the stack gets.

import type { Poller } from "../ffi/poller.ts";
import type { NetPlan } from "../stack/base/netplan.ts";
import { formatIp } from "../stack/wire/bytes.ts";
import type { Rule } from "./decide.ts";
import { HostPrefixes, interfaceAddress } from "./hostprefixes.ts";
import { Firewall } from "./policy.ts";
import { parseIp } from "../stack/wire/bytes.ts";
import { type FlagRules, FlagValueError, type Resolver, resolveRules, RuleError } from "./rules.ts";

/** getaddrinfo through node:dns (reads /etc/hosts; Deno.resolveDns would not). */
export const systemResolver: Resolver = async (name) => {
  let found;
  try {
    // Imported on first use: node:dns costs ~10 ms of start-up, and most runs look up nothing.
    const { lookup } = await import("node:dns/promises");
    found = await lookup(name, { all: true, verbatim: true });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOTFOUND" || code === "EAI_NONAME" || code === undefined
      ? "no such host"
      : code;
    throw new RuleError(`lookup ${name}: ${why}`);
  }
  const out: Uint8Array[] = [];
  for (const a of found) {
    const ip = parseIp(a.address.replace(/%.*$/, ""));
    if (ip && !out.some((o) => o.length === ip.length && o.every((b, i) => b === ip[i]))) {
      out.push(ip);
    }
  }
  if (out.length === 0) throw new RuleError(`lookup ${name}: no such host`);
  return out;
};

/** The Config fields the firewall reads (daemon/config.ts's Config has them all). */
export interface FirewallConfig {
  allow: readonly FlagRules[];
  deny: readonly FlagRules[];
  enableHost: boolean;
  enableRouting: boolean;
  disableHostLoopback: boolean;
  outbound4: { addr: Uint8Array } | { ifname: string } | null;
  outbound6: { addr: Uint8Array } | { ifname: string } | null;
  quiet: boolean;
}

export interface PreparedFirewall {
  allow: Rule[];
  deny: Rule[];
  /** Resolved bind addresses for outgoing flows (hooks in the TCP/UDP/ICMP engines). */
  outbound4: Uint8Array | null;
  outbound6: Uint8Array | null;
}

function outbound(
  o: FirewallConfig["outbound4"],
  family: 4 | 6,
  flag: string,
  log: (line: string) => void,
): Uint8Array | null {
  if (o === null) return null;
  if ("addr" in o) return o.addr;
  try {
    const a = interfaceAddress(o.ifname, family);
    log(`[+] --${flag} ${o.ifname}: ${formatIp(a)}`);
    return a;
  } catch (e) {
    throw new FlagValueError(flag, o.ifname, e instanceof Error ? e.message : String(e));
  }
}

/** Step 1. Throws FlagValueError for a name or interface that does not resolve. */
export async function prepareFirewall(
  cfg: FirewallConfig,
  log: (line: string) => void,
): Promise<PreparedFirewall> {
  return {
    allow: await resolveRules(cfg.allow, log, systemResolver),
    deny: await resolveRules(cfg.deny, log, systemResolver),
    outbound4: outbound(cfg.outbound4, 4, "outbound-addr", log),
    outbound6: outbound(cfg.outbound6, 6, "outbound-addr6", log),
  };
}

export interface OpenFirewall {
  firewall: Firewall;
  /** The watcher, when one runs. */
  host: HostPrefixes | null;
  close(): void;
}

/** Step 2. `log` gets block lines (give it nothing with --quiet). */
export function openFirewall(
  cfg: FirewallConfig,
  prepared: PreparedFirewall,
  plan: NetPlan,
  poller: Poller,
  log: ((line: string) => void) | undefined,
): OpenFirewall {
  const host = cfg.enableHost !== cfg.enableRouting ? new HostPrefixes({ poller }) : null;
  try {
    const firewall = new Firewall({
      allow: prepared.allow,
      deny: prepared.deny,
      plan,
      enableHost: cfg.enableHost,
      enableRouting: cfg.enableRouting,
      disableHostLoopback: cfg.disableHostLoopback,
      host: host ?? undefined,
      log: cfg.quiet ? undefined : log,
    });
    return { firewall, host, close: () => host?.close() };
  } catch (e) {
    host?.close();
    throw e;
  }
}
