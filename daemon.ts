// The daemon: attach to the guest's tap, build the stack, run the event loop until a signal.
//
// Order matters:
//  1. get the two descriptors that must be created inside the guest netns: /dev/net/tun and a
//     NETLINK_ROUTE socket (ffi/userns.ts: a short setns window as root, or, rootless, from a
//     helper in the netns's owner user namespace via pidfd_getfd). Open or create the tap on
//     them, and with --configure set the guest up. Everything else lives in the host netns.
//  3. readiness (`[+] #PID Slirpnetstack started` on stderr, `--ready-fd`), then the loop.
//  4. SIGINT/SIGTERM stop the loop; sockets and the tap are closed; exit 0.

import type { Config } from "./config.ts";
import { openTap, type Tap } from "./ffi/tap.ts";
import { configureGuest } from "./ffi/netlink.ts";
import { EPOLLIN, Poller } from "./ffi/poller.ts";
import { openGuestNetns } from "./ffi/userns.ts";
import { writeAndClose } from "./ffi/fd.ts";
import { type NetPlan, netPlanFrom } from "./stack/netplan.ts";
import { Stack } from "./stack/stack.ts";
import { openFirewall, prepareFirewall } from "./firewall/start.ts";
import { FlagValueError } from "./firewall/rules.ts";

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

export async function runDaemon(cfg: Config): Promise<number> {
  const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
  const log = cfg.quiet ? () => {} : (line: string) => console.log(line);
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
  const tap = await attach(cfg, plan);
  const poller = new Poller();
  const fw = openFirewall(cfg, prepared, plan, poller, fwLog);
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
    services: { dns: cfg.dns, resolvConf: cfg.resolvConf, configured: cfg.configure },
  });
  poller.add(tap, EPOLLIN, () => stack.drainTap());

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    poller.stop();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);

  // The fd first: whoever waits for either signal may act at once.
  if (cfg.readyFd !== null) writeAndClose(cfg.readyFd, "1", "--ready-fd");
  console.error(`[+] #${Deno.pid} Slirpnetstack started`);

  try {
    await poller.run(() => stack.tick());
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    stack.close();
    fw.close();
    poller.remove(tap);
    tap.close();
    poller.close();
  }
  if (!cfg.quiet) {
    console.error(
      `[-] #${Deno.pid} Slirpnetstack stopped: ${
        JSON.stringify({
          ...stack.counters.snapshot(),
          tcp: stack.tcp.snapshot(),
          udp: stack.udp.snapshot(),
          ping: stack.ping.snapshot(),
          services: stack.services?.snapshot(),
          firewall: fw.firewall.stats,
        })
      }`,
    );
  }
  return 0;
}
