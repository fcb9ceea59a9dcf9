// A local UDP forward (-L udp://): one host socket listens; each client (address:port) gets a
// flow toward the guest with its own source port, so replies find their way back:
//
//   client → slirpd: recvfrom() straight into the tap buffer at the UDP payload offset, the
//     flow looked up by the client's address in place (no key object), then udp.sendTo()
//     builds the headers in front (fragmenting above the MTU): one datagram stays one;
//   guest → client: the flow registers a local UDP service at (source address, port) as the
//     guest sees it, and its handler sendto()s the payload to the client from the tap buffer.
//
// Flows end after --udp-timeout idle (FlowTable: one timer per flow, LRU eviction when full).
//
// slirpnetstack's two variants (fwd.go, proxy.go, kacon.go):
//   udprpc://  the flow ends right after the guest's first reply reached the client (one
//              request, one answer; the next datagram of that client opens a new flow);
//   udpspp://  Cloudflare's Simple Proxy Protocol (spp.ts): a flow's first datagram must carry
//              a valid 38-byte header; its client address becomes the source the guest sees
//              (and its proxy port the target port when that is 0), the header is kept; later
//              datagrams lose their first 38 bytes unchecked (shorter ones are dropped); every
//              reply to the client gets the kept header in front, unchanged.

import { EAGAIN } from "../../ffi/errno.ts";
import { EPOLLIN } from "../base/names.ts";
import { UdpSocket } from "../../ffi/socket.ts";
import { copyBytes, formatIp } from "../wire/bytes.ts";
import { type CloseReason, Flow, FlowTable } from "../flow/datagram.ts";
import { MAX_PAYLOAD4, MAX_PAYLOAD6 } from "../udp/host.ts";
import type { PacketMeta } from "../ip/meta.ts";
import type { HostAddr } from "./addr.ts";
import {
  addrPort,
  type Forward,
  type ForwardEntry,
  ForwardError,
  type FwdShared,
  listenPlan,
  reason,
  retryable,
  unmap,
} from "./common.ts";
import type { ForwardSpec } from "./spec.ts";
import { SPP_HEADER_LEN, SppFlow, SppView } from "./spp.ts";

/** Datagrams read per readiness event. */
const RECV_BUDGET = 64;
/** Most clients per forward at once (the one idle longest is evicted). */
const MAX_CLIENTS = 1024;

/**
 * One client. The table key is the client's address as the listening socket reports it
 * (`guestAddr`/`guestPort` in Flow's terms, 4 or 16 bytes) and a zero remote part.
 */
class ClientFlow extends Flow {
  /** The guest side: family, source (as the guest sees it), the target in the guest. */
  gf: 4 | 6 = 4;
  src: Uint8Array = new Uint8Array(0);
  srcPort = 0;
  target: Uint8Array = new Uint8Array(0);
  targetPort = 0;
  unregister: (() => void) | null = null;
  label = "";
  /** udpspp: the first datagram's header, prefixed to every reply. */
  spp: SppFlow | null = null;
}

/** udpspp: the reply being built (header + payload); one per process, used synchronously. */
let sppOut: Uint8Array | null = null;

export class LocalUdp implements Forward {
  readonly entry: ForwardEntry;
  #sock: UdpSocket | null = null;
  #port = 0;
  #local = "";
  readonly #flows: FlowTable<ClientFlow>;
  /** Lookup key: the client address at 0, zeros at 16 (the "remote" half of the key). */
  readonly #key = new Uint8Array(32);
  readonly #sppView = new SppView();

