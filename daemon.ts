// The daemon: attach to the guest's tap, build the stack, run the event loop until a signal.
//
// Order matters:
//  1. rootless: if the guest netns belongs to a user namespace we are not in, re-exec into it
//     (a multithreaded process can never setns into a user namespace; execv keeps our PID).
//  2. a short synchronous window inside the guest netns: open (or create) the tap, and with
//     --configure set the guest up. Everything else is created afterwards, in the host netns.
//  3. readiness (`[+] #PID Slirpnetstack started` on stderr, `--ready-fd`), then the loop.
//  4. SIGINT/SIGTERM stop the loop; sockets and the tap are closed; exit 0.

import type { Config } from "./config.ts";
import { withNetns } from "./ffi/netns.ts";
import { openTap, type Tap } from "./ffi/tap.ts";
import { configureGuest } from "./ffi/netlink.ts";
import { EPOLLIN, Poller } from "./ffi/poller.ts";
import { maybeReexecIntoOwnerUserns } from "./ffi/userns.ts";
import { writeAndClose } from "./ffi/fd.ts";
import { defaultNetPlan, type NetPlan } from "./stack/netplan.ts";
import { Stack } from "./stack/stack.ts";
import { makePolicy } from "./firewall/policy.ts";

function attach(cfg: Config, plan: NetPlan): Tap {
  return withNetns(cfg.netns, () => {
    const tap = openTap({
      name: cfg.ifname,
      create: cfg.createTap,
      vnetHdr: cfg.vnetHdr,
      offload: cfg.vnetHdr,
    });
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
      });
    } catch (e) {
      tap.close();
      throw e;
    }
    return tap;
  });
}

export async function runDaemon(cfg: Config): Promise<number> {
  maybeReexecIntoOwnerUserns(cfg.netns);
  const plan = defaultNetPlan();
  const tap = attach(cfg, plan);
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

  console.error(`[+] #${Deno.pid} Slirpnetstack started`);
  if (cfg.readyFd !== null) writeAndClose(cfg.readyFd, "1", "--ready-fd");

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
    console.error(`[-] #${Deno.pid} Slirpnetstack stopped: ${JSON.stringify(stack.counters.snapshot())}`);
  }
  return 0;
}
