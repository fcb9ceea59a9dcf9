// Routed ICMP echo: `ping 192.0.2.2` from the guest. Echo to slirpd's own addresses is answered
// in stack/icmp/icmp.ts; everything else that Icmp4/Icmp6 pass on (`next`) comes here.
//
// An echo request to an allowed destination (policy(family, 1 | 58, dst, 0)) is sent through an
// unprivileged ICMP socket (socket(SOCK_DGRAM, IPPROTO_ICMP/ICMPV6), ffi/dgram.ts PingSocket),
// one per (guest, destination, identifier) flow, registered with the poller. The socket's ident
// is bound to the guest's identifier so requests leave with it unchanged; when another ping
// socket holds that ident (EADDRINUSE) an unbound socket is used and the reply's identifier is
// written back. With --outbound-addr[6] the socket also binds that source address. Sequence
// numbers and data pass through. Replies go to the guest from the pinged address.
//
// The kernel allows these sockets only to groups in net.ipv4.ping_group_range (per network
// namespace, both families). When it refuses, the request is answered locally as if the
// destination had replied (slirpnetstack's behaviour), and the log says so once. Flows expire
// when idle (the UDP timeout) and are bounded like UDP flows.
//
// Messages that are not echo requests (errors from the guest, router solicitations, ...) go on
// to `next` (e.g. the router-advertisement handler), or are dropped (counted).

import { EADDRINUSE, EAGAIN, errnoName } from "../../ffi/errno.ts";
import { PingSocket } from "../../ffi/dgram.ts";
import { setIntOpt, SO_REUSEADDR, SOL_SOCKET } from "../../ffi/sockio.ts";
import { copyBytes, setU16, u16 } from "../wire/bytes.ts";
import type { Counters } from "../base/counters.ts";
import type { Fragmenter } from "../ip/frag.ts";
import type { Transport } from "../ip/ip.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { TimerWheel } from "../flow/timers.ts";
import type { Tx } from "../link/tx.ts";
import { type CloseReason, Flow, FlowTable } from "../flow/datagram.ts";
import { EPOLLIN, type PollerLike } from "../base/names.ts";

const ECHO_REQUEST4 = 8;
const ECHO_REPLY4 = 0;
const ECHO_REQUEST6 = 128;
const ECHO_REPLY6 = 129;
/** Replies read from one socket per readiness event. */
const RECV_BUDGET = 64;

export interface PingConfig {
  policy(family: 4 | 6, proto: number, dst: Uint8Array, port: number): boolean;
  /** Can a flow go to the address at b[o] at all (Outbound.routable, stack/flow/routable.ts)? */
  routable(family: 4 | 6, b: Uint8Array, o: number): boolean;
  /** The source address ping sockets bind (--outbound-addr[6]); absent or null: the kernel's. */
  bindFor?(family: 4 | 6): Uint8Array | null;
  /** Where the one "answered locally" notice goes (default console.error). */
  warn?: (line: string) => void;
  /** Idle time after which a flow and its socket go (default 60 s). */
  timeoutMs?: number;
  /** Most flows at once (default 256). */
  maxFlows?: number;
}

export class PingStats {
  requests = 0;
  replies = 0;
  /** Requests answered by slirpd itself (ping sockets not permitted). */
  answeredLocally = 0;
  policyRefused = 0;
  notRoutable = 0;
  sendErrors = 0;
  socketErrors = 0;
  /** Ident taken by another ping socket: an unbound socket with the id rewritten. */
  idRewritten = 0;
}

class PingFlow extends Flow {
  /** null: answered locally. */
  sock: PingSocket | null = null;
  onEvents: ((ev: number) => void) | null = null;
}

export class Ping implements Transport {
  readonly stats = new PingStats();
  readonly flows: FlowTable<PingFlow>;
  #warned = false;

  constructor(
    readonly tx: Tx,
    readonly frag: Fragmenter,
    readonly poller: PollerLike,
    readonly wheel: TimerWheel,
    readonly counters: Counters,
    readonly cfg: PingConfig,
    /** What is not an echo request for a routed destination. */
    public next?: Transport,
  ) {
    this.flows = new FlowTable<PingFlow>(
      wheel,
      cfg.maxFlows ?? 256,
      cfg.timeoutMs ?? 60_000,
      (f, why) => this.#closed(f, why),
    );
  }

  /** An ICMP / ICMPv6 message not addressed to slirpd (checksum verified by Icmp4/Icmp6). */
  input(m: PacketMeta): void {
    const b = m.b;
    const o = m.l4Off;
    const v4 = m.family === 4;
    if (b[o] !== (v4 ? ECHO_REQUEST4 : ECHO_REQUEST6) || b[o + 1] !== 0) {
      if (this.next) this.next.input(m);
      else this.counters.dropUnhandled++;
      return;
    }
    const id = u16(b, o + 4);
    let f = this.flows.lookup(m.family, b, m.srcOff, id, m.dstOff, 0);
    if (f === null) {
      f = this.#open(m, id);
      if (f === null) return;
    }
    this.stats.requests++;
    this.flows.touch(f);
    const s = f.sock;
    if (s === null) {
      this.#answer(f, b, o, m.l4Len);
      return;
    }
    const n = s.sendTo(b, o, m.l4Len, f.remoteAddr);
    if (n < 0) this.stats.sendErrors++;
  }

