// The forward table: -L / -R from the command line and the API socket's add_hostfwd are rows
// of one table, numbered from 1 in the order they were added (ids are never reused). Removing a
// row stops its listener (or redirect) and closes its live connections and flows.
//
//   const fw = new Forwards(opts);
//   const e = await fw.add(parseForwardSpec("local", "8080:10.0.2.100:80"));  // ForwardEntry
//   fw.list();  fw.remove(e.id);  fw.close();
//
// The kinds live in stack/forwards/: spec.ts (syntax, defaults), addr.ts (names with a TTL),
// local_tcp.ts (-L tcp, tcppp + proxyproto.ts), local_udp.ts (-L udp), remote.ts (-R).

import { HostAddr, type Resolver, systemResolver } from "./addr.ts";
import {
  addrPort,
  type Forward,
  type ForwardEntry,
  ForwardError,
  type ForwardsOptions,
  type FwdBytes,
  FwdShared,
  transport,
} from "./common.ts";
import { LocalTcp } from "./local_tcp.ts";
import { LocalUdp } from "./local_udp.ts";
import { RemoteFwd } from "./remote.ts";
import { type ForwardSpec, withDefaults } from "./spec.ts";

export { type ForwardEntry, ForwardError, type ForwardsOptions } from "./common.ts";
export { type ForwardSpec, parseForwardSpec, SpecError } from "./spec.ts";

export class Forwards {
  readonly #sh: FwdShared;
  readonly #table = new Map<number, Forward>();
  #nextId = 1;
  #closed = false;

  constructor(opts: ForwardsOptions, private readonly resolver: Resolver = systemResolver) {
    this.#sh = new FwdShared(opts);
  }

  /**
   * Sets a forward up: names resolved, listener bound or redirect registered. Throws
   * ForwardError (port in use, name that does not resolve, redirect taken) with the line to
   * print; nothing is left behind then.
   */
  async add(spec: ForwardSpec): Promise<ForwardEntry> {
    const o = this.#sh.o;
    const d = withDefaults(spec, o.plan);
    const bind = HostAddr.of(d.bind, o.dnsTtlMs, this.resolver);
    const target = HostAddr.of(d.target, o.dnsTtlMs, this.resolver);
    let bindAddr: Uint8Array;
    try {
      bindAddr = await bind.resolve();
    } catch (e) {
      throw new ForwardError(
        spec.dir === "local"
          ? `Failed to listen on ${transport(spec)}://${addrPort(bind.text, spec.bindPort)}: ${
            (e as Error).message
          }`
          : `Failed to resolve bind address: ${(e as Error).message}`,
        true,
      );
    }
    try {
      await target.resolve();
    } catch (e) {
      throw new ForwardError(
        `Failed to resolve target ${addrPort(target.text, spec.targetPort)}: ${
          (e as Error).message
        }`,
        true,
      );
    }
    if (this.#closed) throw new ForwardError("shutting down");
    let f: LocalTcp | LocalUdp | RemoteFwd;
    if (spec.dir === "remote") f = new RemoteFwd(this.#sh, spec, bindAddr, target, 0);
    else if (spec.proto === 6) f = new LocalTcp(this.#sh, spec, bindAddr, target, 0);
    else f = new LocalUdp(this.#sh, spec, bindAddr, target, 0);
    f.open(); // throws ForwardError
    // Numbered once it works (as slirp4netns): ids count up from 1 and are never reused.
    const id = this.#nextId++;
    f.entry.id = id;
    this.#table.set(id, f);
    return { ...f.entry };
  }

  /** Removes forward `id`: false when there is none. */
  remove(id: number): boolean {
    const f = this.#table.get(id);
    if (f === undefined) return false;
    this.#table.delete(id);
    f.close();
    return true;
  }

  /** The rows, by id (copies). */
  list(dir?: "local" | "remote"): ForwardEntry[] {
    const out: ForwardEntry[] = [];
    for (const f of this.#table.values()) {
      if (dir === undefined || f.entry.dir === dir) out.push({ ...f.entry });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** Bytes carried by forwards' finished connections and flows. */
  bytes(): Readonly<FwdBytes> {
    return this.#sh.bytes;
  }

  /** A remote forward's TCP connection ended (its host socket closed). */
  accountRemote(fromGuest: number, fromHost: number): void {
    this.#sh.bytes.remoteToHost += fromGuest;
    this.#sh.bytes.remoteFromHost += fromHost;
  }

  get size(): number {
    return this.#table.size;
  }

  /** Closes every forward (shutdown). */
  close(): void {
    this.#closed = true;
    for (const id of [...this.#table.keys()]) this.remove(id);
  }
}
