// What every kind of forward shares: the stack's parts, the choice of the source address the
// guest sees, source ports for flows slirpd opens toward the guest, and formatting.

import { EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, errnoName } from "../../ffi/errno.ts";
import { SyscallError } from "../../ffi/libc.ts";
import type { NetPlan } from "../base/netplan.ts";
import type { Outbound } from "../flow/outbound.ts";
import type { TimerWheel } from "../flow/timers.ts";
import type { TcpStack } from "../tcp/mod.ts";
import type { PollerLike } from "../base/names.ts";
import type { UdpStack } from "../udp/mod.ts";
import type { TcpSocket } from "../../ffi/socket.ts";
import { bytesEqual } from "../wire/bytes.ts";
import type { ForwardSpec, SpliceMode } from "./spec.ts";

/** One row of the forward table (the API socket's list_hostfwd shows the local ones). */
export interface ForwardEntry {
  id: number;
  dir: "local" | "remote";
  /** tcp, udp, tcppp, or the API's tcp4/tcp6/udp4/udp6. */
  network: string;
  /** The host side: -L the listening address, -R the target. */
  hostAddr: string;
  hostPort: number;
  /** The guest side: -L the target in the guest, -R the address the guest connects to. */
  guestAddr: string;
  guestPort: number;
}

/** A live forward in the table. */
export interface Forward {
  readonly entry: ForwardEntry;
  /** Stops it: listener or redirect gone, live connections and flows closed. */
  close(): void;
}

/** A forward could not be set up; the message is the whole line (without "[!] "). */
export class ForwardError extends Error {
  constructor(
    message: string,
    /** A name (bind or target) did not resolve (slirpnetstack's exit 246 for -R). */
    readonly unresolved = false,
  ) {
    super(message);
    this.name = "ForwardError";
  }
}

export interface ForwardsOptions {
  plan: NetPlan;
  tcp: TcpStack;
  udp: UdpStack;
  outbound: Outbound;
  poller: PollerLike;
  wheel: TimerWheel;
  /** Connection lines (stdout, slirpnetstack's "[+] ... local-fwd conn"). */
  log: (line: string) => void;
  quiet: boolean;
  /** --dns-ttl: how long a resolved host name is used before it is looked up again. */
  dnsTtlMs: number;
  /** Idle time after which a forwarded UDP client's flow ends. */
  udpTimeoutMs: number;
  /**
   * May the guest see this client address as the source (not on the sanity block list)?
   * Default: never (the gateway address is used).
   */
  sourceOk?: (family: 4 | 6, addr: Uint8Array) => boolean;
  /** --connect-timeout: how long a spliced connection's guest side may take (default 10 s). */
  connectTimeoutMs?: number;
  /** --forward-splice: the default of local TCP forwards (default "never"). */
  splice?: SpliceMode;
  /**
   * A non-blocking TCP socket made inside the guest's netns, connecting to addr:port there
   * (stack/forwards/splice.ts). Absent: no splicing (rootless: slirpd cannot enter the netns).
   * Throws SyscallError when the socket cannot be made.
   */
  guestSocket?: (family: 4 | 6, addr: Uint8Array, port: number) => TcpSocket;
}

/** Ephemeral ports for the sources of flows slirpd opens toward the guest. */
const PORT_LO = 32768;
const PORT_SPAN = 61000 - PORT_LO;

/** Payload bytes forwards carried, added when a connection or flow ends (-m /metrics). */
export class FwdBytes {
  localToGuest = 0;
  localFromGuest = 0;
  remoteToHost = 0;
  remoteFromHost = 0;
}

export class FwdShared {
  readonly bytes = new FwdBytes();
  readonly #scratch = new Uint8Array(32);
  #next = Math.floor(Math.random() * PORT_SPAN);

  constructor(readonly o: ForwardsOptions) {}

  log(line: string): void {
    if (!this.o.quiet) this.o.log(line);
  }

  /**
   * The source address the guest sees for a flow from `client` toward a guest address of
   * family `family`: the client itself (so a guest service sees who connects), unless it is of
   * the other family or on the sanity block list (127.0.0.1, the guest's own network, ...):
   * then the gateway's address, as slirpnetstack does.
   */
  guestSource(family: 4 | 6, client: Uint8Array | null): Uint8Array {
    const gw = family === 4 ? this.o.plan.gateway4 : this.o.plan.gateway6;
    if (client === null || client.length !== (family === 4 ? 4 : 16)) return gw;
    return this.o.sourceOk?.(family, client) ? client : gw;
  }

