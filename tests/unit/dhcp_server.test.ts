// The DHCPv4 server's protocol and lease logic, message by message (no guest): OFFER/ACK
// contents, NAK for addresses that are not the client's, a client choosing another server,
// renewal, RELEASE, INFORM, DECLINE, pool exhaustion and expiry, --disable-dns, --cidr.

import assert from "node:assert/strict";
import { DhcpServer, POOL_SIZE } from "../../stack/services/dhcp.ts";
import {
  type Cidr,
  defaultNetPlan,
  type NetPlan,
  netPlanFrom,
  parseCidr,
} from "../../stack/base/netplan.ts";
import { PacketMeta } from "../../stack/ip/meta.ts";
import { Counters } from "../../stack/base/counters.ts";
import { Tx } from "../../stack/link/tx.ts";
import { formatIp, u32 } from "../../stack/wire/bytes.ts";

const DISCOVER = 1, OFFER = 2, REQUEST = 3, DECLINE = 4, ACK = 5, NAK = 6, RELEASE = 7;
const INFORM = 8;

interface Reply {
  dst: string;
  srcPort: number;
  dstPort: number;
  len: number;
  yiaddr: string;
  ciaddr: string;
  xid: number;
  chaddr: string;
  opts: Map<number, Uint8Array>;
}

function ip(s: string): number[] {
  return s.split(".").map(Number);
}

function mac(n: number): number[] {
  return [0x02, 0, 0, 0, n >> 8, n & 255];
}

/** A BOOTREQUEST from `clientMac` with message type `type` and options. */
function request(
  type: number,
  clientMac: number[],
  o: { ciaddr?: string; requested?: string; serverId?: string; xid?: number } = {},
): Uint8Array {
  const b = new Uint8Array(300);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  const xid = o.xid ?? 0x12345678;
  b.set([xid >>> 24, (xid >>> 16) & 255, (xid >>> 8) & 255, xid & 255], 4);
  if (o.ciaddr) b.set(ip(o.ciaddr), 12);
  b.set(clientMac, 28);
  b.set([99, 130, 83, 99], 236);
  let p = 240;
  b.set([53, 1, type], p);
  p += 3;
  if (o.requested) {
    b.set([50, 4, ...ip(o.requested)], p);
    p += 6;
  }
  if (o.serverId) {
    b.set([54, 4, ...ip(o.serverId)], p);
    p += 6;
  }
  b.set([55, 3, 1, 3, 6], p); // a parameter request list, as clients send
  p += 5;
  b[p] = 255;
  return b;
}

function rig(plan: NetPlan = defaultNetPlan(), dns = true) {
  const counters = new Counters();
  const tx = new Tx({ vnetLen: 0, offloaded: false, write: () => true }, plan.mac, 1500, counters);
  let clock = 0;
  const replies: Reply[] = [];
  const srv = new DhcpServer(
    plan,
    tx,
    (_family, _src, srcPort, dst, dstPort, len) => {
      const at = tx.l4Offset(4) + 8;
      const p = tx.buf.slice(at, at + len);
      const opts = new Map<number, Uint8Array>();
      for (let i = 240; i < len && p[i] !== 255;) {
        if (p[i] === 0) {
          i++;
          continue;
        }
        opts.set(p[i], p.slice(i + 2, i + 2 + p[i + 1]));
        i += 2 + p[i + 1];
      }
      replies.push({
        dst: formatIp(dst),
        srcPort,
        dstPort,
        len,
        yiaddr: formatIp(p, 16, 4),
        ciaddr: formatIp(p, 12, 4),
        xid: u32(p, 4),
        chaddr: [...p.slice(28, 34)].join(","),
        opts,
      });
      return true;
    },
    { mtu: 4000, dns, now: () => clock },
  );
  const send = (msg: Uint8Array, srcIp = "0.0.0.0", dstIp = "255.255.255.255") => {
    const b = new Uint8Array(16 + msg.length);
    b.set(ip(srcIp), 0);
    b.set(ip(dstIp), 4);
    b.set([0, 68, 0, 67, (8 + msg.length) >> 8, (8 + msg.length) & 255, 0, 0], 8);
    b.set(msg, 16);
    const m = new PacketMeta();
    m.family = 4;
    m.b = b;
    m.srcOff = 0;
    m.dstOff = 4;
    m.l4Off = 8;
    m.l4Len = 8 + msg.length;
    const before = replies.length;
    srv.input(m, 16, msg.length);
    return replies.length > before ? replies[replies.length - 1] : null;
  };
  return { srv, send, advance: (ms: number) => (clock += ms) };
}

