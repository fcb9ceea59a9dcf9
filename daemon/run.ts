// The daemon: attach to the guest's tap, build the stack, run the event loop until a signal.
//
// Order matters:
//  1. get the two descriptors that must be created inside the guest netns: /dev/net/tun and a
//     NETLINK_ROUTE socket (ffi/userns.ts: a short setns window as root, or, rootless, from a
//     helper in the netns's owner user namespace via pidfd_getfd). Open or create the tap on
//     them, and with --configure set the guest up. Everything else lives in the host netns.
//  2. the poller, the firewall, the stack, forwards and the API socket (each registered with
//     the one Teardown as soon as it exists, so every exit path undoes exactly what was made).
//  3. readiness (`[+] #PID Slirpnetstack started` on stderr, `--ready-fd`), then the loop.
//  4. SIGINT/SIGTERM stop the loop; sockets and the tap are closed; exit 0.

import type { Config } from "./config.ts";
import { openTap, type Tap } from "../ffi/tap.ts";
import { configureGuest } from "../ffi/netlink.ts";
import { EPOLLIN, Poller } from "../ffi/poller.ts";
import { netnsOwner, openGuestNetns } from "../ffi/userns.ts";
import { WatchedFd, writeAndClose } from "../ffi/fd.ts";
import { nsInode } from "../ffi/netns.ts";
import { NetnsSocketPool } from "../ffi/nssock.ts";
import { type NetPlan, netPlanFrom } from "../stack/base/netplan.ts";
import { Stack } from "../stack/mod.ts";
import { openFirewall, prepareFirewall } from "../firewall/start.ts";
import { FlagValueError } from "../firewall/rules.ts";
import { sanitySet } from "../firewall/sanity.ts";
import { ApiSocket } from "./api_socket.ts";

/** What slirp4netns' --enable-sandbox / --enable-seccomp would do, and why slirpd does not. */
const ACCEPTED_ONLY: Record<string, string> = {
  "enable-sandbox": "no mount-namespace sandbox is made (the packet path is memory-safe " +
    "TypeScript; run slirpd as an unprivileged user to confine it)",
  "enable-seccomp": "no seccomp filter is installed (the packet path is memory-safe " +
    "TypeScript; run slirpd as an unprivileged user to confine it)",
};

/**
 * --userns-path: slirp4netns joins that user namespace; slirpd finds the netns's owner itself
 * (ffi/userns.ts), so the path must name that owner, or the two would disagree.
 */
function checkUserns(cfg: Config): void {
  if (cfg.usernsPath === null) return;
  const want = nsInode(cfg.usernsPath);
  const owner = netnsOwner(cfg.netns).ownerUserns;
  if (want !== owner) {
    throw new Error(
      `--userns-path ${cfg.usernsPath} is not the user namespace that owns ${cfg.netns}`,
    );
  }
}

async function attach(cfg: Config, plan: NetPlan): Promise<Tap> {
  const ns = await openGuestNetns(cfg.netns);
  try {
    const tap = openTap({
      name: cfg.ifname,
      create: cfg.createTap,
      vnetHdr: cfg.vnetHdr,
      offload: cfg.vnetHdr,
    }, ns);
    if (!cfg.configure) return tap;
    try {
      configureGuest({
        ifname: cfg.ifname,
        mtu: cfg.mtu,
        addrs: [
          { addr: plan.guest4, prefixLen: plan.prefixLen4 },
          { addr: plan.guest6, prefixLen: plan.prefixLen6 },
        ],
        gateways: [plan.gateway4, plan.gateway6],
        mac: cfg.mac ?? undefined,
      }, ns);
    } catch (e) {
      tap.close();
      throw e;
    }
    return tap;
  } finally {
    ns.close();
  }
}

/**
 * Spliced forwards need sockets born in the guest netns: ffi/nssock.ts makes them in batches
 * (one short withNetns window per batch) and they are connected from here. Rootless, slirpd
 * cannot setns there (ffi/userns.ts) and a helper per connection would cost more than it
 * saves: no splicing, the connections go through the tap.
 */
function guestSockets(cfg: Config): NetnsSocketPool | null {
  // (Made even with --forward-splice=never: the API's add_hostfwd may ask for it per forward.)
  let foreign = true;
  try {
    foreign = netnsOwner(cfg.netns).foreign;
  } catch { /* cannot tell (no NS_GET_USERNS): do not splice */ }
  if (foreign) {
    if (cfg.forwardSplice === "always") {
      console.error("[!] --forward-splice=always: rootless, forwards go through the tap");
    }
    return null;
  }
  return new NetnsSocketPool(cfg.netns);
}

/** Undo steps run last-in first-out, each once, even when an earlier one throws. */
class Teardown {
  #steps: (() => void)[] = [];

  add(step: () => void): void {
    this.#steps.push(step);
  }

