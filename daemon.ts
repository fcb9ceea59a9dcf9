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
import { defaultNetPlan, type NetPlan } from "./stack/netplan.ts";
import { Stack } from "./stack/stack.ts";
import { makePolicy } from "./firewall/policy.ts";

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
  const plan = defaultNetPlan();
  const tap = await attach(cfg, plan);
  const poller = new Poller();
  const log = cfg.quiet ? () => {} : (line: string) => console.log(line);
  const stack = new Stack({
    plan,
    mtu: cfg.mtu,
    tap,
    poller,
    policy: makePolicy(cfg, plan),
    log,
    quiet: cfg.quiet,
    connectTimeoutMs: cfg.connectTimeoutMs,
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
    poller.remove(tap);
    tap.close();
    poller.close();
  }
  if (!cfg.quiet) {
    console.error(
      `[-] #${Deno.pid} Slirpnetstack stopped: ${JSON.stringify({ ...stack.counters.snapshot(), tcp: stack.tcp.snapshot() })}`,
    );
  }
  return 0;
}
