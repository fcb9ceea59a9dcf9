// A local TCP forward (-L tcp:// and tcppp://): slirpd listens on the host; each accepted
// connection becomes a connection into the guest, opened by the TCP engine's active open
// (TcpStack.connectToGuest). From then on the engine owns the accepted socket exactly as it
// owns the socket of a guest-initiated connection: zero copy both ways, no buffer here.
//
// The guest sees the client's address as the source (FwdShared.guestSource), or for tcppp the
// address the PROXY header names. The header is read with MSG_PEEK (edge-triggered, so a
// partial header does not spin the loop) and only its bytes are consumed, so what the client
// sent after it stays in the socket for the engine.
//
// --forward-splice (splice.ts): a connection to the guest's own address may instead be joined
// by splice(2) to a socket made inside the guest netns, bypassing the tap and the engine. auto
// does so only when the guest would see the gateway anyway (a loopback or other-family
// client), always for every client, never not at all; tcppp forwards never splice (their
// point is the client address). Without a way into the netns (rootless) nothing is spliced.

import { EAGAIN, ECONNABORTED, EINTR, errnoName } from "../../ffi/errno.ts";
import { EPOLLET } from "../../ffi/poller.ts";
import { EPOLLIN } from "../base/names.ts";
import { type SockAddr, TcpListener, type TcpSocket } from "../../ffi/socket.ts";
import { formatIp } from "../wire/bytes.ts";
import { Timer } from "../flow/timers.ts";
import type { Conn } from "../tcp/conn.ts";
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
import { SplicedConn } from "./splice.ts";
import {
  parseProxyHeader,
  PP_BAD,
  PP_MAX,
  PP_MORE,
  ppError,
  type ProxyHeader,
} from "./proxyproto.ts";
import type { ForwardSpec } from "./spec.ts";

/** Connections accepted per readiness event (then other sockets get their turn). */
const ACCEPT_BUDGET = 64;
/** How long a tcppp client may take to send its PROXY header. */
const PP_TIMEOUT_MS = 10_000;
/** After an accept() failure such as EMFILE, the listener rests this long (no busy loop). */
const ACCEPT_PAUSE_MS = 100;

/** A tcppp connection whose PROXY header is not complete yet. */
interface Pending {
  sock: TcpSocket;
  peer: SockAddr | null;
  timer: Timer;
}

/** Shared scratch for reading PROXY headers (one at a time, synchronously). */
const ppBuf = new Uint8Array(PP_MAX);

