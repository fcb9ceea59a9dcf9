// The stack: builds the layers, takes frames from the tap, and drives timers. It is the only
// part that knows all layers; each layer knows only the one below it.

import { Counters } from "./base/counters.ts";
import { Icmp4, Icmp6 } from "./icmp/icmp.ts";
import { Ip } from "./ip/ip.ts";
import { Link } from "./link/link.ts";
import type { NetPlan } from "./base/netplan.ts";
import { type FrameSink, Tx } from "./link/tx.ts";
import {
  VIRTIO_NET_HDR_F_DATA_VALID as VNET_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM as VNET_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE as VNET_GSO_NONE,
  VnetView,
} from "./wire/vnet.ts";
import type { Poller } from "../ffi/poller.ts";
import { TimerWheel } from "./flow/timers.ts";
import { type Admission, expectDnsFraming, TcpStack } from "./tcp/mod.ts";
import {
  addDnsBlackhole,
  addHostLoopback,
  type FlowTarget,
  FlowVerdict,
  type HostLoopback,
  Outbound,
} from "./flow/outbound.ts";
import { broadcast4 } from "./flow/routable.ts";
import { ErrorLineLimiter } from "./flow/linelimit.ts";
import { GuestSources } from "./ip/source.ts";
import { GuestServices, type ServicesOptions } from "./services/mod.ts";
import { TcpSocket } from "../ffi/socket.ts";
import { Fragmenter } from "./ip/frag.ts";
import { Reassembler } from "./ip/reasm.ts";
import { UdpStack } from "./udp/mod.ts";
import { RX_AREA } from "./udp/host.ts";
import { UDP_BATCH_CAP } from "./udp/batch.ts";
import { Ping } from "./icmp/ping.ts";
import { Forwards } from "./forwards/mod.ts";
import type { SpliceMode } from "./forwards/spec.ts";
import { bytesEqual, formatIp } from "./wire/bytes.ts";
import type { Conn } from "./tcp/conn.ts";
import type { Policy } from "./base/names.ts";

/** The tap as the stack sees it: frames in and out. */
export interface FrameIo extends FrameSink {
  /** Reads one frame into buf; 0 when there is none. */
  read(buf: Uint8Array): number;
}

/** Decides whether a guest flow to dst:port may start (the firewall's one question). */
export type { Policy } from "./base/names.ts";

export interface StackOptions {
  plan: NetPlan;
  mtu: number;
  tap: FrameIo;
  poller: Poller;
  policy: Policy;
  log: (line: string) => void;
  quiet: boolean;
  connectTimeoutMs: number;
  /** DNS forwarder, DHCP server, router advertisements; absent: none (unit tests, fuzz). */
  services?: ServicesOptions;
  /** Idle time after which a UDP flow (and a routed echo flow) ends (default 120 s). */
  udpTimeoutMs?: number;
  /** Most UDP flows at once; the one idle longest is evicted (default 4096). */
  maxUdpFlows?: number;
  /** --outbound-addr / --outbound-addr6: source address of routed flows' host sockets. */
  outbound4?: Uint8Array | null;
  outbound6?: Uint8Array | null;
  /**
   * slirp4netns form: guest TCP/UDP to the gateway reaches the host's loopback ("redirect"), or
   * gets ICMP network unreachable (--disable-host-loopback: "unreachable"). Absent: neither
   * (slirpnetstack form: the gateway is no host address, the firewall decides).
   */
  hostLoopback?: HostLoopback;
  /** --dns-ttl: how long a forward's resolved host name is used (default 5 s). */
  dnsTtlMs?: number;
  /**
   * May a forwarded client's address be the source the guest sees (not on the sanity block
   * list)? Absent: never, the gateway address is used.
   */
  forwardSourceOk?: (family: 4 | 6, addr: Uint8Array) => boolean;
  /** --forward-splice and the guest-netns socket maker (stack/forwards/splice.ts). */
  forwardSplice?: SpliceMode;
  guestSocket?: (family: 4 | 6, addr: Uint8Array, port: number) => TcpSocket;
}

/** Frames handled per readiness callback before host sockets get their turn. */
const DRAIN_BUDGET = 256;
export const RX_BUFFER_SIZE = 128 * 1024;

export class Stack {
  readonly counters = new Counters();
  readonly tx: Tx;
  /**
   * The tap's read buffer and, behind it, UDP's gather buffer: one ArrayBuffer, so that moving
   * a guest datagram into a batch is one copyWithin (wire/bytes.ts copyBytes).
   */
  readonly #area = new Uint8Array(RX_BUFFER_SIZE + UDP_BATCH_CAP);
  readonly #rx = this.#area.subarray(0, RX_BUFFER_SIZE);
  readonly #vnet = new VnetView();
  readonly #vnetLen: number;
  readonly #link: Link;
  readonly #ip: Ip;
  readonly #tap: FrameIo;
  readonly wheel = new TimerWheel(performance.now());
  /** The rate limit of per-flow error lines. */
  readonly lines: ErrorLineLimiter;
  readonly tcp: TcpStack;
  readonly services: GuestServices | null;
  readonly frag: Fragmenter;
  readonly reasm: Reassembler;
  readonly udp: UdpStack;
  readonly ping: Ping;
  readonly outbound: Outbound;
  /** Port forwards (-L, -R, the API socket's add_hostfwd). */
  readonly forwards: Forwards;

