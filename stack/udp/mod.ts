// The UDP transport: local services first, then routing with connection tracking.
//
// Local services (DNS on 10.0.2.3:53, DHCP on :67, ...) take precedence over routing and are
// not subject to the policy:
//
//   const off = udp.addLocalService(4, plan.dns4, 53, (m, payloadOff, payloadLen) => {
//     // m: the datagram's PacketMeta, valid only during the call. m.b holds the packet:
//     //   guest address at m.b[m.srcOff], ours at m.b[m.dstOff] (4 or 16 bytes, m.family),
//     //   guest port u16(m.b, m.l4Off), our port u16(m.b, m.l4Off + 2),
//     //   the payload at m.b[payloadOff, payloadOff + payloadLen) (checksum already verified).
//     // Build the answer in place and send it (zero copy):
//     const o = udp.payloadOffset(4); tx.buf[o ...] = ...;
//     udp.reply(m, tx.buf, o, answerLen);   // swaps addresses and ports of m
//   });
//   udp.addLocalService(4, null, 67, handler);   // null: any destination (DHCP broadcasts)
//   off();                                       // unregisters
//
//   // Later (an answer that waited for an upstream server) or to another destination:
//   udp.sendTo(4, plan.dns4, 53, guestAddr, guestPort, payload, off, len);  // copies unless
//                                               // payload is tx.buf at payloadOffset(family)
//
// A service for a specific address wins over one for any address; (family, address, port)
// must be unique. sendTo/reply fragment a datagram larger than the guest MTU, return false when
// the tap refused a frame, and do not throw. DNS and DHCP (stack/services/) register here.
//
// Routing: every other datagram belongs to a flow keyed by (family, guest addr:port, dst
// addr:port), looked up by hashing the tuple in place (stack/flow/datagram.ts). A new flow asks
// outbound.decide(17, family, dst, port) once (stack/flow/outbound.ts: redirects, then the
// firewall): refused → dropped; routed → one non-blocking host socket, bound to the
// --outbound-addr of its family when set, connect()ed to the destination; redirected (a -R
// forward, the slirp4netns host loopback) → connect()ed to the redirect's target instead,
// while the guest still talks to, and hears from, the address and port it used; unreachable →
// ICMP network unreachable to the guest. The socket is registered with the poller
// (udp/host.ts). Guest datagrams are sent straight out of the tap buffer (reassembled ones out
// of the reassembly slab); boundaries are kept as the kernel keeps them. Flows expire after
// `timeoutMs` idle; the table holds `maxFlows`, the one idle longest is evicted for a new one.

import { EAGAIN, EINVAL, EIO, ENETUNREACH, ENOPROTOOPT, errnoName } from "../../ffi/errno.ts";
import { SEG_MAX, UdpBatch } from "./batch.ts";
import { UdpSocket } from "../../ffi/dgram.ts";
import { RecvBatch } from "../../ffi/mmsg.ts";
import { bytesEqual, copyBytes, u16 } from "../wire/bytes.ts";
import { emitUdp, UdpView } from "../wire/udp.ts";
import type { Counters } from "../base/counters.ts";
import type { Fragmenter } from "../ip/frag.ts";
import type { Transport } from "../ip/ip.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { TimerWheel } from "../flow/timers.ts";
import type { Tx } from "../link/tx.ts";
import { FlowVerdict, type Outbound } from "../flow/outbound.ts";
import { type CloseReason, FlowTable } from "../flow/datagram.ts";
import {
  flowLabel,
  labelHost,
  MAX_PAYLOAD4,
  MAX_PAYLOAD6,
  onHostEvents,
  relayErrors,
  RX_BATCH,
  sendUnreachable,
  UdpFlow,
  unreachCode,
} from "./host.ts";
import { addrPort, EPOLLERR, EPOLLIN, type PollerLike } from "../base/names.ts";

/** A local service's handler; see the file comment. */
export type UdpServiceHandler = (m: PacketMeta, payloadOff: number, payloadLen: number) => void;