  #open(m: PacketMeta, id: number): PingFlow | null {
    const b = m.b;
    const family = m.family;
    const d = m.dstOff;
    if (!this.cfg.routable(family, b, d)) {
      this.stats.notRoutable++;
      this.counters.dropUnhandled++;
      return null;
    }
    const alen = family === 4 ? 4 : 16;
    const dst = b.slice(d, d + alen);
    if (!this.cfg.policy(family, family === 4 ? 1 : 58, dst, 0)) {
      this.stats.policyRefused++;
      this.counters.dropPolicy++;
      return null;
    }
    const f = new PingFlow(family, b.slice(m.srcOff, m.srcOff + alen), id, dst, 0);
    let sock: PingSocket | null;
    this.flows.makeRoom();
    try {
      sock = PingSocket.open(family);
    } catch {
      this.stats.socketErrors++; // EMFILE and the like: this request is lost
      return null;
    }
    if (sock === null) {
      if (!this.#warned) {
        this.#warned = true;
        const why = errnoName(PingSocket.lastError);
        (this.cfg.warn ?? console.error)(
          `[!] ICMP echo sockets are not permitted (net.ipv4.ping_group_range, ${why}): ` +
            "echo requests to routed destinations are answered locally",
        );
      }
    } else {
      // Ping sockets are born with SO_REUSEADDR, so two of them may bind one ident and the
      // replies go to only one. Without it, the bind fails when any other socket holds the
      // ident (EADDRINUSE): slirpd then takes whatever ident the kernel picks and rewrites the
      // replies, and never steals a host process's replies (nor lets one steal the guest's).
      setIntOpt(sock.fd, SOL_SOCKET, SO_REUSEADDR, 0);
      const src = this.cfg.bindFor?.(family) ?? null;
      let r = sock.bindId(id, src);
      if (r < 0 && (src === null || r === -EADDRINUSE)) {
        this.stats.idRewritten++;
        // With a source address the socket must be bound anyway: any free ident.
        r = src === null ? 0 : sock.bindId(0, src);
      }
      if (r < 0) {
        // The --outbound-addr is not (or no longer) on this host: never send from another.
        sock.close();
        this.stats.socketErrors++;
        return null;
      }
      f.sock = sock;
      f.onEvents = () => this.#pull(f);
      this.poller.add(sock, EPOLLIN, f.onEvents);
    }
    this.flows.add(f);
    return f;
  }

  /** Echo replies from the host socket, to the guest from the pinged address. */
  #pull(f: PingFlow): void {
    const tx = this.tx;
    const family = f.family;
    const l4 = tx.l4Offset(family);
    const max = family === 4 ? 65515 : 65535;
    const reply = family === 4 ? ECHO_REPLY4 : ECHO_REPLY6;
    for (let i = 0; i < RECV_BUDGET; i++) {
      const s = f.sock;
      if (s === null) return;
      const n = s.recv(tx.buf, l4, max);
      if (n < 0) {
        if (n !== -EAGAIN) this.stats.sendErrors++;
        return;
      }
      if (n < 8 || tx.buf[l4] !== reply) continue;
      setU16(tx.buf, l4 + 4, f.guestPort); // the guest's identifier (tx.sendIp re-sums)
      if (this.frag.send(family, f.remoteAddr, f.guestAddr, family === 4 ? 1 : 58, n)) {
        this.stats.replies++;
      }
      this.flows.touch(f);
    }
  }

  /** No ping socket: the reply the destination would have sent. */
  #answer(f: PingFlow, b: Uint8Array, o: number, len: number): void {
    const tx = this.tx;
    const l4 = tx.l4Offset(f.family);
    if (len > tx.buf.length - l4 - 8) return;
    copyBytes(tx.buf, l4, b, o, len);
    tx.buf[l4] = f.family === 4 ? ECHO_REPLY4 : ECHO_REPLY6;
    if (this.frag.send(f.family, f.remoteAddr, f.guestAddr, f.family === 4 ? 1 : 58, len)) {
      this.stats.answeredLocally++;
    }
  }

  #closed(f: PingFlow, _why: CloseReason): void {
    const s = f.sock;
    if (s !== null) {
      this.poller.remove(s);
      s.close();
      f.sock = null;
    }
    f.onEvents = null;
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.stats)) if (v !== 0) out[k] = v;
    out.flows = this.flows.size;
    return out;
  }

  close(): void {
    this.flows.closeAll();
  }
}