  constructor(readonly opts: StackOptions) {
    this.#tap = opts.tap;
    this.#vnetLen = opts.tap.vnetLen;
    // Behind the frame area: UDP's recvmmsg slots (udp/host.ts).
    this.tx = new Tx(opts.tap, opts.plan.mac, opts.mtu, this.counters, RX_AREA);
    const icmp4 = new Icmp4(opts.plan, this.tx, this.counters);
    const icmp6 = new Icmp6(opts.plan, this.tx, this.counters);
    // UDP routing and routed echo (ICMP that is not for slirpd itself goes to ping).
    this.frag = new Fragmenter(this.tx, opts.plan.mac, this.counters);
    icmp4.frag = icmp6.frag = this.frag;
    // New flows ask Outbound: redirects first (DNS over TCP to the upstream resolver, remote
    // forwards, host loopback), then the firewall.
    const out = new Outbound(
      opts.policy,
      opts.outbound4 ?? null,
      opts.outbound6 ?? null,
      broadcast4(opts.plan.prefix4, opts.plan.prefixLen4),
    );
    this.outbound = out;
    // Per-flow error lines of TCP and UDP go through one rate limit (flow/linelimit.ts).
    const lines = new ErrorLineLimiter(opts.log, this.wheel, () => performance.now());
    this.lines = lines;
    if (opts.hostLoopback) {
      addHostLoopback(out, opts.plan.gateway4, opts.plan.gateway6, opts.hostLoopback);
    }
    this.udp = new UdpStack(this.tx, this.frag, opts.poller, this.wheel, this.counters, {
      outbound: out,
      log: lines.log,
      quiet: opts.quiet,
      timeoutMs: opts.udpTimeoutMs,
      maxFlows: opts.maxUdpFlows,
      batchBuf: this.#area.subarray(RX_BUFFER_SIZE),
    });
    this.ping = new Ping(this.tx, this.frag, opts.poller, this.wheel, this.counters, {
      policy: opts.policy,
      routable: (f, b, o) => out.routable(f, b, o),
      bindFor: (f) => out.bindFor(f),
      timeoutMs: opts.udpTimeoutMs,
    });
    icmp4.next = this.ping;
    icmp6.next = this.ping;
    const svc = opts.services
      ? new GuestServices(
        opts.plan,
        this.tx,
        opts.poller,
        this.wheel,
        this.counters,
        opts.mtu,
        opts.services,
        opts.log,
        this.udp,
      )
      : null;
    this.services = svc;
    icmp6.next = svc?.icmp6Input(icmp6.next) ?? icmp6.next;
    if (opts.services && !opts.services.dns) {
      addDnsBlackhole(out, opts.plan.dns4, opts.plan.dns6);
    }
    if (svc?.dns) {
      // DNS over TCP to the upstream resolver: the connection must carry DNS only.
      const dnsTarget = (f: 4 | 6, dst: Uint8Array, port: number): FlowTarget | null => {
        const t = svc.dnsTcpTarget(f, dst, port);
        return t === null ? null : { family: t.family, addr: t.addr, port: t.port, framing: "dns" };
      };
      out.addRedirect({ proto: 6, family: 4, addr: opts.plan.dns4, port: 53, target: dnsTarget });
      out.addRedirect({ proto: 6, family: 6, addr: opts.plan.dns6, port: 53, target: dnsTarget });
    }
    // The TCP engine asks `admit` once per SYN and hands the answer (a redirect's target
    // included) to `tag` and `connect` in that same SYN.
    const admit = (f: 4 | 6, dst: Uint8Array, port: number): Admission => {
      switch (out.decide(6, f, dst, port)) {
        case FlowVerdict.Routed:
          return "routed";
        case FlowVerdict.Redirected:
          return out.target ?? "refused";
        case FlowVerdict.Unreachable:
          return "unreachable";
        case FlowVerdict.Dropped:
          return "dropped";
        default:
          return "refused";
      }
    };
    const connect = (f: 4 | 6, addr: Uint8Array, port: number, a: Admission) => {
      if (typeof a === "object") {
        const bind = a.bindOutbound ? out.bindFor(a.family) : null;
        return bind
          ? TcpSocket.connect(a.family, a.addr, a.port, { bindAddr: bind })
          : TcpSocket.connect(a.family, a.addr, a.port);
      }
      const bindAddr = out.bindFor(f);
      return bindAddr
        ? TcpSocket.connect(f, addr, port, { bindAddr })
        : TcpSocket.connect(f, addr, port);
    };
    // A remote forward's connection carries it (its log lines, its end when it is removed);
    // the host side of its label is the target until the connect succeeds.
    const remoteClosed = (c: Conn) =>
      this.forwards.accountRemote(c.bytesFromGuest, c.bytesFromHost);
    const tag = (c: Conn, t: Admission) => {
      if (typeof t !== "object") return;
      if (t.framing === "dns") expectDnsFraming(c);
      if (t.owner === undefined) return;
      c.fwd = t.owner;
      c.onHostClosed = remoteClosed;
      if (!opts.quiet) {
        const a = formatIp(t.addr);
        c.hostLabel = t.family === 4 ? `${a}:${t.port}` : `[${a}]:${t.port}`;
      }
    };
    this.tcp = new TcpStack(this.tx, opts.poller, this.wheel, {
      connect,
      admit,
      tag,
      quiet: opts.quiet,
      log: lines.log,
      connectTimeoutMs: opts.connectTimeoutMs,
      mtu: opts.mtu,
      now: () => performance.now(),
    });
    this.#ip = new Ip(this.counters, {
      icmp4,
      icmp6,
      tcp: this.tcp,
      udp: this.udp, // local services (DNS, DHCP) are registered with it
    }, new GuestSources(opts.plan));
    const ip = this.#ip;
    ip.onLoopbackSource6 = (m) => icmp6.refuseLoopbackSource(m);
    this.reasm = new Reassembler(
      this.wheel,
      this.counters,
      (family, b, o, n) => ip.reassembled(family, b, o, n),
    );
    ip.reasm = this.reasm;
    this.#link = new Link(opts.plan, this.tx, this.counters, this.#ip);
    this.forwards = new Forwards({
      plan: opts.plan,
      tcp: this.tcp,
      udp: this.udp,
      outbound: out,
      poller: opts.poller,
      wheel: this.wheel,
      log: opts.log,
      quiet: opts.quiet,
      dnsTtlMs: opts.dnsTtlMs ?? 5000,
      udpTimeoutMs: opts.udpTimeoutMs ?? 120_000,
      sourceOk: opts.forwardSourceOk,
      splice: opts.forwardSplice,
      connectTimeoutMs: opts.connectTimeoutMs,
      guestSocket: opts.guestSocket,
    });
    // A remote forward's address inside the guest's prefix is on the guest's link: answer ARP
    // and NDP for it (never for the guest's own address).
    const plan = opts.plan;
    const ownsRedirect = (f: 4 | 6, b: Uint8Array, o: number) =>
      out.size > 0 && out.hasAddress(f, b, o) &&
      !(f === 4 ? bytesEqual(b, o, plan.guest4, 0, 4) : bytesEqual(b, o, plan.guest6, 0, 16));
    this.#link.alsoOwns = ownsRedirect;
    icmp6.alsoOwns = ownsRedirect;
  }

  /** Reads and handles frames until the tap is empty or the budget is spent. */
  drainTap(): void {
    const rx = this.#rx;
    for (let i = 0; i < DRAIN_BUDGET; i++) {
      const n = this.#tap.read(rx);
      if (n <= 0) break;
      this.input(rx, n);
    }
    this.udp.flush(); // the guest's datagrams gathered during the batch
    this.tcp.flush(); // the ACKs deferred during the batch
  }

  /** One frame as read from the tap (with the virtio-net header when the tap has one). */
  input(b: Uint8Array, n: number): void {
    const vl = this.#vnetLen;
    this.counters.framesIn++;
    this.counters.bytesIn += n - vl;
    const cap = this.tx.capture; // -pcap
    if (cap !== null && n > vl) cap.write(b, vl, n - vl);
    const ip = this.#ip;
    if (vl > 0) {
      const h = this.#vnet;
      if (n < vl || !h.parse(b, 0, n)) {
        this.counters.dropMalformedLink++;
        return;
      }
      ip.csumTrusted = (h.flags & (VNET_NEEDS_CSUM | VNET_DATA_VALID)) !== 0;
      ip.gsoSize = h.gsoType === VNET_GSO_NONE ? 0 : h.gsoSize;
    } else {
      ip.csumTrusted = false;
      ip.gsoSize = 0;
    }
    try {
      this.#link.input(b, vl, n - vl);
    } catch (e) {
      // A bug must cost one frame, never the daemon; count it and say it once.
      this.counters.dropInternalError++;
      if (this.counters.dropInternalError === 1) {
        console.error(`[!] internal error on a guest frame (counted from now on): ${e}`);
      }
    }
  }

  /** Runs due timers; returns ms until the next one is due (-1: none). */
  tick(): number {
    const now = performance.now();
    this.wheel.advance(now);
    this.udp.flush();
    this.tcp.flush();
    return this.wheel.nextTimeout(now);
  }

  close(): void {
    this.forwards.close();
    this.services?.close();
    this.udp.close();
    this.ping.close();
    this.reasm.close();
    this.tcp.close();
    this.lines.flush();
  }
}
