// The guest's tap, first of all. Scripts start slirp4netns in the background and touch the tap a
// few milliseconds later, so main.ts calls this before the stack's modules are even loaded
// (they load meanwhile, daemon/run.ts): this module imports only the ffi it needs.
//
// The two descriptors that must be created inside the guest netns (/dev/net/tun and a
// NETLINK_ROUTE socket) come from ffi/userns.ts: a short setns window when the kernel allows the
// way there and back, else a helper process. The tap is opened or created on them and, with
// --configure, the guest is set up.

import type { Config } from "./config.ts";
import { adoptFrameFd, openTap, type Tap } from "../ffi/tap.ts";
import { configureGuest } from "../ffi/netlink.ts";
import { netnsOwner, openGuestNetns } from "../ffi/userns.ts";
import { nsInode } from "../ffi/netns.ts";
import { checkFd } from "../ffi/fd.ts";
import { netPlanFrom } from "../stack/base/netplan.ts";

/**
 * --userns-path: slirp4netns joins that user namespace; slirpd finds the netns's owner itself
 * (ffi/userns.ts), so the path must name that owner, or the two would disagree.
 */
export function checkUserns(cfg: Config): void {
  if (cfg.usernsPath === null) return;
  const want = nsInode(cfg.usernsPath);
  const owner = netnsOwner(cfg.netns).ownerUserns;
  if (want !== owner) {
    throw new Error(
      `--userns-path ${cfg.usernsPath} is not the user namespace that owns ${cfg.netns}`,
    );
  }
}

/**
 * Must the firewall's lookups come before the tap? Only when there are any (a rule naming a
 * host, an --outbound-addr naming an interface): a bad one then stops slirpd with its usage
 * line before the guest is touched. The clients that start slirp4netns pass none, so their tap
 * is made first.
 */
export function lookupsFirst(cfg: Config): boolean {
  const named = (lists: Config["allow"]) => lists.some((l) => l.specs.some((s) => s.addr === null));
  const iface = (o: Config["outbound4"]) => o !== null && "ifname" in o;
  return named(cfg.allow) || named(cfg.deny) || iface(cfg.outbound4) || iface(cfg.outbound6);
}

/**
 * Checks --userns-path, then opens (or creates) the tap and, with --configure, sets it up;
 * with -fd, adopts the inherited frame descriptor instead. `embedded` (`-- CMD`): no
 * slirpnetstack progress lines, since CMD owns stderr.
 */
export async function attachGuest(cfg: Config, embedded = false): Promise<Tap> {
  if (cfg.linkFd !== null) return adoptFrameFd(cfg.linkFd, cfg.vnetHdr);
  checkUserns(cfg);
  // A bad --exit-fd / --ready-fd is a start failure, not a half-made tap.
  for (const [fd, what] of [[cfg.exitFd, "--exit-fd"], [cfg.readyFd, "--ready-fd"]] as const) {
    if (fd !== null) checkFd(fd, what);
  }
  const progress = embedded ? () => {} : (line: string) => console.error(line);
  const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
  progress(`[.] Joininig netns ${cfg.netns}`); // (sic: slirpnetstack's, scripts match it)
  const ns = await openGuestNetns(cfg.netns);
  try {
    progress(`[.] Opening tun interface ${cfg.ifname}`);
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
