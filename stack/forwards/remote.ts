// A remote forward (-R): guest flows to BINDIP:BINDPORT go to a host target. It is a redirect
// in stack/flow/outbound.ts (asked once per new flow, before the firewall: the operator named this
// destination, so remote forwards are not subject to --enable-host/--allow), so the TCP and
// UDP transports carry it like any flow, only to the target instead of the destination.
//
// BINDIP may be any address, not only the gateway: the guest routes it to slirpd (or, inside
// its own prefix, ARPs for it: link.ts/icmp.ts answer for redirect addresses). BINDPORT 0
// catches every port of BINDIP; TARGETPORT 0 keeps the port the guest used.

import type { FlowTarget } from "../flow/outbound.ts";
import { formatIp } from "../wire/bytes.ts";
import type { HostAddr } from "./addr.ts";
import {
  addrPort,
  type Forward,
  type ForwardEntry,
  ForwardError,
  type FwdShared,
} from "./common.ts";
import type { ForwardSpec } from "./spec.ts";

export class RemoteFwd implements Forward {
  readonly entry: ForwardEntry;
  #off: (() => void) | null = null;

  constructor(
    private readonly sh: FwdShared,
    private readonly spec: ForwardSpec,
    private readonly bind: Uint8Array,
    private readonly target: HostAddr,
    id: number,
  ) {
    this.entry = {
      id,
      dir: "remote",
      network: spec.network,
      hostAddr: target.text,
      hostPort: spec.targetPort,
      guestAddr: formatIp(bind),
      guestPort: spec.bindPort,
    };
  }

  open(): void {
    const where = `${this.spec.network}://${addrPort(this.bind, this.spec.bindPort)}`;
    const b = this.bind;
    if (b.every((x) => x === 0) || (b.length === 4 ? b[0] >= 224 : b[0] === 0xff)) {
      throw new ForwardError(
        `Failed to accept on remote side ${where}: the bind address must be a unicast address`,
      );
    }
    const target = (_f: 4 | 6, _dst: Uint8Array, port: number): FlowTarget | null => {
      const a = this.target.current();
      if (a === null) return null;
      return {
        family: a.length === 4 ? 4 : 6,
        addr: a,
        port: this.target.port || this.spec.targetPort || port,
        owner: this, // its flows are tagged with it: see close()
        rpc: this.spec.rpc,
      };
    };
    try {
      this.#off = this.sh.o.outbound.addRedirect({
        proto: this.spec.proto,
        family: this.bind.length === 4 ? 4 : 6,
        addr: this.bind,
        port: this.spec.bindPort,
        target,
      });
    } catch (e) {
      throw new ForwardError(
        `Failed to accept on remote side ${where}: ${e instanceof Error ? e.message : e}`,
      );
    }
    this.sh.log(`[+] Accepting on remote side ${where}`);
  }

  /**
   * New flows stop being redirected, and the ones it redirected end: TCP connections get a RST
   * on both sides, UDP flows close their host sockets. Removal is rare (the API socket,
   * shutdown), so the tables are scanned for the flows tagged with this forward.
   */
  close(): void {
    this.#off?.();
    this.#off = null;
    const tcp = this.sh.o.tcp;
    for (const c of tcp.table.all()) {
      // A connection in TIME-WAIT without its socket is finished on both sides already.
      if (c.fwd === this && c.sock !== null) tcp.reset(c, "forward removed");
    }
    this.sh.o.udp.closeOwnedBy(this, "forward removed");
  }
}