  run(): void {
    for (let s = this.#steps.pop(); s !== undefined; s = this.#steps.pop()) {
      try {
        s();
      } catch (e) {
        console.error(`[!] teardown: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
}

/** The parts of a running daemon. */
interface Parts {
  plan: NetPlan;
  poller: Poller;
  stack: Stack;
  fw: ReturnType<typeof openFirewall>;
}

/** Tap, poller, firewall and stack, each registered for teardown as soon as it exists. */
async function build(
  cfg: Config,
  prepared: Awaited<ReturnType<typeof prepareFirewall>>,
  down: Teardown,
  fwLog: (line: string) => void,
): Promise<Parts> {
  const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
  const log = cfg.quiet ? () => {} : (line: string) => console.log(line);
  const tap = await attach(cfg, plan);
  down.add(() => tap.close());
  const poller = new Poller();
  down.add(() => poller.close());
  const fw = openFirewall(cfg, prepared, plan, poller, fwLog);
  down.add(() => fw.close());
  const nsSockets = guestSockets(cfg);
  if (nsSockets !== null) down.add(() => nsSockets.close());
  const stack = new Stack({
    plan,
    mtu: cfg.mtu,
    tap,
    poller,
    policy: fw.firewall.policy,
    log,
    quiet: cfg.quiet,
    connectTimeoutMs: cfg.connectTimeoutMs,
    udpTimeoutMs: cfg.udpTimeoutMs,
    maxUdpFlows: cfg.maxUdpFlows,
    outbound4: prepared.outbound4,
    outbound6: prepared.outbound6,
    // slirp4netns form: the gateway is the host's loopback (or unreachable with
    // --disable-host-loopback); slirpnetstack form: only -R forwards reach the host.
    hostLoopback: cfg.form !== "slirp4netns"
      ? undefined
      : cfg.disableHostLoopback
      ? "unreachable"
      : "redirect",
    services: { dns: cfg.dns, resolvConf: cfg.resolvConf, configured: cfg.configure },
    dnsTtlMs: cfg.dnsTtlMs,
    // A forwarded client's address is the source the guest sees, unless it is on the sanity
    // block list (127.0.0.1, the guest's own network, ...): then the gateway's.
    forwardSourceOk: ((s) => (f, a) => !s.contains(f, a))(sanitySet(plan)),
    forwardSplice: cfg.forwardSplice,
    guestSocket: nsSockets === null
      ? undefined
      : (f: 4 | 6, a: Uint8Array, p: number) => nsSockets.connect(f, a, p),
  });
  down.add(() => stack.close());
  poller.add(tap, EPOLLIN, () => stack.drainTap());
  down.add(() => poller.remove(tap));
  return { plan, poller, stack, fw };
}

/**
 * Port forwards and the API socket, before readiness: one that cannot be set up stops slirpd
 * with its line ("[!] Failed to listen on tcp://127.0.0.1:8080: ...") and exit 1.
 */
async function openForwards(cfg: Config, p: Parts, down: Teardown): Promise<boolean> {
  try {
    for (const spec of cfg.forwards) await p.stack.forwards.add(spec);
    if (cfg.apiSocket !== null) {
      const api = ApiSocket.open(cfg.apiSocket, p.stack.forwards, p.plan, (l) => console.error(l));
      down.add(() => api.close()); // (removes the socket file)
    }
    return true;
  } catch (e) {
    console.error(`[!] ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

/** Readiness, then the event loop until SIGINT, SIGTERM or --exit-fd. */
async function serve(cfg: Config, p: Parts, exitFd: WatchedFd | null, down: Teardown) {
  const stop = () => p.poller.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  down.add(() => {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  });
  // --exit-fd: readable (data or EOF) or hung up: the parent wants slirpd gone.
  if (exitFd !== null) {
    p.poller.add(exitFd, EPOLLIN, stop);
    down.add(() => p.poller.remove(exitFd));
  }
  // The fd first: whoever waits for either signal may act at once.
  if (cfg.readyFd !== null) writeAndClose(cfg.readyFd, "1", "--ready-fd");
  console.error(`[+] #${Deno.pid} Slirpnetstack started`);
  await p.poller.run(() => p.stack.tick());
}

/** The stop line: every counter, for whoever reads the log after the fact. */
function stopLine(p: Parts): string {
  const s = p.stack;
  return `[-] #${Deno.pid} Slirpnetstack stopped: ${
    JSON.stringify({
      ...s.counters.snapshot(),
      tcp: s.tcp.snapshot(),
      udp: s.udp.snapshot(),
      ping: s.ping.snapshot(),
      services: s.services?.snapshot(),
      firewall: p.fw.firewall.stats,
    })
  }`;
}

export async function runDaemon(cfg: Config): Promise<number> {
  // Firewall lines (resolved names, blocked flows) go to stderr: stdout carries only the
  // connection lines scripts written for slirpnetstack read one by one.
  const fwLog = cfg.quiet ? () => {} : (line: string) => console.error(line);
  // Rule names and --outbound-addr interfaces first: a bad one stops slirpd before the guest
  // is touched, with a usage line (exit 2).
  let prepared;
  try {
    prepared = await prepareFirewall(cfg, fwLog);
  } catch (e) {
    if (!(e instanceof FlagValueError)) throw e;
    console.error(`slirpd: ${e.message}`);
    return 2;
  }
  for (const flag of cfg.acceptedOnly) {
    console.error(`[!] --${flag} is accepted for slirp4netns and ignored: ${ACCEPTED_ONLY[flag]}`);
  }
  checkUserns(cfg);
  const down = new Teardown();
  try {
    // Checked before the guest is touched: a bad fd is a start failure, not a half-made tap.
    const exitFd = cfg.exitFd === null ? null : new WatchedFd(cfg.exitFd, "--exit-fd");
    if (exitFd !== null) down.add(() => exitFd.close());
    const parts = await build(cfg, prepared, down, fwLog);
    if (!(await openForwards(cfg, parts, down))) return 1;
    await serve(cfg, parts, exitFd, down);
    down.run();
    if (!cfg.quiet) console.error(stopLine(parts));
    return 0;
  } finally {
    down.run();
  }
}
