// The host's resolv.conf as the DNS forwarder needs it: the upstream nameservers, re-read
// when the file changes. A guest behind slirpd must see the host's resolver even when it is
// a loopback one (systemd-resolved's 127.0.0.53) that the guest could never reach itself.
//
// Change detection is a stat() (mtime, ctime, size, inode) at most once per `minCheckMs`,
// done lazily when a query needs the list: an idle slirpd does no work at all, and an atomic
// replace (write + rename, as NetworkManager and resolvconf do) changes the inode.
//
// Parsing follows glibc's resolv.conf(5): `nameserver ADDR` lines, `#` and `;` comments, at
// most MAXNS (3) servers, and 127.0.0.1 when there is no usable nameserver line at all.
// Link-local IPv6 servers with a scope ("fe80::1%eth0") are skipped: without the interface
// the address means nothing to a host socket, and a scope id slirpd cannot verify is not
// worth the surprise.

import { formatIp, isV4Mapped, parseIp } from "../wire/bytes.ts";

/** One upstream DNS server (port 53). */
export interface Nameserver {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
}

/** glibc's MAXNS: servers after the third are ignored by every stub resolver. */
export const MAXNS = 3;

/** What glibc uses when resolv.conf names no server: the resolver on the local host. */
export function defaultNameservers(): Nameserver[] {
  return [{ family: 4, addr: new Uint8Array([127, 0, 0, 1]) }];
}

/**
 * The nameservers in a resolv.conf text (at most MAXNS, in file order; duplicates dropped).
 * An IPv4-mapped IPv6 address ("::ffff:192.0.2.1") is the IPv4 server it spells. Returns []
 * when there is none: the caller decides the fallback.
 */
export function parseResolvConf(text: string): Nameserver[] {
  const out: Nameserver[] = [];
  for (const raw of text.split("\n")) {
    if (out.length >= MAXNS) break;
    const line = raw.replace(/[#;].*$/, "").trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const text = m[1];
    if (text.includes("%")) continue; // scoped link-local: see the file comment
    const a = parseIp(text);
    if (a === null) continue;
    let ns: Nameserver;
    if (a.length === 4) ns = { family: 4, addr: a };
    else if (isV4Mapped(a)) ns = { family: 4, addr: a.slice(12) };
    else ns = { family: 6, addr: a };
    if (isUnspecified(ns.addr)) continue;
    if (out.some((o) => sameServer(o, ns))) continue;
    out.push(ns);
  }
  return out;
}

function isUnspecified(a: Uint8Array): boolean {
  return a.every((x) => x === 0);
}

export function sameServer(a: Nameserver, b: Nameserver): boolean {
  return a.family === b.family && a.addr.length === b.addr.length &&
    a.addr.every((x, i) => x === b.addr[i]);
}

/** The identity of one version of the file; a change in any field means "re-read". */
function fileStamp(info: Deno.FileInfo): string {
  return `${info.ino}:${info.size}:${info.mtime?.getTime() ?? 0}:${info.ctime?.getTime() ?? 0}`;
}

export interface ResolvConfOptions {
  /** Minimum time between two stat() calls (default 1000 ms). */
  minCheckMs?: number;
  /** Called once per (re)load that changed the list, and when the file cannot be read. */
  log?: (line: string) => void;
}

/** A resolv.conf file watched lazily: `servers(now)` re-reads it when it changed. */
export class ResolvConf {
  #list: Nameserver[] = defaultNameservers();
  #stamp = "";
  #nextCheck = -Infinity;
  #unreadableLogged = false;
  readonly #minCheckMs: number;
  readonly #log: (line: string) => void;
  /** How many times the list was (re)loaded from the file. */
  loads = 0;

  constructor(readonly path: string, opts: ResolvConfOptions = {}) {
    this.#minCheckMs = opts.minCheckMs ?? 1000;
    this.#log = opts.log ?? (() => {});
  }

  /** The current list (never empty), re-checking the file when `minCheckMs` has passed. */
  servers(now: number): Nameserver[] {
    if (now >= this.#nextCheck) {
      this.#nextCheck = now + this.#minCheckMs;
      this.#check();
    }
    return this.#list;
  }

  /** Forces the next `servers()` to stat the file. */
  invalidate(): void {
    this.#nextCheck = -Infinity;
  }

  #check(): void {
    let stamp: string;
    let text: string;
    try {
      stamp = fileStamp(Deno.statSync(this.path));
      if (stamp === this.#stamp) return;
      text = Deno.readTextFileSync(this.path);
    } catch (e) {
      // Missing or unreadable: keep what we had (a file being replaced in place must not
      // make slirpd forget its servers); the first load falls back to glibc's default.
      if (!this.#unreadableLogged) {
        this.#unreadableLogged = true;
        const why = e instanceof Error ? e.message : String(e);
        this.#log(`dns: cannot read ${this.path} (${why}); using ${this.#describe()}`);
      }
      return;
    }
    this.#unreadableLogged = false;
    this.#stamp = stamp;
    const parsed = parseResolvConf(text);
    const list = parsed.length > 0 ? parsed : defaultNameservers();
    this.loads++;
    const changed = list.length !== this.#list.length ||
      list.some((s, i) => !sameServer(s, this.#list[i]));
    this.#list = list;
    if (changed || this.loads === 1) {
      this.#log(`dns: upstream servers from ${this.path}: ${this.#describe()}`);
    }
  }

  #describe(): string {
    return this.#list.map((s) => formatIp(s.addr)).join(", ");
  }
}