function type(r: Reply | null): number {
  return r?.opts.get(53)?.[0] ?? 0;
}

function opt4(r: Reply, code: number): string {
  const v = r.opts.get(code);
  return v === undefined ? "none" : formatIp(v, 0, 4);
}

Deno.test("dhcp: DISCOVER → OFFER → REQUEST → ACK with libslirp's options", () => {
  const { send } = rig();
  const a = mac(1);
  const offer = send(request(DISCOVER, a, { xid: 0xabcdef01 }))!;
  assert.equal(type(offer), OFFER);
  assert.equal(offer.yiaddr, "10.0.2.15");
  assert.equal(offer.xid, 0xabcdef01);
  assert.equal(offer.chaddr, a.join(","));
  assert.deepEqual([offer.dst, offer.srcPort, offer.dstPort], ["255.255.255.255", 67, 68]);
  assert.ok(offer.len >= 300, "BOOTP minimum size");
  assert.equal(opt4(offer, 54), "10.0.2.2", "server identifier");
  assert.equal(opt4(offer, 1), "255.255.255.0");
  assert.equal(opt4(offer, 3), "10.0.2.2", "router");
  assert.equal(opt4(offer, 6), "10.0.2.3", "DNS");
  assert.equal(opt4(offer, 28), "10.0.2.255", "broadcast");
  assert.equal(u32(offer.opts.get(51)!, 0), 86400, "lease time");
  assert.deepEqual([...offer.opts.get(26)!], [4000 >> 8, 4000 & 255], "MTU");
  const ack = send(request(REQUEST, a, { requested: "10.0.2.15", serverId: "10.0.2.2" }))!;
  assert.equal(type(ack), ACK);
  assert.equal(ack.yiaddr, "10.0.2.15");
  // The same client again (a reboot): the same address.
  const again = send(request(DISCOVER, a))!;
  assert.equal(again.yiaddr, "10.0.2.15");
  // Renewal: unicast from and to its address.
  const renew = send(request(REQUEST, a, { ciaddr: "10.0.2.15" }), "10.0.2.15", "10.0.2.2")!;
  assert.equal(type(renew), ACK);
  assert.equal(renew.dst, "10.0.2.15");
});

Deno.test("dhcp: NAK for addresses that are not the client's; another server chosen frees the offer", () => {
  const { send } = rig();
  const a = mac(1), b = mac(2), c = mac(3);
  send(request(DISCOVER, a));
  assert.equal(
    type(send(request(REQUEST, a, { requested: "10.0.2.15", serverId: "10.0.2.2" }))),
    ACK,
  );
  // b asks for a's address (INIT-REBOOT) and for one outside the pool.
  const nak = send(request(REQUEST, b, { requested: "10.0.2.15" }))!;
  assert.equal(type(nak), NAK);
  assert.equal(nak.yiaddr, "0.0.0.0");
  assert.equal(nak.dst, "255.255.255.255");
  assert.equal(nak.opts.has(51), false, "a NAK carries no lease");
  assert.equal(type(send(request(REQUEST, b, { requested: "10.0.2.100" }))), NAK);
  assert.equal(type(send(request(REQUEST, b, { ciaddr: "10.0.3.15" }))), NAK);
  // b is offered .16, then picks another server: silence, and .16 is free again for c.
  assert.equal(send(request(DISCOVER, b))!.yiaddr, "10.0.2.16");
  assert.equal(send(request(REQUEST, b, { requested: "10.0.2.16", serverId: "10.0.2.99" })), null);
  assert.equal(send(request(DISCOVER, c))!.yiaddr, "10.0.2.16");
});

