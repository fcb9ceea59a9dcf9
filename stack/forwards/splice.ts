// A spliced local TCP forward connection (--forward-splice): the accepted host socket and a
// socket made inside the guest's netns (its connect() goes over the guest's own loopback to
// the guest service), joined by splice(2) through one pipe per direction. The bytes never
// enter TypeScript and never cross the tap or the TCP engine: this is pasta's loopback splice
// path. The price is the source address: the guest sees the connection come from its own
// address, not from the client (or the gateway), which is why it is a per-forward choice.
//
// Driven by the one Poller, level-triggered, with the interest set recomputed after each pump:
//   - a direction reads its source (EPOLLIN) only while its pipe is not blocked on the writer:
//     a full pipe is backpressure; the writer's EPOLLOUT resumes it;
//   - EOF one way (splice returns 0) → shutdown(SHUT_WR) of the other socket once the pipe
//     has drained, so a half-close crosses intact and the other direction keeps flowing;
//   - both directions shut → both sockets closed (FIN already sent): done;
//   - an error or a reset on either side (EPOLLERR, a failing splice) → both aborted (RST);
//   - EPOLLHUP (both halves of a socket closed) cannot be masked: that socket leaves the
//     poller, and what is left is driven by the other socket's events.
// Per chunk: two splice calls and number updates, nothing allocated.

import { EAGAIN, errnoName } from "../../ffi/errno.ts";
import { Pipe, spliceMove } from "../../ffi/splice.ts";
import type { TcpSocket } from "../../ffi/socket.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, type PollerLike } from "../base/names.ts";
import { Timer, type TimerWheel } from "../flow/timers.ts";

/** Pipe capacity asked for (F_SETPIPE_SZ): fewer, larger splice calls per byte. */
const PIPE_SIZE = 1 << 20;
/** Read/write rounds per direction per event (then other sockets get their turn). */
const PUMP_ROUNDS = 16;
/**
 * A read smaller than this that went straight through ends the pump without one more read
 * (which would mostly say EAGAIN): the level-triggered EPOLLIN reports what comes next.
 */
const SMALL_READ = 64 * 1024;

/** Empty pipes kept from ended connections for the next ones (two per connection). */
const SPARE_PIPES = 32;
const spare: Pipe[] = [];

function pipe(): Pipe {
  return spare.pop() ?? new Pipe(PIPE_SIZE);
}

/** Back to the spares when empty (its bytes would leak into the next connection otherwise). */
function release(p: Pipe, empty: boolean): void {
  if (empty && spare.length < SPARE_PIPES) spare.push(p);
  else p.close();
}

/** One direction: `from` → pipe → `to`. */
class Half {
  /** Bytes in the pipe. */
  queued = 0;
  /** Bytes delivered to `to`. */
  moved = 0;
  /** `from` reached EOF. */
  eof = false;
  /** shutdown(SHUT_WR) of `to` done (EOF forwarded). */
  shut = false;
  /** The last write into `to` found no room: wait for its EPOLLOUT. */
  blocked = false;
  /** `from` is still in the poller (false after its EPOLLHUP: then read until EOF). */
  polled = true;

  constructor(readonly from: TcpSocket, readonly to: TcpSocket, readonly pipe: Pipe) {}

  /** Moves what it can; 0, or the errno that ends the connection. */
  pump(): number {
    const from = this.from.fd, to = this.to.fd, pw = this.pipe.w, pr = this.pipe.r;
    // A `from` out of the poller (hung up) reports nothing more: read it to EOF now (bounded:
    // nothing new can arrive on it), unless the writer blocks.
    for (let i = 0; i < PUMP_ROUNDS || !this.polled; i++) {
      let progress = false;
      let n = 0;
      if (!this.eof) {
        n = spliceMove(from, pw);
        if (n > 0) {
          this.queued += n;
          progress = true;
        } else if (n === 0) this.eof = true;
        else if (n !== -EAGAIN) return -n;
      }
      if (this.queued > 0) {
        const m = spliceMove(pr, to);
        if (m > 0) {
          this.queued -= m;
          this.moved += m;
          this.blocked = false;
          progress = true;
        } else if (m === -EAGAIN) {
          this.blocked = true;
          break;
        } else return m === 0 ? 32 /* EPIPE */ : -m;
      }
      if (!progress || (n > 0 && n < SMALL_READ && this.queued === 0 && this.polled)) break;
    }
    if (this.eof && this.queued === 0 && !this.shut) {
      this.shut = true;
      const r = this.to.shutdownWrite();
      if (r < 0) return -r;
    }
    return 0;
  }

  /** Wants EPOLLIN on `from`. */
  get wantsIn(): boolean {
    return !this.eof && !this.blocked;
  }
}

export interface SpliceHooks {
  poller: PollerLike;
  wheel: TimerWheel;
  /** How long the guest service may take to accept the connection (--connect-timeout). */
  connectTimeoutMs: number;
  /** Called once when the connection ends: why ("" for a clean close). */
  done: (c: SplicedConn, why: string) => void;
}

/** One spliced connection: client (accepted on the host) ↔ guest (made in the guest netns). */
export class SplicedConn {
  readonly #h: SpliceHooks;
  readonly client: TcpSocket;
  readonly guest: TcpSocket;
  #up: Half | null = null; // client → guest
  #down: Half | null = null; // guest → client
  #connecting = true;
  #ended = false;
  /** Registered in the poller, and the mask last set. */
  #cReg = false;
  #gReg = false;
  #cMask = -1;
  #gMask = -1;
  readonly #timer = new Timer(() => this.#end("connect timeout", true));