export interface UdpConfig {
  /** Decides new flows (redirects, then the firewall) and gives the --outbound-addr. */
  outbound: Outbound;
  log(line: string): void;
  quiet: boolean;
  /** Idle time after which a flow and its socket go (default 120 s). */
  timeoutMs?: number;
  /** Most flows at once (default 4096). */
  maxFlows?: number;
  /** The gather buffer (batch.ts), ideally in the tap read buffer's ArrayBuffer. */
  batchBuf?: Uint8Array;
}

/** Counters: plain numbers, cheap to bump on the hot path. */
export class UdpStats {
  fromGuest = 0;
  bytesFromGuest = 0;
  toGuest = 0;
  bytesToGuest = 0;
  local = 0;
  flowsOpened = 0;
  flowsClosed = 0;
  policyRefused = 0;
  /** Flows to a redirect's target (a -R forward, the host loopback). */
  redirected = 0;
  /** Flows answered with ICMP network unreachable (--disable-host-loopback). */
  unreachable = 0;
  /** Multicast, broadcast, IPv6 link-local destinations and port 0: not a trackable flow. */
  notRoutable = 0;
  dropMalformed = 0;
  dropBadChecksum = 0;
  /** Host socket could not be made (EMFILE, ...) or connect() failed. */
  socketErrors = 0;
  /** send() refused: socket buffer full (EAGAIN) or another error. */
  sendDrops = 0;
  /** sendmsg calls with UDP_SEGMENT (several guest datagrams each). */
  segmentedSends = 0;
  /** USO frames to the guest (several host datagrams each). */
  segmentedToGuest = 0;
  /** Host datagrams cut by recvmmsg (its slots are larger than any datagram: stays 0). */
  truncated = 0;
  sendErrors = 0;
  hostErrors = 0;
  icmpRelayed = 0;
}

interface Service {
  family: 4 | 6;
  addr: Uint8Array | null;
  port: number;
  handler: UdpServiceHandler;
}

export class UdpStack implements Transport {
  readonly stats = new UdpStats();
  readonly flows: FlowTable<UdpFlow>;
  readonly #view = new UdpView();
  readonly #batch: UdpBatch;
  /** recvmmsg's headers for host → guest (udp/host.ts). */
  readonly rx = new RecvBatch(RX_BATCH);
  /**
   * Local services by family * 65536 + port (a number key: no allocation per lookup), each a
   * short list with the specific addresses first and the any-address one last. -L udp
   * registers one per client, so the lookup must not grow with their number.
   */
  readonly #services = new Map<number, Service[]>();
  /** Why flows closed by closeOwnedBy end (for their log line); null otherwise. */
  #closeNote: string | null = null;
  /** Scratch addresses for reply(): m's addresses copied before tx.buf is written. */
  readonly #a4 = new Uint8Array(4);
  readonly #b4 = new Uint8Array(4);
  readonly #a6 = new Uint8Array(16);
  readonly #b6 = new Uint8Array(16);
  readonly #touch = (f: UdpFlow) => this.flows.touch(f);

  constructor(
    readonly tx: Tx,
    readonly frag: Fragmenter,
    readonly poller: PollerLike,
    readonly wheel: TimerWheel,
    readonly counters: Counters,
    readonly cfg: UdpConfig,
  ) {
    this.#batch = new UdpBatch(cfg.batchBuf);
    this.flows = new FlowTable<UdpFlow>(
      wheel,
      cfg.maxFlows ?? 4096,
      cfg.timeoutMs ?? 120_000,
      (f, why) => this.#closed(f, why),
    );
  }

  /** For udp/host.ts. */
  touch(f: UdpFlow): void {
    this.flows.touch(f);
  }

  /** A udprpc redirect's flow delivered its answer to the guest: it ends. */
  replied(f: UdpFlow): void {
    this.flows.close(f, "replied");
  }

