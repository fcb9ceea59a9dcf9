// TCP sockets born in another network namespace (the guest's), for the spliced port forwards
// (stack/forwards/splice.ts). A socket keeps the netns it was created in, and connect() on it
// later routes there, whichever netns the thread is in by then. So sockets are made in
// batches, one short `withNetns` window per batch (two setns calls and two opens, ~20 µs,
// amortized over BATCH sockets), and connected from the host netns when a client arrives:
// what pasta does with its pool of pre-opened namespace sockets.
//
// As root only: rootless slirpd cannot setns into the guest netns (ffi/userns.ts).

import { withNetns } from "./netns.ts";
import { type Family, TcpSocket } from "./socket.ts";

/** Sockets made per window. */
const BATCH = 16;

export class NetnsSocketPool {
  readonly #free: Record<Family, TcpSocket[]> = { 4: [], 6: [] };

  constructor(readonly path: string) {}

  /** A fresh unconnected TCP socket of `family` in the netns; throws SyscallError. */
  take(family: Family): TcpSocket {
    const free = this.#free[family];
    if (free.length === 0) {
      withNetns(this.path, () => {
        try {
          for (let i = 0; i < BATCH; i++) free.push(TcpSocket.open(family));
        } catch (e) {
          if (free.length === 0) throw e; // EMFILE on the first: the caller falls back
        }
      });
    }
    return free.pop()!;
  }

  /** Made there, connecting to addr:port there (non-blocking; see TcpSocket.connectTo). */
  connect(family: Family, addr: Uint8Array, port: number): TcpSocket {
    const s = this.take(family);
    s.connectTo(addr, port);
    return s;
  }

  /** Closes the sockets not handed out. */
  close(): void {
    for (const f of [4, 6] as const) {
      for (const s of this.#free[f].splice(0)) s.close();
    }
  }
}