  /** `guest` is connecting (non-blocking) to the guest service; the client waits meanwhile. */
  constructor(client: TcpSocket, guest: TcpSocket, hooks: SpliceHooks) {
    this.client = client;
    this.guest = guest;
    this.#h = hooks;
  }

  /** Waits for the guest's connect (call once the owner holds it: done() may come at once). */
  start(): void {
    const pe = this.guest.pendingError;
    if (pe !== 0) {
      this.#end(`connect: ${errnoName(pe)}`, true); // refused at once on the guest's loopback
      return;
    }
    this.#h.poller.add(this.guest, EPOLLOUT, (ev) => this.#onGuest(ev));
    this.#gReg = true;
    this.#gMask = EPOLLOUT;
    this.#h.wheel.arm(this.#timer, this.#h.connectTimeoutMs);
  }

  /** Bytes client → guest ("l") and guest → client ("r"). */
  get bytesUp(): number {
    return this.#up?.moved ?? 0;
  }
  get bytesDown(): number {
    return this.#down?.moved ?? 0;
  }

  /** Ends it now with RST both ways (forward removed, shutdown). */
  abort(why: string): void {
    this.#end(why, true);
  }

  #connected(): void {
    this.#connecting = false;
    this.#h.wheel.cancel(this.#timer);
    const err = this.guest.connectResult();
    if (err !== 0) {
      this.#end(`connect: ${errnoName(err)}`, true);
      return;
    }
    try {
      this.#up = new Half(this.client, this.guest, pipe());
      this.#down = new Half(this.guest, this.client, pipe());
    } catch (e) {
      if (this.#up !== null) release(this.#up.pipe, true);
      this.#up = null;
      this.#end(`pipe: ${e instanceof Error ? e.message : e}`, true);
      return;
    }
    // Small writes go out as they come: the sender already chose its segments.
    try {
      this.client.setNoDelay(true);
      this.guest.setNoDelay(true);
    } catch { /* a socket already reset: the first splice says so */ }
    this.#h.poller.add(this.client, 0, (ev) => this.#onClient(ev));
    this.#cReg = true;
    this.#cMask = 0;
    this.#pump();
  }

  #onGuest(ev: number): void {
    if (this.#connecting) {
      this.#connected();
      return;
    }
    this.#event(ev, false);
  }

  #onClient(ev: number): void {
    this.#event(ev, true);
  }

  #event(ev: number, client: boolean): void {
    if (this.#ended) return;
    if ((ev & EPOLLERR) !== 0) {
      const s = client ? this.client : this.guest;
      const e = s.connectResult(); // SO_ERROR
      this.#end(`${client ? "client" : "guest"}: ${e ? errnoName(e) : "error"}`, true);
      return;
    }
    if ((ev & EPOLLHUP) !== 0) {
      // Both halves of this socket are closed: no further event of it means anything (and a
      // level-triggered HUP would fire forever). Read what is left in the pump below; the
      // rest of the work is driven by the other socket.
      const s = client ? this.client : this.guest;
      this.#h.poller.remove(s);
      if (client) this.#cReg = false;
      else this.#gReg = false;
      (client ? this.#up : this.#down)!.polled = false;
      this.#pump(true, true);
      return;
    }
    // Readable: the direction from this socket; writable: the one into it.
    const readable = (ev & EPOLLIN) !== 0, writable = (ev & EPOLLOUT) !== 0;
    this.#pump(client ? readable : writable, client ? writable : readable);
  }

  #pump(upToo = true, downToo = true): void {
    const up = this.#up!, down = this.#down!;
    let e = upToo ? up.pump() : 0;
    if (e === 0 && downToo) e = down.pump();
    if (e !== 0) {
      this.#end(errnoName(e), true);
      return;
    }
    if (up.shut && down.shut) {
      this.#end("", false);
      return;
    }
    if (!this.#cReg && !this.#gReg) {
      // Both sockets hung up and there is still something to deliver: nobody can take it.
      this.#end("both sides closed", true);
      return;
    }
    const cm = (up.wantsIn ? EPOLLIN : 0) | (down.blocked ? EPOLLOUT : 0);
    const gm = (down.wantsIn ? EPOLLIN : 0) | (up.blocked ? EPOLLOUT : 0);
    if (this.#cReg && cm !== this.#cMask) {
      this.#h.poller.modify(this.client, cm);
      this.#cMask = cm;
    }
    if (this.#gReg && gm !== this.#gMask) {
      this.#h.poller.modify(this.guest, gm);
      this.#gMask = gm;
    }
  }

  #end(why: string, reset: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#h.wheel.cancel(this.#timer);
    if (this.#cReg) this.#h.poller.remove(this.client);
    if (this.#gReg) this.#h.poller.remove(this.guest);
    this.#cReg = this.#gReg = false;
    if (reset) {
      this.client.abort();
      this.guest.abort();
    } else {
      this.client.close();
      this.guest.close();
    }
    for (const h of [this.#up, this.#down]) if (h !== null) release(h.pipe, h.queued === 0);
    this.#h.done(this, why);
  }
}