  /** Registers a local service (see the file comment); returns its unregister function. */
  addLocalService(
    family: 4 | 6,
    addr: Uint8Array | null,
    port: number,
    handler: UdpServiceHandler,
  ): () => void {
    const k = family * 65536 + port;
    const dup = this.#services.get(k)?.some((s) =>
      s.addr === null ? addr === null : addr !== null && addr.length === s.addr.length &&
        bytesEqual(s.addr, 0, addr, 0, addr.length)
    );
    if (dup) throw new Error(`udp: a local service on ${family}/${port} is registered already`);
    const s: Service = { family, addr: addr === null ? null : addr.slice(), port, handler };
    let list = this.#services.get(k);
    if (list === undefined) this.#services.set(k, list = []);
    if (addr === null) list.push(s); // the any-address one is the last resort
    else list.unshift(s);
    return () => {
      const l = this.#services.get(k);
      const i = l === undefined ? -1 : l.indexOf(s);
      if (l === undefined || i < 0) return;
      l.splice(i, 1);
      if (l.length === 0) this.#services.delete(k);
    };
  }

  /** Where in tx.buf to build a UDP payload for sendTo/reply without a copy. */
  payloadOffset(family: 4 | 6): number {
    return this.tx.l4Offset(family) + 8;
  }

  /**
   * Sends payload[off, off+len) to the guest from src:srcPort to dst:dstPort (addresses of 4 or
   * 16 bytes). false when too large or the tap refused a frame.
   */
  sendTo(
    family: 4 | 6,
    src: Uint8Array,
    srcPort: number,
    dst: Uint8Array,
    dstPort: number,
    payload: Uint8Array,
    off = 0,
    len = payload.length - off,
  ): boolean {
    const tx = this.tx;
    if (len < 0 || len > (family === 4 ? MAX_PAYLOAD4 : MAX_PAYLOAD6)) return false;
    const l4 = tx.l4Offset(family);
    if (payload !== tx.buf || off !== l4 + 8) copyBytes(tx.buf, l4 + 8, payload, off, len);
    emitUdp(tx.buf, l4, srcPort, dstPort, 8 + len);
    return this.frag.send(family, src, dst, 17, 8 + len);
  }

  /** Answers the datagram `m` (a local service's): from its destination to its source. */
  reply(m: PacketMeta, payload: Uint8Array, off = 0, len = payload.length - off): boolean {
    const v4 = m.family === 4;
    const from = v4 ? this.#a4 : this.#a6;
    const to = v4 ? this.#b4 : this.#b6;
    copyBytes(from, 0, m.b, m.dstOff, from.length);
    copyBytes(to, 0, m.b, m.srcOff, to.length);
    const b = m.b, o = m.l4Off;
    return this.sendTo(m.family, from, u16(b, o + 2), to, u16(b, o), payload, off, len);
  }

  /** One guest UDP datagram (the IP layer's Transport interface). */
  input(m: PacketMeta): void {
    const v = this.#view;
    const b = m.b;
    if (!v.parse(b, m.l4Off, m.l4Len)) {
      this.stats.dropMalformed++;
      this.counters.dropMalformedL4++;
      return;
    }
    const alen = m.family === 4 ? 4 : 16;
    if (!m.csumTrusted && !v.verifyChecksum(alen, m.srcOff, m.dstOff)) {
      this.stats.dropBadChecksum++;
      this.counters.dropBadL4Checksum++;
      return;
    }
    const srcPort = v.srcPort, dstPort = v.dstPort;
    const po = m.l4Off + 8, plen = v.length - 8;
    if (this.#services.size > 0) {
      const s = this.#service(m, dstPort);
      if (s !== null) {
        this.stats.local++;
        s.handler(m, po, plen);
        return;
      }
    }
    let f = this.flows.lookup(m.family, b, m.srcOff, srcPort, m.dstOff, dstPort);
    if (f === null) {
      f = this.#open(m, srcPort, dstPort);
      if (f === null) return;
    }
    this.#send(f, b, po, plen);
  }

  #service(m: PacketMeta, port: number): Service | null {
    const list = this.#services.get(m.family * 65536 + port);
    if (list === undefined) return null;
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (s.addr === null || bytesEqual(s.addr, 0, m.b, m.dstOff, s.addr.length)) return s;
    }
    return null;
  }

  /** Guest → host: gathered for one UDP_SEGMENT send (batch.ts), or sent at once. */
  #send(f: UdpFlow, b: Uint8Array, off: number, len: number): void {
    const q = this.#batch;
    if (len === 0 || len > SEG_MAX || f.noSegment) {
      if (q.count > 0) this.flush();
      this.#sendNow(f, b, off, len);
      return;
    }
    if (!q.fits(f, len)) this.flush();
    if (q.count === 0) {
      q.flow = f;
      q.seg = len;
    }
    copyBytes(q.buf, q.len, b, off, len);
    q.len += len;
    q.count++;
    if (len < q.seg) this.flush(); // only the last segment may be shorter
  }

  /** Sends the gathered datagrams (end of a tap batch, or before one that cannot join). */
  flush(): void {
    const q = this.#batch;
    const f = q.flow;
    const count = q.count, len = q.len, seg = q.seg;
    if (count === 0 || f === null) return;
    q.reset();
    if (count === 1) {
      this.#sendNow(f, q.buf, 0, len);
      return;
    }
    const s = f.sock;
    if (s === null) return;
    const n = s.sendSegmented(q.buf, 0, len, seg);
    if (n >= 0) {
      f.pktsOut += count;
      f.bytesOut += len;
      this.stats.fromGuest += count;
      this.stats.bytesFromGuest += len;
      this.stats.segmentedSends++;
      this.flows.touch(f);
      return;
    }
    if (n === -EAGAIN) {
      this.stats.sendDrops += count;
      return;
    }
    // A pending ICMP error, or a path or kernel that cannot take UDP_SEGMENT (EINVAL, EIO):
    // one by one, which relays the error or fragments as a plain send does.
    if (n === -EINVAL || n === -EIO || n === -ENOPROTOOPT) f.noSegment = true;
    for (let o = 0; o < len && f.sock !== null; o += seg) {
      this.#sendNow(f, q.buf, o, len - o < seg ? len - o : seg);
    }
  }

  /** Guest → host, one datagram, straight from the buffer it is in. */
  #sendNow(f: UdpFlow, b: Uint8Array, off: number, len: number): void {
    const s = f.sock;
    if (s === null) return;
    let n = s.send(b, off, len);
    if (n < 0 && n !== -EAGAIN) {
      // An ICMP error pending on the socket fails the next send once (sk_err): relay it
      // and send again.
      relayErrors(this, f);
      if (f.sock === null) return;
      n = s.send(b, off, len);
    }
    if (n < 0) {
      if (n === -EAGAIN) this.stats.sendDrops++;
      else {
        this.stats.sendErrors++;
        const code = unreachCode(f.family, -n);
        if (code >= 0) sendUnreachable(this, f, code, 0);
      }
      return;
    }
    f.pktsOut++;
    f.bytesOut += len;
    this.stats.fromGuest++;
    this.stats.bytesFromGuest += len;
    this.flows.touch(f);
  }

  /** A new flow: outbound decision, host socket, poller. null when refused or impossible. */
  #open(m: PacketMeta, srcPort: number, dstPort: number): UdpFlow | null {
    const b = m.b;
    const family = m.family;
    const alen = family === 4 ? 4 : 16;
    const d = m.dstOff;
    if (!this.cfg.outbound.routable(family, b, d) || dstPort === 0) {
      this.stats.notRoutable++;
      this.counters.dropUnhandled++;
      return null;
    }
    const dst = b.slice(d, d + alen);
    const out = this.cfg.outbound;
    const verdict = out.decide(17, family, dst, dstPort);
    if (verdict === FlowVerdict.Refused || verdict === FlowVerdict.Dropped) {
      this.stats.policyRefused++;
      this.counters.dropPolicy++;
      return null;
    }
    const f = new UdpFlow(family, b.slice(m.srcOff, m.srcOff + alen), srcPort, dst, dstPort);
    if (verdict === FlowVerdict.Unreachable) {
      this.stats.unreachable++;
      sendUnreachable(this, f, unreachCode(family, ENETUNREACH), 0);
      return null;
    }
    // Where the host socket goes: the redirect's target (copied: `out.target` is reused) or
    // the destination itself, from the --outbound-addr when one is set.
    let toFamily = family, toPort = dstPort;
    let toAddr: Uint8Array = dst;
    let bindAddr: Uint8Array | null = null;
    if (verdict === FlowVerdict.Redirected && out.target !== null) {
      const t = out.target;
      f.redirect = {
        family: t.family,
        addr: t.addr.slice(),
        port: t.port,
        owner: t.owner,
        rpc: t.rpc,
      };
      toFamily = t.family;
      toAddr = f.redirect.addr;
      toPort = t.port;
      if (t.bindOutbound) bindAddr = out.bindFor(t.family);
    } else bindAddr = out.bindFor(family);
    let sock: UdpSocket;
    this.flows.makeRoom();
    try {
      // IPv6 only (IPV6_V6ONLY): a v4-mapped destination never becomes IPv4 behind the policy.
      sock = bindAddr === null
        ? UdpSocket.open(toFamily, { v6only: true })
        : UdpSocket.open(toFamily, { bindAddr, v6only: true });
      sock.setRecvErr(true);
    } catch (e) {
      this.stats.socketErrors++;
      this.#log(`[!] ${label(f)} ${kind(f)} error: ${(e as Error).message}`);
      return null;
    }
    const err = sock.connect(toAddr, toPort);
    if (err < 0) {
      // No route, typically: tell the guest as a router would.
      sock.close();
      this.stats.socketErrors++;
      f.sock = null;
      this.#log(`[!] ${label(f)} ${kind(f)} error: ${errnoName(-err)}`);
      const code = unreachCode(family, -err);
      if (code >= 0) sendUnreachable(this, f, code, 0);
      return null;
    }
    if (f.redirect !== null) this.stats.redirected++;
    f.sock = sock;
    f.onEvents = (ev: number) => onHostEvents(this, f, ev);
    this.poller.add(sock, EPOLLIN | EPOLLERR, f.onEvents);
    this.flows.add(f);
    this.stats.flowsOpened++;
    if (!this.cfg.quiet) {
      labelHost(f);
      this.#log(`[+] ${label(f)} ${kind(f)} new`);
    }
    return f;
  }

  #closed(f: UdpFlow, why: CloseReason): void {
    if (this.#batch.flow === f) this.flush(); // what the guest sent before goes first
    const s = f.sock;
    if (s !== null) {
      this.poller.remove(s);
      s.close();
      f.sock = null;
    }
    f.onEvents = null;
    this.stats.flowsClosed++;
    if (!this.cfg.quiet) {
      const note = this.#closeNote ?? why;
      this.#log(`[-] ${label(f)} ${kind(f)} done: l=${f.bytesOut} r=${f.bytesIn} (${note})`);
    }
  }

  #log(line: string): void {
    if (!this.cfg.quiet) this.cfg.log(line);
  }

  /** A plain snapshot of the counters plus gauges (for logs and tests). */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.stats)) if (v !== 0) out[k] = v;
    out.flows = this.flows.size;
    if (this.flows.evicted) out.evicted = this.flows.evicted;
    if (this.flows.expired) out.expired = this.flows.expired;
    return out;
  }

  /** Closes the flows a remote forward redirected (it is being removed). */
  closeOwnedBy(owner: object, note: string): void {
    this.#closeNote = note;
    try {
      for (const f of this.flows.all()) {
        if (f.redirect !== null && f.redirect.owner === owner) this.flows.close(f, "shutdown");
      }
    } finally {
      this.#closeNote = null;
    }
  }

  /** Closes every flow and its socket (shutdown). */
  close(): void {
    this.flows.closeAll();
  }
}

/**
 * slirpnetstack's log form, "udp://GUEST:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT", and for a remote
 * forward's flow "udp://GUEST:PORT-BIND:PORT/HOSTLOCAL:PORT-HOSTREMOTE:PORT".
 */
function label(f: UdpFlow): string {
  const r = f.redirect;
  if (r === null || r.owner === undefined) return flowLabel(f);
  const h = f.hostLabel || addrPort(r.addr, r.port);
  return `udp://${addrPort(f.guestAddr, f.guestPort)}-${addrPort(f.remoteAddr, f.remotePort)}/${h}`;
}

/** "Routing conn", or "remote-fwd conn" for a remote forward's flow (slirpnetstack's). */
function kind(f: UdpFlow): string {
  return f.redirect === null || f.redirect.owner === undefined ? "Routing conn" : "remote-fwd conn";
}