  constructor(
    private readonly sh: FwdShared,
    private readonly spec: ForwardSpec,
    private readonly bind: Uint8Array,
    private readonly target: HostAddr,
    id: number,
  ) {
    this.entry = {
      id,
      dir: "local",
      network: spec.network,
      hostAddr: formatIp(bind),
      hostPort: spec.bindPort,
      guestAddr: target.text,
      guestPort: spec.targetPort,
    };
    this.#flows = new FlowTable<ClientFlow>(
      sh.o.wheel,
      MAX_CLIENTS,
      sh.o.udpTimeoutMs,
      (f, why) => this.#closed(f, why),
    );
  }

  open(): void {
    const plan = listenPlan(this.bind, this.spec.family);
    let s: UdpSocket | null = null;
    for (let i = 0; i < plan.length && s === null; i++) {
      const at = plan[i];
      try {
        s = UdpSocket.open(at.family, {
          bindAddr: at.addr,
          bindPort: this.spec.bindPort,
          v6only: at.v6only,
        });
      } catch (e) {
        if (i + 1 < plan.length && retryable(e)) continue;
        throw new ForwardError(
          `Failed to listen on udp://${addrPort(this.bind, this.spec.bindPort)}: ${reason(e)}`,
        );
      }
    }
    const sock = s as UdpSocket;
    this.#sock = sock;
    this.#port = sock.localPort();
    this.entry.hostPort = this.#port;
    if (this.entry.guestPort === 0) this.entry.guestPort = this.#port;
    const la = sock.localAddress();
    this.#local = la ? addrPort(la.addr, la.port) : addrPort(this.bind, this.#port);
    this.sh.o.poller.add(sock, EPOLLIN, () => this.#recv());
    const pp = this.spec.proxy ? "PP " : "";
    this.sh.log(`[+] local-fwd Local ${pp}listen udp://${this.#local}`);
  }

  /** Client datagrams → guest, each straight from the tap buffer. */
  #recv(): void {
    const s = this.#sock;
    if (s === null) return;
    const udp = this.sh.o.udp;
    const buf = udp.tx.buf;
    for (let i = 0; i < RECV_BUDGET; i++) {
      const target = this.target.current();
      const gf = target === null || target.length === 4 ? 4 : 6;
      const po = udp.payloadOffset(gf);
      const n = s.recvFrom(buf, po, gf === 4 ? MAX_PAYLOAD4 : MAX_PAYLOAD6);
      if (n < 0) {
        if (n === -EAGAIN) return;
        continue; // an ICMP error for an earlier reply: nothing to do
      }
      if (target === null) continue; // the target name never resolved: drop
      const k = this.#key, from = s.fromAddr;
      const alen = s.fromLen;
      for (let j = 0; j < alen; j++) k[j] = from[j]; // (no subarray: no object per datagram)
      const kf = alen === 4 ? 4 : 6;
      let f = this.#flows.lookup(kf, k, 0, s.fromPort, 16, 0);
      if (f !== null && f.gf !== gf) {
        // The target's name now resolves to the other family: a new flow toward it (and the
        // payload was read where a header of the new family fits).
        this.#flows.close(f, "error");
        f = null;
      }
      let off = po, len = n;
      if (f === null) {
        let spp: SppFlow | null = null;
        if (this.spec.proxy) {
          spp = SppFlow.first(this.#sppView, buf, po, n);
          if (spp === null) {
            this.#sppError(s.fromAddr.slice(0, alen), s.fromPort, this.#sppView.reason);
            continue;
          }
        }
        f = this.#open(kf, s.fromAddr.slice(0, alen), s.fromPort, gf, target, spp);
        if (f === null) continue;
      }
      if (f.spp !== null) {
        // (the first datagram's header was checked above; later ones are stripped blindly)
        len = f.spp.inboundPayloadLen(n);
        if (len < 0) continue;
        off = po + SPP_HEADER_LEN;
      }
      if (udp.sendTo(f.gf, f.src, f.srcPort, f.target, f.targetPort, buf, off, len)) {
        f.pktsOut++;
        f.bytesOut += len;
      }
      this.#flows.touch(f);
    }
  }

  #open(
    kf: 4 | 6,
    client: Uint8Array,
    clientPort: number,
    gf: 4 | 6,
    target: Uint8Array,
    spp: SppFlow | null,
  ): ClientFlow | null {
    const sh = this.sh;
    const f = new ClientFlow(kf, client, clientPort, new Uint8Array(client.length), 0);
    f.gf = gf;
    f.spp = spp;
    // udpspp: the guest sees the client the header names (as a tcppp PROXY header does).
    const seen = spp === null ? unmap(client) : unmap(spp.header.slice(2, 18));
    f.src = sh.guestSource(gf, seen).slice();
    f.target = target;
    const sppPort = spp === null ? 0 : this.#sppView.proxyPort;
    f.targetPort = this.target.port || this.spec.targetPort || sppPort || this.#port;
    const svc = sh.udpService(gf, f.src, (m, off, len) => this.#reply(f, m, off, len));
    if (svc === null) {
      sh.log(`[!] udp://${addrPort(client, clientPort)}-${this.#local} local-fwd error: no port`);
      return null;
    }
    f.srcPort = svc.port;
    f.unregister = svc.off;
    this.#flows.add(f);
    if (!sh.o.quiet) {
      f.label = `udp://${addrPort(client, clientPort)}-${this.#local}/${
        addrPort(f.src, f.srcPort)
      }-${addrPort(target, f.targetPort)}`;
      sh.log(`[+] ${f.label} local-fwd ${spp === null ? "" : "PP "}conn`);
    }
    return f;
  }

  #sppError(client: Uint8Array, clientPort: number, why: string): void {
    const to = addrPort(this.target.text, this.spec.targetPort || this.#port);
    this.sh.log(
      `[!] udp://${addrPort(client, clientPort)}-${this.#local}/${to} local-fwd PP error: ${why}`,
    );
  }

  /** A guest datagram to the flow's source address and port: to the client. */
  #reply(f: ClientFlow, m: PacketMeta, off: number, len: number): void {
    const s = this.#sock;
    if (s === null || !f.open) return;
    let b = m.b, o = off, n = len;
    if (f.spp !== null) {
      const out = sppOut ??= new Uint8Array(SPP_HEADER_LEN + MAX_PAYLOAD6);
      if (len > out.length - SPP_HEADER_LEN) return;
      f.spp.prefixReply(out, 0);
      copyBytes(out, SPP_HEADER_LEN, m.b, off, len);
      b = out, o = 0, n = SPP_HEADER_LEN + len;
    }
    if (s.sendTo(b, o, n, f.guestAddr, f.guestPort) >= 0) {
      f.pktsIn++;
      f.bytesIn += len;
    }
    // udprpc: one answer ends the flow (slirpnetstack closes on the first write).
    if (this.spec.rpc) this.#flows.close(f, "replied");
    else this.#flows.touch(f);
  }

  #closed(f: ClientFlow, why: CloseReason): void {
    f.unregister?.();
    f.unregister = null;
    this.sh.bytes.localToGuest += f.bytesOut;
    this.sh.bytes.localFromGuest += f.bytesIn;
    if (f.label) {
      this.sh.log(`[-] ${f.label} local-fwd done: l=${f.bytesOut} r=${f.bytesIn} (${why})`);
    }
  }

  close(): void {
    this.#flows.closeAll();
    const s = this.#sock;
    if (s !== null) {
      this.sh.o.poller.remove(s);
      s.close();
      this.#sock = null;
    }
  }
}
