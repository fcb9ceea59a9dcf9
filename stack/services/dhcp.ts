// The DHCPv4 server on the guest link (RFC 2131/2132), as libslirp's: addresses network+15 ..
// network+30, router network+2 (also the server identifier), DNS network+3, the subnet mask,
// the link MTU (option 26) and a 24 h lease. A guest that slirpd did not configure
// (`udhcpc`, `dhclient`, systemd-networkd) gets an address, a default route and DNS from it.
//
// Leases are keyed by the client's hardware address (chaddr): a client gets the address it
// had, or the one it asks for when it is free, or the first free one. The table is the pool
// itself (16 slots), so it is bounded by construction; an expired or never used slot is
// free. An OFFER holds its address for OFFER_HOLD_MS only, so DISCOVER floods cannot drain
// the pool for longer than that.
//
// Replies go from the server address:67 to port 68: unicast to ciaddr when the client has an
// address (renewal, INFORM), else to 255.255.255.255 (libslirp does the same; the Ethernet
// frame goes to the guest's MAC either way: it is the only station on the tap).

import type { PacketMeta } from "../ip/meta.ts";
import type { NetPlan } from "../base/netplan.ts";
import type { Tx } from "../link/tx.ts";
import type { UdpReply } from "./dns.ts";
import { bytesEqual, copyBytes, setU16, setU32, u32 } from "../wire/bytes.ts";

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** Pool: network + POOL_START .. network + POOL_START + POOL_SIZE - 1 (libslirp's). */
export const POOL_START = 15;
export const POOL_SIZE = 16;
const BOOTREQUEST = 1;
const BOOTREPLY = 2;
const HTYPE_ETHER = 1;
const FIXED_LEN = 236;
const COOKIE = 0x63825363;
const OPTIONS_AT = FIXED_LEN + 4;
/** RFC 1542 §2.1: BOOTP messages are at least 300 bytes; some clients insist. */
const MIN_REPLY = 300;
const UDP_HLEN = 8;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

const OPT_PAD = 0;
const OPT_SUBNET_MASK = 1;
const OPT_ROUTER = 3;
const OPT_DNS = 6;
const OPT_MTU = 26;
const OPT_BROADCAST = 28;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE_TIME = 51;
const OPT_MSG_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_T1 = 58;
const OPT_T2 = 59;
const OPT_END = 255;

/** How long an OFFER reserves its address for the client. */
const OFFER_HOLD_MS = 30_000;
/** How long an address a client DECLINEd (someone else uses it) stays out of the pool. */
const DECLINE_HOLD_MS = 600_000;

export interface DhcpOptions {
  /** Link MTU handed out in option 26. */
  mtu: number;
  /** Hand out the DNS address (option 6); false with --disable-dns. */
  dns: boolean;
  /** Lease time in seconds (default 86400). */
  leaseSeconds?: number;
  now?: () => number;
  log?: (line: string) => void;
}

/** Counters (plain numbers). */
export class DhcpStats {
  discovers = 0;
  offers = 0;
  requests = 0;
  acks = 0;
  naks = 0;
  releases = 0;
  declines = 0;
  informs = 0;
  poolExhausted = 0;
  dropMalformed = 0;
}

const FREE = 0;
const OFFERED = 1;
const BOUND = 2;
const DECLINED = 3;

class Slot {
  state = FREE;
  readonly mac = new Uint8Array(6);
  /** ms (the `now` clock) at which an OFFERED/BOUND/DECLINED slot becomes free again. */
  expires = 0;
}

/** The parsed fields of one request (reused; valid during input()). */
class Request {
  type = 0;
  /** Requested IP (option 50) as a u32, or -1. */
  requested = -1;
  /** Server identifier (option 54) as a u32, or -1. */
  serverId = -1;
  xid = 0;
  flags = 0;
  ciaddr = 0;
  giaddr = 0;
  macOff = 0;
}

export class DhcpServer {
  readonly stats = new DhcpStats();
  readonly #slots: Slot[] = [];
  readonly #req = new Request();
  readonly #net: number;
  readonly #mask: number;
  readonly #server: number;
  readonly #leaseSeconds: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #dst = new Uint8Array(4);
  #exhaustedLogged = false;

  constructor(
    private readonly plan: NetPlan,
    private readonly tx: Tx,
    private readonly reply: UdpReply,
    private readonly opts: DhcpOptions,
  ) {
    for (let i = 0; i < POOL_SIZE; i++) this.#slots.push(new Slot());
    this.#mask = plan.prefixLen4 === 0 ? 0 : (~0 << (32 - plan.prefixLen4)) >>> 0;
    this.#net = (u32(plan.prefix4, 0) & this.#mask) >>> 0;
    this.#server = u32(plan.gateway4, 0);
    this.#leaseSeconds = opts.leaseSeconds ?? 86400;
    this.#now = opts.now ?? (() => performance.now());
    this.#log = opts.log ?? (() => {});
  }

  /** The lease table as (address, MAC, state) for tests and logs (allocates). */
  leases(): { addr: string; mac: string; state: string }[] {
    const now = this.#now();
    const out = [];
    for (let i = 0; i < POOL_SIZE; i++) {
      const s = this.#slots[i];
      if (s.state === FREE || s.expires <= now) continue;
      out.push({
        addr: this.#formatAddr(this.#poolAddr(i)),
        mac: [...s.mac].map((x) => x.toString(16).padStart(2, "0")).join(":"),
        state: ["free", "offered", "bound", "declined"][s.state],
      });
    }
    return out;
  }

  /**
   * A guest datagram to port 67 (to 255.255.255.255 or the server address): the BOOTP
   * message is at m.b[off .. off+len), the UDP header at m.l4Off.
   */
  input(m: PacketMeta, off: number, len: number): void {
    // From a client's port (68) only: anything else to :67 is not DHCP.
    if (m.family !== 4 || ((m.b[m.l4Off] << 8) | m.b[m.l4Off + 1]) !== DHCP_CLIENT_PORT) {
      this.stats.dropMalformed++;
      return;
    }
    const r = this.#req;
    if (!this.#parse(m.b, off, len)) {
      this.stats.dropMalformed++;
      return;
    }
    if (r.giaddr !== 0) return; // relayed: there is no relay on a tap
    const b = m.b;
    switch (r.type) {
      case DHCPDISCOVER:
        this.stats.discovers++;
        this.#discover(b);
        return;
      case DHCPREQUEST:
        this.stats.requests++;
        this.#request(b);
        return;
      case DHCPDECLINE:
        this.stats.declines++;
        this.#decline(b);
        return;
      case DHCPRELEASE:
        this.stats.releases++;
        this.#release(b);
        return;
      case DHCPINFORM:
        this.stats.informs++;
        if (r.ciaddr !== 0) this.#send(b, DHCPACK, 0, true);
        return;
    }
  }

  // --- request handling ---

  #discover(b: Uint8Array): void {
    const i = this.#choose(b, this.#req.requested);
    if (i < 0) {
      this.stats.poolExhausted++;
      if (!this.#exhaustedLogged) {
        this.#exhaustedLogged = true;
        this.#log("dhcp: address pool exhausted; DISCOVER not answered");
      }
      return;
    }
    const s = this.#slots[i];
    if (s.state !== BOUND || !this.#owns(s, b)) {
      s.state = OFFERED;
      copyBytes(s.mac, 0, b, this.#req.macOff, 6);
      s.expires = this.#now() + OFFER_HOLD_MS;
    }
    this.#send(b, DHCPOFFER, this.#poolAddr(i), false);
  }

  #request(b: Uint8Array): void {
    const r = this.#req;
    if (r.serverId >= 0) {
      // SELECTING: the client picked a server. Not us: forget the offer we made.
      if (r.serverId !== this.#server) {
        const i = this.#slotOfMac(b);
        if (i >= 0 && this.#slots[i].state === OFFERED) this.#slots[i].state = FREE;
        return;
      }
      if (r.requested < 0) return; // RFC 2131 §4.3.2: MUST contain it; ignore
      this.#bindOrNak(b, r.requested);
      return;
    }
    // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr).
    const want = r.requested >= 0 ? r.requested : r.ciaddr;
    if (want <= 0) return;
    this.#bindOrNak(b, want >>> 0);
  }

  #bindOrNak(b: Uint8Array, addr: number): void {
    const i = this.#poolIndex(addr);
    if (i >= 0 && this.#available(this.#slots[i], b)) {
      const s = this.#slots[i];
      s.state = BOUND;
      copyBytes(s.mac, 0, b, this.#req.macOff, 6);
      s.expires = this.#now() + this.#leaseSeconds * 1000;
      // Another slot this client held (an old lease) is released.
      for (let j = 0; j < POOL_SIZE; j++) {
        const o = this.#slots[j];
        if (j !== i && o.state !== DECLINED && this.#owns(o, b)) o.state = FREE;
      }
      this.#send(b, DHCPACK, addr, false);
      return;
    }
    // Not ours to give (outside the pool, e.g. a static .100, or another client's): NAK,
    // so the client starts over with DISCOVER instead of keeping an address we don't know.
    this.#send(b, DHCPNAK, 0, false);
  }

  #decline(b: Uint8Array): void {
    const r = this.#req;
    const i = r.requested >= 0 ? this.#poolIndex(r.requested) : -1;
    if (i < 0 || !this.#owns(this.#slots[i], b)) return;
    const s = this.#slots[i];
    s.state = DECLINED;
    s.mac.fill(0);
    s.expires = this.#now() + DECLINE_HOLD_MS;
    this.#log(`dhcp: a client declined ${this.#formatAddr(this.#poolAddr(i))} (in use?)`);
  }

  #release(b: Uint8Array): void {
    const i = this.#poolIndex(this.#req.ciaddr);
    if (i >= 0 && this.#owns(this.#slots[i], b) && this.#slots[i].state === BOUND) {
      this.#slots[i].state = FREE;
    }
  }

  // --- the pool ---

  #poolAddr(i: number): number {
    return (this.#net + POOL_START + i) >>> 0;
  }

  #poolIndex(addr: number): number {
    const i = addr - this.#net - POOL_START;
    return i >= 0 && i < POOL_SIZE ? i : -1;
  }

  #live(s: Slot): boolean {
    return s.state !== FREE && s.expires > this.#now();
  }

  #owns(s: Slot, b: Uint8Array): boolean {
    return this.#live(s) && s.state !== DECLINED &&
      bytesEqual(s.mac, 0, b, this.#req.macOff, 6);
  }

  /** Free, or already this client's. */
  #available(s: Slot, b: Uint8Array): boolean {
    return !this.#live(s) || this.#owns(s, b);
  }

  #slotOfMac(b: Uint8Array): number {
    for (let i = 0; i < POOL_SIZE; i++) if (this.#owns(this.#slots[i], b)) return i;
    return -1;
  }

  /** The slot for a DISCOVER: the client's own, the requested one if free, the first free. */
  #choose(b: Uint8Array, requested: number): number {
    const own = this.#slotOfMac(b);
    if (own >= 0) return own;
    const r = requested >= 0 ? this.#poolIndex(requested) : -1;
    if (r >= 0 && !this.#live(this.#slots[r])) return r;
    // Prefer a never used slot over one that expired (its old client may come back).
    let expired = -1;
    for (let i = 0; i < POOL_SIZE; i++) {
      const s = this.#slots[i];
      if (s.state === FREE) return i;
      if (!this.#live(s) && (expired < 0 || s.expires < this.#slots[expired].expires)) {
        expired = i;
      }
    }
    return expired;
  }

  // --- wire ---

  #parse(b: Uint8Array, o: number, n: number): boolean {
    const r = this.#req;
    if (n < OPTIONS_AT || b[o] !== BOOTREQUEST || b[o + 1] !== HTYPE_ETHER || b[o + 2] !== 6) {
      return false;
    }
    if (u32(b, o + FIXED_LEN) !== COOKIE) return false;
    r.type = 0;
    r.requested = -1;
    r.serverId = -1;
    r.xid = u32(b, o + 4);
    r.flags = (b[o + 10] << 8) | b[o + 11];
    r.ciaddr = u32(b, o + 12);
    r.giaddr = u32(b, o + 24);
    r.macOff = o + 28;
    // Options (RFC 2132): code, length, data; pad and end have no length. Overload (52,
    // options in sname/file) is not honoured: no client needs it for these few options.
    let p = o + OPTIONS_AT;
    const end = o + n;
    while (p < end) {
      const code = b[p];
      if (code === OPT_END) break;
      if (code === OPT_PAD) {
        p++;
        continue;
      }
      if (p + 2 > end) return false;
      const len = b[p + 1];
      const d = p + 2;
      if (d + len > end) return false;
      if (code === OPT_MSG_TYPE && len === 1) r.type = b[d];
      else if (code === OPT_REQUESTED_IP && len === 4) r.requested = u32(b, d);
      else if (code === OPT_SERVER_ID && len === 4) r.serverId = u32(b, d);
      p = d + len;
    }
    return r.type !== 0;
  }

  /** Builds and sends a reply of `type` offering `yiaddr` (0 for NAK and INFORM's ACK). */
  #send(b: Uint8Array, type: number, yiaddr: number, inform: boolean): void {
    const r = this.#req;
    const tx = this.tx;
    const o = tx.l4Offset(4) + UDP_HLEN;
    const t = tx.buf;
    t.fill(0, o, o + MIN_REPLY);
    t[o] = BOOTREPLY;
    t[o + 1] = HTYPE_ETHER;
    t[o + 2] = 6;
    setU32(t, o + 4, r.xid);
    setU16(t, o + 10, r.flags);
    if (inform) setU32(t, o + 12, r.ciaddr);
    setU32(t, o + 16, yiaddr);
    if (type !== DHCPNAK) setU32(t, o + 20, this.#server); // siaddr, as libslirp
    copyBytes(t, o + 28, b, r.macOff, 6);
    setU32(t, o + FIXED_LEN, COOKIE);
    let p = o + OPTIONS_AT;
    p = opt8(t, p, OPT_MSG_TYPE, type);
    p = opt32(t, p, OPT_SERVER_ID, this.#server);
    if (type !== DHCPNAK) {
      if (!inform) {
        const lease = this.#leaseSeconds;
        p = opt32(t, p, OPT_LEASE_TIME, lease);
        p = opt32(t, p, OPT_T1, Math.floor(lease / 2));
        p = opt32(t, p, OPT_T2, Math.floor((lease * 7) / 8));
      }
      p = opt32(t, p, OPT_SUBNET_MASK, this.#mask);
      p = opt32(t, p, OPT_ROUTER, this.#server);
      if (this.opts.dns) p = opt32(t, p, OPT_DNS, u32(this.plan.dns4, 0));
      p = opt32(t, p, OPT_BROADCAST, (this.#net | ~this.#mask) >>> 0);
      t[p] = OPT_MTU;
      t[p + 1] = 2;
      setU16(t, p + 2, this.opts.mtu);
      p += 4;
    }
    t[p++] = OPT_END;
    const len = Math.max(p - o, MIN_REPLY);
    if (type === DHCPOFFER) this.stats.offers++;
    else if (type === DHCPACK) this.stats.acks++;
    else if (type === DHCPNAK) this.stats.naks++;
    // RFC 2131 §4.1: to ciaddr when the client has one (not for NAK), else broadcast.
    const unicast = type !== DHCPNAK && r.ciaddr !== 0;
    setU32(this.#dst, 0, unicast ? r.ciaddr : 0xffffffff);
    this.reply(4, this.plan.gateway4, DHCP_SERVER_PORT, this.#dst, DHCP_CLIENT_PORT, len);
  }

  #formatAddr(a: number): string {
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
}

function opt8(t: Uint8Array, p: number, code: number, v: number): number {
  t[p] = code;
  t[p + 1] = 1;
  t[p + 2] = v;
  return p + 3;
}

function opt32(t: Uint8Array, p: number, code: number, v: number): number {
  t[p] = code;
  t[p + 1] = 4;
  setU32(t, p + 2, v);
  return p + 6;
}