Deno.test("dhcp: RELEASE, DECLINE and INFORM", () => {
  const { send } = rig();
  const a = mac(1), b = mac(2);
  send(request(DISCOVER, a));
  send(request(REQUEST, a, { requested: "10.0.2.15", serverId: "10.0.2.2" }));
  // Someone else's RELEASE of a's address changes nothing.
  assert.equal(send(request(RELEASE, b, { ciaddr: "10.0.2.15" })), null);
  assert.equal(send(request(DISCOVER, b))!.yiaddr, "10.0.2.16");
  assert.equal(send(request(RELEASE, a, { ciaddr: "10.0.2.15" })), null, "RELEASE has no reply");
  assert.equal(send(request(DISCOVER, b, { requested: "10.0.2.15" }))!.yiaddr, "10.0.2.16");
  // b DECLINEs .16 (someone uses it): it is not offered again for a while.
  send(request(REQUEST, b, { requested: "10.0.2.16", serverId: "10.0.2.2" }));
  assert.equal(send(request(DECLINE, b, { requested: "10.0.2.16", serverId: "10.0.2.2" })), null);
  assert.equal(send(request(DISCOVER, b))!.yiaddr, "10.0.2.15");
  // INFORM: configuration only, to the address the client has.
  const inf = send(request(INFORM, mac(9), { ciaddr: "10.0.2.100" }), "10.0.2.100", "10.0.2.2")!;
  assert.equal(type(inf), ACK);
  assert.equal(inf.dst, "10.0.2.100");
  assert.equal(inf.yiaddr, "0.0.0.0");
  assert.equal(inf.ciaddr, "10.0.2.100");
  assert.equal(inf.opts.has(51), false, "INFORM gets no lease time");
  assert.equal(opt4(inf, 3), "10.0.2.2");
});

Deno.test("dhcp: the pool is bounded; offers expire; malformed requests are dropped", () => {
  const { srv, send, advance } = rig();
  for (let i = 0; i < POOL_SIZE; i++) {
    assert.equal(send(request(DISCOVER, mac(100 + i)))!.yiaddr, `10.0.2.${15 + i}`);
  }
  assert.equal(send(request(DISCOVER, mac(999))), null, "pool exhausted: no offer");
  assert.equal(srv.stats.poolExhausted, 1);
  assert.equal(srv.leases().length, POOL_SIZE);
  advance(31_000); // offers are held 30 s
  assert.equal(send(request(DISCOVER, mac(999)))!.yiaddr, "10.0.2.15");
  const bad = request(DISCOVER, mac(5));
  bad[236] = 0; // no magic cookie
  assert.equal(send(bad), null);
  assert.equal(send(request(DISCOVER, mac(5)).slice(0, 200)), null);
  assert.equal(srv.stats.dropMalformed, 2);
});

Deno.test("dhcp: --disable-dns names no DNS server; --cidr moves everything", () => {
  const off = rig(defaultNetPlan(), false).send(request(DISCOVER, mac(1)))!;
  assert.equal(off.opts.has(6), false);
  const plan = netPlanFrom(
    parseCidr("10.0.3.128/25", 4) as Cidr,
    parseCidr("fd00:1234::/64", 6) as Cidr,
  );
  const r = rig(plan).send(request(DISCOVER, mac(1)))!;
  assert.equal(r.yiaddr, "10.0.3.143");
  assert.equal(opt4(r, 1), "255.255.255.128");
  assert.equal(opt4(r, 3), "10.0.3.130");
  assert.equal(opt4(r, 54), "10.0.3.130");
  assert.equal(opt4(r, 6), "10.0.3.131");
  assert.equal(opt4(r, 28), "10.0.3.255");
});

Deno.test("dhcp: 20k mutated requests never throw and never hand out an address outside the pool", () => {
  const { srv, send, advance } = rig();
  let s = 0x1234567;
  const r = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const types = [DISCOVER, REQUEST, DECLINE, RELEASE, INFORM];
  for (let i = 0; i < 20_000; i++) {
    const msg = request(types[r() % types.length], mac(r() % 40), {
      requested: r() % 2 ? `10.0.2.${r() % 40}` : undefined,
      serverId: r() % 3 === 0 ? "10.0.2.2" : undefined,
      ciaddr: r() % 4 === 0 ? `10.0.2.${r() % 40}` : undefined,
    });
    const flips = r() % 6;
    for (let k = 0; k < flips; k++) msg[r() % msg.length] = r() & 255;
    const cut = r() % 8 === 0 ? r() % msg.length : msg.length;
    const reply = send(msg.subarray(0, cut));
    if (reply !== null && reply.yiaddr !== "0.0.0.0") {
      const last = Number(reply.yiaddr.split(".")[3]);
      assert.ok(reply.yiaddr.startsWith("10.0.2.") && last >= 15 && last < 15 + POOL_SIZE);
    }
    if (i % 1000 === 0) advance(40_000);
  }
  assert.ok(srv.stats.dropMalformed > 0 && srv.stats.acks > 0 && srv.stats.naks > 0);
  assert.ok(srv.leases().length <= POOL_SIZE);
});