  /** Whether `addr` is the guest's own address (what a socket in its netns reaches locally). */
  isGuest(addr: Uint8Array): boolean {
    const p = this.o.plan;
    return addr.length === 4
      ? bytesEqual(addr, 0, p.guest4, 0, 4)
      : bytesEqual(addr, 0, p.guest6, 0, 16);
  }

  /** Whether `src` (a guestSource answer) is the gateway: the client's address is not shown. */
  isGateway(src: Uint8Array): boolean {
    const p = this.o.plan;
    return src.length === 4
      ? bytesEqual(src, 0, p.gateway4, 0, 4)
      : bytesEqual(src, 0, p.gateway6, 0, 16);
  }

  #port(): number {
    this.#next = (this.#next + 1) % PORT_SPAN;
    return PORT_LO + this.#next;
  }

  /** A source port for a TCP connection src → guest:guestPort that is not in use; -1: none. */
  tcpPort(family: 4 | 6, guest: Uint8Array, guestPort: number, src: Uint8Array): number {
    const s = this.#scratch;
    s.set(guest, 0);
    s.set(src, 16);
    for (let i = 0; i < 64; i++) {
      const p = this.#port();
      if (this.o.tcp.table.lookup(family, s, 0, guestPort, 16, p) === null) return p;
    }
    return -1;
  }

  /** A source port for a UDP flow from src: registers `handler` for the guest's replies. */
  udpService(
    family: 4 | 6,
    src: Uint8Array,
    handler: Parameters<UdpStack["addLocalService"]>[3],
  ): { port: number; off: () => void } | null {
    for (let i = 0; i < 64; i++) {
      const port = this.#port();
      try {
        return { port, off: this.o.udp.addLocalService(family, src, port, handler) };
      } catch { /* taken: the next one */ }
    }
    return null;
  }
}

export { addrPort, unmap } from "../base/names.ts";

/** "tcp" / "udp" for messages (tcppp listens on tcp). */
export function transport(spec: ForwardSpec): string {
  return spec.proto === 6 ? "tcp" : "udp";
}

/** A listening attempt: family, address, IPV6_V6ONLY. */
export interface ListenAt {
  family: 4 | 6;
  addr: Uint8Array;
  v6only?: boolean;
}

const ANY6 = new Uint8Array(16);

/**
 * Where a local forward listens, in order of preference. 0.0.0.0 means every address of both
 * families (a dual-stack [::] socket), unless the family is forced to 4 (tcp4/udp4) or IPv6 is
 * missing or [::] is taken for that port: then IPv4 alone. [::] itself is IPv6 only, so the
 * two can be forwarded to different guest addresses.
 */
export function listenPlan(addr: Uint8Array, family: 4 | 6 | null): ListenAt[] {
  if (addr.length === 4) {
    const any = addr[0] === 0 && addr[1] === 0 && addr[2] === 0 && addr[3] === 0;
    if (any && family !== 4) return [{ family: 6, addr: ANY6, v6only: false }, { family: 4, addr }];
    return [{ family: 4, addr }];
  }
  return [{ family: 6, addr, v6only: addr.every((b) => b === 0) ? true : undefined }];
}

/** Whether a failed dual-stack attempt may fall back to the next one. */
export function retryable(e: unknown): boolean {
  return e instanceof SyscallError &&
    (e.errno === EAFNOSUPPORT || e.errno === EADDRNOTAVAIL || e.errno === EADDRINUSE);
}

const STRERROR: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "cannot assign requested address",
  EACCES: "permission denied",
  EAFNOSUPPORT: "address family not supported",
  EMFILE: "too many open files",
};

/** A listen failure as one readable reason: "bind: address already in use (EADDRINUSE)". */
export function reason(e: unknown): string {
  if (e instanceof SyscallError) {
    const name = errnoName(e.errno);
    const text = STRERROR[name];
    return `${e.call}: ${text ? `${text} (${name})` : name}`;
  }
  return e instanceof Error ? e.message : String(e);
}
