// A forward's address: an IP literal, or a host name resolved with a TTL (--dns-ttl, as
// slirpnetstack's defAddress). Flows ask `current()` synchronously; when the answer is older
// than the TTL a background lookup refreshes it, and until then the old answer is used (a
// lookup never blocks the event loop, and a failed refresh keeps the last good address).
//
// SRV labels (slirpnetstack's, srv.ts): `name@srv-PORT` or `name@srv-HOST:PORT` ask that DNS
// server for name's SRV records; the first record (RFC 2782 order) gives the address and the
// port (`port`, which replaces the spec's port when it is not 0). With --dns-ttl 0 every new
// flow starts a lookup; as for names, the flow that starts it uses the answer before it.

import { formatIp } from "../wire/bytes.ts";
import { parseAddr } from "./spec.ts";
import { parseSrvLabel, resolveLabel } from "./srv.ts";

/** Resolves a host name to its addresses (getaddrinfo order). */
export type Resolver = (name: string) => Promise<Uint8Array[]>;

/** getaddrinfo through node:dns: reads /etc/hosts (`localhost`), then DNS. */
export const systemResolver: Resolver = async (name) => {
  let found;
  try {
    // Imported on first use: node:dns costs ~10 ms of start-up, and most runs look up nothing.
    const { lookup } = await import("node:dns/promises");
    found = await lookup(name, { all: true, verbatim: true });
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new Error(
      `lookup ${name}: ${code === "ENOTFOUND" || code === undefined ? "no such host" : code}`,
    );
  }
  const out: Uint8Array[] = [];
  for (const a of found) {
    const ip = parseAddr(a.address.replace(/%.*$/, ""));
    if (ip !== null) out.push(ip);
  }
  if (out.length === 0) throw new Error(`lookup ${name}: no such host`);
  return out;
};

export class HostAddr {
  #addr: Uint8Array | null;
  #fetched = 0;
  #pending: Promise<void> | null = null;
  /** The last lookup's failure ("" when it worked). */
  error = "";
  /** A host name (resolved with the TTL), not a literal. */
  readonly isName: boolean;
  /** An SRV label (name@srv-...): the lookup gives the port too. */
  readonly isSrv: boolean;
  #port = 0;

  constructor(
    /** As written (a literal or a name). */
    readonly text: string,
    private readonly ttlMs: number,
    private readonly resolver: Resolver,
    literal: Uint8Array | null = parseAddr(text),
  ) {
    this.#addr = literal;
    this.isName = literal === null;
    this.isSrv = this.isName && parseSrvLabel(text).kind === "srv";
  }

  /** The SRV record's port (0: none, or not an SRV label): replaces the spec's port. */
  get port(): number {
    return this.#port;
  }

  /** A literal address, or a name. */
  static of(v: string | Uint8Array, ttlMs: number, resolver: Resolver): HostAddr {
    return typeof v === "string"
      ? new HostAddr(v, ttlMs, resolver)
      : new HostAddr(formatIp(v), ttlMs, resolver, v);
  }

  /** Resolves now (start-up and API); throws with the lookup's reason. */
  async resolve(): Promise<Uint8Array> {
    if (!this.isName) return this.#addr as Uint8Array;
    await this.#lookup();
    if (this.#addr === null) throw new Error(this.error);
    return this.#addr;
  }

  /** The address to use now (null: never resolved); refreshes in the background when stale. */
  current(): Uint8Array | null {
    if (this.#pending === null && this.#stale()) {
      this.#pending = this.#lookup().finally(() => this.#pending = null);
    }
    return this.#addr;
  }

  #stale(): boolean {
    return this.#fetched > 0 && Date.now() - this.#fetched >= this.ttlMs;
  }

  async #lookup(): Promise<void> {
    this.#fetched = Date.now();
    try {
      if (this.isSrv) {
        const r = await resolveLabel(this.text);
        const ip = parseAddr(r.ip);
        if (ip === null) throw new Error(`SRV target address "${r.ip}" is not an IP address`);
        this.#addr = ip;
        this.#port = r.port;
        this.error = "";
        return;
      }
      const all = await this.resolver(this.text);
      // Prefer IPv4, as slirpnetstack does ("no real reason"): stable across runs.
      this.#addr = all.find((a) => a.length === 4) ?? all[0];
      this.error = "";
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    }
  }
}