export class LocalTcp implements Forward {
  readonly entry: ForwardEntry;
  #listener: TcpListener | null = null;
  #port = 0;
  /** "CLIENT" label part of this listener: its own address. */
  #local = "";
  /** Live connections and their log label ("" with --quiet). */
  readonly #conns = new Map<Conn, string>();
  readonly #pending = new Set<Pending>();
  /** Live spliced connections and their log label. */
  readonly #spliced = new Map<SplicedConn, string>();
  readonly #onSpliceDone = (c: SplicedConn, why: string) => this.#spliceDone(c, why);
  /** Re-arms the listener after an accept() failure paused it. */
  readonly #resume = new Timer(() => this.#resumeAccept());
  readonly #onClosed = (c: Conn) => this.#closed(c);

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
  }

  /** Listens (0.0.0.0: dual-stack when it can); throws ForwardError. */
  open(): void {
    const plan = listenPlan(this.bind, this.spec.family);
    let l: TcpListener | null = null;
    for (let i = 0; i < plan.length && l === null; i++) {
      const at = plan[i];
      try {
        l = TcpListener.listen(at.family, at.addr, this.spec.bindPort, 1024, {
          v6only: at.v6only,
        });
      } catch (e) {
        if (i + 1 < plan.length && retryable(e)) continue;
        throw new ForwardError(
          `Failed to listen on tcp://${addrPort(this.bind, this.spec.bindPort)}: ${reason(e)}`,
        );
      }
    }
    const listener = l as TcpListener;
    this.#listener = listener;
    this.#port = listener.localPort();
    this.entry.hostPort = this.#port;
    if (this.entry.guestPort === 0) this.entry.guestPort = this.#port;
    const la = listener.localAddress();
    this.#local = la ? addrPort(la.addr, la.port) : addrPort(this.bind, this.#port);
    this.sh.o.poller.add(listener, EPOLLIN, () => this.#accept());
    const pp = this.spec.proxy ? "PP " : "";
    this.sh.log(`[+] local-fwd Local ${pp}listen tcp://${this.#local}`);
  }

  #accept(): void {
    const l = this.#listener;
    for (let i = 0; i < ACCEPT_BUDGET && l !== null; i++) {
      const s = l.accept();
      if (s === null) {
        const e = l.lastError;
        if (e === ECONNABORTED || e === EINTR) continue;
        if (e !== EAGAIN) {
          // EMFILE, ENFILE, ENOBUFS: the connection stays queued and the listener readable, so
          // stop watching it for a moment instead of spinning.
          this.sh.log(`[!] tcp://${this.#local} local-fwd accept: ${errnoName(e)}`);
          this.sh.o.poller.modify(l, 0);
          this.sh.o.wheel.arm(this.#resume, ACCEPT_PAUSE_MS);
        }
        return;
      }
      const peer = s.remoteAddress();
      if (this.spec.proxy) this.#awaitHeader(s, peer);
      else this.#start(s, peer, null);
    }
  }

  /** Hands an accepted socket to the TCP engine: SYN to the guest. */
  #start(sock: TcpSocket, peer: SockAddr | null, pp: ProxyHeader | null): void {
    const sh = this.sh;
    const client = pp?.src?.addr ?? (peer ? unmap(peer.addr) : null);
    const target = this.target.current();
    const label = sh.o.quiet
      ? ""
      : `tcp://${peer ? addrPort(peer.addr, peer.port) : "?"}-${this.#local}`;
    const ppNote = pp ? "PP " : "";
    if (target === null) {
      sh.log(`[!] ${label}/${this.#targetLabel()} local-fwd ${ppNote}error: ${this.target.error}`);
      sock.abort();
      return;
    }
    const family = target.length === 4 ? 4 : 6;
    // Target port 0: the port the client connected to (or the one its PROXY header names).
    const guestPort = this.target.port || this.spec.targetPort || (pp?.dst?.port ?? this.#port);
    const src = sh.guestSource(family, client);
    if (pp === null && this.#splice(sock, label, src, target, guestPort)) return;
    const srcPort = sh.tcpPort(family, target, guestPort, src);
    const c = srcPort < 0
      ? null
      : sh.o.tcp.connectToGuest(sock, family, src, srcPort, target, guestPort);
    const guestSide = `${addrPort(src, srcPort)}-${addrPort(target, guestPort)}`;
    if (c === null) {
      sock.abort(); // (connectToGuest already closed it when it refused; abort is idempotent)
      sh.log(`[!] ${label}/${guestSide} local-fwd ${ppNote}error: no free connection slot`);
      return;
    }
    c.onHostClosed = this.#onClosed;
    const full = sh.o.quiet ? "" : `${label}/${guestSide} local-fwd ${ppNote}`;
    this.#conns.set(c, full);
    sh.log(`[+] ${full}conn`);
  }

  /** Starts a spliced connection when the forward's mode says so; false: use the engine. */
  #splice(
    sock: TcpSocket,
    label: string,
    src: Uint8Array,
    target: Uint8Array,
    guestPort: number,
  ): boolean {
    const o = this.sh.o;
    const mode = this.spec.splice ?? o.splice ?? "never";
    if (mode === "never" || this.spec.proxy || o.guestSocket === undefined) return false;
    if (!this.sh.isGuest(target)) return false;
    if (mode === "auto" && !this.sh.isGateway(src)) return false;
    let guest: TcpSocket;
    try {
      guest = o.guestSocket(target.length === 4 ? 4 : 6, target, guestPort);
    } catch (e) {
      this.sh.log(`[!] ${label} local-fwd splice: ${reason(e)}; through the tap instead`);
      return false;
    }
    let full = "";
    if (!o.quiet) {
      const la = guest.localAddress();
      const from = la ? addrPort(la.addr, la.port) : "?";
      full = `${label}/${from}-${addrPort(target, guestPort)} local-fwd splice `;
    }
    const c = new SplicedConn(sock, guest, {
      poller: o.poller,
      wheel: o.wheel,
      connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
      done: this.#onSpliceDone,
    });
    this.#spliced.set(c, full);
    this.sh.log(`[+] ${full}conn`);
    c.start();
    return true;
  }

  #spliceDone(c: SplicedConn, why: string): void {
    const full = this.#spliced.get(c);
    if (full === undefined) return;
    this.#spliced.delete(c);
    this.sh.bytes.localToGuest += c.bytesUp;
    this.sh.bytes.localFromGuest += c.bytesDown;
    const note = why ? ` (${why})` : "";
    this.sh.log(`[-] ${full}done: l=${c.bytesUp} r=${c.bytesDown}${note}`);
  }

  #closed(c: Conn): void {
    const full = this.#conns.get(c);
    if (full === undefined) return;
    this.#conns.delete(c);
    this.sh.bytes.localToGuest += c.bytesFromHost;
    this.sh.bytes.localFromGuest += c.bytesFromGuest;
    const note = c.doneNote ? ` (${c.doneNote})` : "";
    this.sh.log(`[-] ${full}done: l=${c.bytesFromHost} r=${c.bytesFromGuest}${note}`);
  }

  #targetLabel(): string {
    return addrPort(this.target.text, this.spec.targetPort || this.#port);
  }

  // --- tcppp: the PROXY header first ---

  #awaitHeader(sock: TcpSocket, peer: SockAddr | null): void {
    const p: Pending = {
      sock,
      peer,
      timer: new Timer(() => this.#headerFailed(p, "timeout")),
    };
    this.#pending.add(p);
    this.sh.o.wheel.arm(p.timer, PP_TIMEOUT_MS);
    // Edge-triggered: peeking leaves the bytes queued, so a level-triggered EPOLLIN would
    // report the same partial header again and again.
    this.sh.o.poller.add(sock, EPOLLIN | EPOLLET, () => this.#readHeader(p));
    this.#readHeader(p); // it may be there already
  }

  #readHeader(p: Pending): void {
    if (!this.#pending.has(p)) return;
    const n = p.sock.peek(ppBuf, 0, PP_MAX);
    if (n === -EAGAIN) return;
    if (n <= 0) {
      this.#headerFailed(p, n === 0 ? "EOF before the header" : errnoName(-n));
      return;
    }
    p.sock.setPeekOffset(0); // the next look starts at the beginning again
    const h = parseProxyHeader(ppBuf, n);
    if (h === PP_MORE) return;
    if (h === PP_BAD) {
      this.#headerFailed(p, ppError.reason);
      return;
    }
    const hdr = h as ProxyHeader;
    this.#dropPending(p);
    const d = p.sock.discard(hdr.len); // exactly the header: the rest is the guest's
    if (d !== hdr.len) {
      p.sock.abort();
      return;
    }
    this.#start(p.sock, p.peer, hdr);
  }

  #dropPending(p: Pending): void {
    this.#pending.delete(p);
    this.sh.o.wheel.cancel(p.timer);
    this.sh.o.poller.remove(p.sock);
  }

  #headerFailed(p: Pending, why: string): void {
    if (!this.#pending.has(p)) return;
    this.#dropPending(p);
    const peer = p.peer ? addrPort(p.peer.addr, p.peer.port) : "?";
    this.sh.log(
      `[!] tcp://${peer}-${this.#local}/${this.#targetLabel()} local-fwd PP error: ${why}`,
    );
    p.sock.abort();
  }

  #resumeAccept(): void {
    const l = this.#listener;
    if (l === null) return;
    this.sh.o.poller.modify(l, EPOLLIN);
    this.#accept();
  }

  close(): void {
    this.sh.o.wheel.cancel(this.#resume);
    const l = this.#listener;
    if (l !== null) {
      this.sh.o.poller.remove(l);
      l.close();
      this.#listener = null;
    }
    for (const p of [...this.#pending]) {
      this.#dropPending(p);
      p.sock.abort();
    }
    // RST both ways: the forward is gone, so are its connections.
    for (const c of [...this.#conns.keys()]) this.sh.o.tcp.reset(c, "forward removed");
    for (const c of [...this.#spliced.keys()]) c.abort("forward removed");
  }
}
