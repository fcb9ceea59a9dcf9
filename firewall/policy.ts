// "May this flow start?" — the one question the stack asks. Until rules exist (the firewall
// issue), the answer is: never to the sanity block list; otherwise only when --enable-routing
// or --enable-host is given. It is asked once per new flow, never per packet.

import type { NetPlan } from "../stack/netplan.ts";
import { inPrefix, type Prefix, SANITY_V4, SANITY_V6 } from "./sanity.ts";

/** Decides whether a guest flow to dst:port (proto 6 TCP, 17 UDP, 1/58 ICMP) may start. */
export type Policy = (family: 4 | 6, proto: number, dst: Uint8Array, port: number) => boolean;

export interface PolicyFlags {
  enableRouting: boolean;
  enableHost: boolean;
}

export function makePolicy(flags: PolicyFlags, plan: NetPlan): Policy {
  const v4: Prefix[] = [...SANITY_V4, { addr: plan.prefix4, len: plan.prefixLen4 }];
  const v6: Prefix[] = [...SANITY_V6, { addr: plan.prefix6, len: plan.prefixLen6 }];
  const open = flags.enableRouting || flags.enableHost;
  return (family, _proto, dst) => {
    if (!open) return false;
    for (const pr of family === 4 ? v4 : v6) if (inPrefix(dst, pr)) return false;
    return true;
  };
}
