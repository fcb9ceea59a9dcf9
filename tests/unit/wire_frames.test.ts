// Parses real kernel frames (tests/fixtures/frames.ts, made by scripts/capture_fixtures.sh)
// with the stack/wire views and checks every field against tshark's dissection of the same
// frame, then checks checksums, fragments, extension headers, NDP options and TCP options.

import assert from "node:assert/strict";
import { frameBytes, type FrameName, frames } from "../fixtures/frames.ts";
import { formatIp, formatMac, u16 } from "../../stack/wire/bytes.ts";
import { completePartial, fold, pseudoSum } from "../../stack/wire/checksum.ts";
import {
  ETH_HLEN,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  EthernetView,
} from "../../stack/wire/ethernet.ts";
import { ARP_REPLY, ARP_REQUEST, ArpView } from "../../stack/wire/arp.ts";
import { Ipv4View } from "../../stack/wire/ipv4.ts";
import { IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, Ipv6View } from "../../stack/wire/ipv6.ts";
import {
  ICMP_DEST_UNREACH,
  ICMP_PORT_UNREACH,
  Icmpv4View,
  IPPROTO_ICMP,
} from "../../stack/wire/icmpv4.ts";
import { ICMPV6_PORT_UNREACH, Icmpv6View, IPPROTO_ICMPV6 } from "../../stack/wire/icmpv6.ts";
import {
  ND_NEIGHBOR_ADVERT,
  ND_NEIGHBOR_SOLICIT,
  ND_OPT_SOURCE_LINKADDR,
  ND_ROUTER_SOLICIT,
  NdpOptionIter,
  NdpView,
} from "../../stack/wire/ndp.ts";
import { IPPROTO_UDP, UdpView } from "../../stack/wire/udp.ts";
import {
  IPPROTO_TCP,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  TcpOptions,
  TcpView,
} from "../../stack/wire/tcp.ts";

const hex = (v: number, digits: number) => "0x" + v.toString(16).padStart(digits, "0");
const bit = (v: boolean) => (v ? "1" : "0");

const eth = new EthernetView();
const arp = new ArpView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const icmp4 = new Icmpv4View();
const icmp6 = new Icmpv6View();
const ndp = new NdpView();
const udp = new UdpView();
const tcp = new TcpView();
const opts = new TcpOptions();
const inner4 = new Ipv4View();
const inner6 = new Ipv6View();

/** Decodes a frame with our views into tshark's field names and formats. */
function decode(b: Uint8Array): Record<string, string> {
  const f: Record<string, string> = {};
  assert.ok(eth.parse(b, 0, b.length), "ethernet");
  f["eth.dst"] = formatMac(b, eth.dstOffset);
  f["eth.src"] = formatMac(b, eth.srcOffset);
  f["eth.type"] = hex(eth.etherType, 4);
  const po = eth.payloadOffset, pn = eth.payloadLen;
  if (eth.etherType === ETH_P_ARP) {
    assert.ok(arp.parse(b, po, pn), "arp");
    f["arp.opcode"] = String(arp.op);
    f["arp.src.hw_mac"] = formatMac(b, arp.shaOffset);
    f["arp.src.proto_ipv4"] = formatIp(b, arp.spaOffset, 4);
    f["arp.dst.hw_mac"] = formatMac(b, arp.thaOffset);
    f["arp.dst.proto_ipv4"] = formatIp(b, arp.tpaOffset, 4);
    return f;
  }
  let proto: number, l4o: number, l4n: number;
  if (eth.etherType === ETH_P_IP) {
    assert.ok(ip4.parse(b, po, pn), "ipv4");
    f["ip.version"] = String(ip4.version);
    f["ip.hdr_len"] = String(ip4.headerLen);
    f["ip.dsfield"] = hex(ip4.tos, 2);
    f["ip.len"] = String(ip4.totalLen);
    f["ip.id"] = hex(ip4.ident, 4);
    f["ip.flags.df"] = bit(ip4.df);
    f["ip.flags.mf"] = bit(ip4.mf);
    f["ip.frag_offset"] = String(ip4.fragOffset / 8);
    f["ip.ttl"] = String(ip4.ttl);
    f["ip.proto"] = String(ip4.protocol);
    f["ip.checksum"] = hex(ip4.checksum, 4);
    f["ip.src"] = formatIp(b, ip4.srcOffset, 4);
    f["ip.dst"] = formatIp(b, ip4.dstOffset, 4);
    if (ip4.fragOffset !== 0) return f; // no upper-layer header in a later fragment
    [proto, l4o, l4n] = [ip4.protocol, ip4.payloadOffset, ip4.payloadLen];
  } else {
    assert.equal(eth.etherType, ETH_P_IPV6);
    assert.ok(ip6.parse(b, po, pn), "ipv6");
    f["ip.version"] = String(ip6.version);
    f["ipv6.plen"] = String(ip6.payloadLen);
    f["ipv6.nxt"] = String(ip6.nextHeader);
    f["ipv6.hlim"] = String(ip6.hopLimit);
    f["ipv6.flow"] = hex(ip6.flowLabel, 6);
    f["ipv6.src"] = formatIp(b, ip6.srcOffset, 16);
    f["ipv6.dst"] = formatIp(b, ip6.dstOffset, 16);
    if (ip6.nextHeader === IPPROTO_HOPOPTS) {
      f["ipv6.hopopts.nxt"] = String(b[ip6.payloadOffset]);
      f["ipv6.hopopts.len"] = String(b[ip6.payloadOffset + 1]);
    }
    if (ip6.fragHeaderOffset >= 0) {
      f["ipv6.fraghdr.nxt"] = String(b[ip6.fragHeaderOffset]);
      f["ipv6.fraghdr.offset"] = String(ip6.fragOffset / 8);
      f["ipv6.fraghdr.more"] = bit(ip6.fragMore);
      f["ipv6.fraghdr.ident"] = hex(ip6.fragIdent, 8);
      if (ip6.fragOffset !== 0) return f;
    }
    [proto, l4o, l4n] = [ip6.protocol, ip6.l4Offset, ip6.l4Len];
  }
  if (proto === IPPROTO_ICMP) {
    assert.ok(icmp4.parse(b, l4o, l4n), "icmp");
    f["icmp.type"] = String(icmp4.type);
    f["icmp.code"] = String(icmp4.code);
    f["icmp.checksum"] = hex(icmp4.checksum, 4);
    if (!icmp4.isError) {
      f["icmp.ident"] = String(icmp4.echoId);
      f["icmp.seq"] = String(icmp4.echoSeq);
    } else if (inner4.parse(b, icmp4.dataOffset, icmp4.dataLen)) {
      [proto, l4o, l4n] = [inner4.protocol, inner4.payloadOffset, inner4.payloadLen];
    }
  } else if (proto === IPPROTO_ICMPV6) {
    assert.ok(icmp6.parse(b, l4o, l4n), "icmpv6");
    f["icmpv6.type"] = String(icmp6.type);
    f["icmpv6.code"] = String(icmp6.code);
    f["icmpv6.checksum"] = hex(icmp6.checksum, 4);
    if (icmp6.type === 128 || icmp6.type === 129) {
      f["icmpv6.echo.identifier"] = hex(icmp6.echoId, 4);
      f["icmpv6.echo.sequence_number"] = String(icmp6.echoSeq);
    }
    if (icmp6.isError && inner6.parse(b, icmp6.dataOffset, icmp6.dataLen)) {
      [proto, l4o, l4n] = [inner6.protocol, inner6.l4Offset, inner6.l4Len];
    }
    if (ndp.parse(b, l4o, l4n)) {
      if (ndp.type === ND_NEIGHBOR_SOLICIT) {
        f["icmpv6.nd.ns.target_address"] = formatIp(b, ndp.targetOffset, 16);
      }
      if (ndp.type === ND_NEIGHBOR_ADVERT) {
        f["icmpv6.nd.na.target_address"] = formatIp(b, ndp.targetOffset, 16);
        f["icmpv6.nd.na.flag.r"] = bit(ndp.router);
        f["icmpv6.nd.na.flag.s"] = bit(ndp.solicited);
        f["icmpv6.nd.na.flag.o"] = bit(ndp.override);
      }
      const it = ndp.options(new NdpOptionIter());
      if (it.next()) f["icmpv6.opt.type"] = String(it.type);
      const ll = ndp.srcLinkAddrOffset >= 0 ? ndp.srcLinkAddrOffset : ndp.tgtLinkAddrOffset;
      if (ll >= 0) f["icmpv6.opt.linkaddr"] = formatMac(b, ll);
    }
  }
  if (proto === IPPROTO_UDP && l4n < u16(b, l4o + 4)) {
    // A first fragment: the header is there, the datagram is not; UdpView rightly refuses.
    assert.ok(!udp.parse(b, l4o, l4n));
    f["udp.srcport"] = String(u16(b, l4o));
    f["udp.dstport"] = String(u16(b, l4o + 2));
    f["udp.length"] = String(u16(b, l4o + 4));
    f["udp.checksum"] = hex(u16(b, l4o + 6), 4);
  } else if (proto === IPPROTO_UDP) {
    assert.ok(udp.parse(b, l4o, l4n), "udp");
    f["udp.srcport"] = String(udp.srcPort);
    f["udp.dstport"] = String(udp.dstPort);
    f["udp.length"] = String(udp.length);
    f["udp.checksum"] = hex(udp.checksum, 4);
  } else if (proto === IPPROTO_TCP) {
    assert.ok(tcp.parse(b, l4o, l4n), "tcp");
    f["tcp.srcport"] = String(tcp.srcPort);
    f["tcp.dstport"] = String(tcp.dstPort);
    f["tcp.seq_raw"] = String(tcp.seq);
    f["tcp.ack_raw"] = String(tcp.ack);
    f["tcp.hdr_len"] = String(tcp.headerLen);
    f["tcp.flags"] = hex(tcp.flags, 4);
    f["tcp.window_size_value"] = String(tcp.window);
    f["tcp.checksum"] = hex(tcp.checksum, 4);
    f["tcp.urgent_pointer"] = String(tcp.urgent);
    f["tcp.len"] = String(tcp.payloadLen);
    assert.ok(tcp.parseOptions(opts), "tcp options");
    if (opts.mss) f["tcp.options.mss_val"] = String(opts.mss);
    if (opts.wscale >= 0) f["tcp.options.wscale.shift"] = String(opts.wscale);
    if (opts.sackPermitted) f["tcp.options.sack_perm"] = "0402";
    if (opts.hasTimestamp) {
      f["tcp.options.timestamp.tsval"] = String(opts.tsVal);
      f["tcp.options.timestamp.tsecr"] = String(opts.tsEcr);
    }
  }
  return f;
}

for (const name of Object.keys(frames) as FrameName[]) {
  Deno.test(`wire: kernel frame ${name} decodes like tshark`, () => {
    const ours = decode(frameBytes(name));
    const theirs = frames[name].tshark as Record<string, string>;
    // Every field tshark reports, we report with the same value, and we invent none.
    assert.deepEqual(ours, theirs);
  });
}

/** Checks every checksum in the frame; returns how many there were. */
function verifyAll(b: Uint8Array): number {
  let n = 0;
  eth.parse(b, 0, b.length);
  if (eth.etherType === ETH_P_IP) {
    assert.ok(ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN));
    if (!ip4.verifyChecksum()) return -1;
    n++;
    if (ip4.isFragment) return n; // the L4 checksum covers the reassembled datagram
    const o = ip4.payloadOffset, len = ip4.payloadLen;
    if (ip4.protocol === IPPROTO_ICMP) {
      icmp4.parse(b, o, len);
      if (!icmp4.verifyChecksum()) return -1;
    } else if (ip4.protocol === IPPROTO_UDP) {
      udp.parse(b, o, len);
      if (!udp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset)) return -1;
    } else if (ip4.protocol === IPPROTO_TCP) {
      tcp.parse(b, o, len);
      if (!tcp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset)) return -1;
    }
    return n + 1;
  }
  if (eth.etherType === ETH_P_IPV6) {
    assert.ok(ip6.parse(b, ETH_HLEN, b.length - ETH_HLEN));
    if (ip6.isFragment) return n;
    const o = ip6.l4Offset, len = ip6.l4Len;
    if (ip6.protocol === IPPROTO_ICMPV6) {
      icmp6.parse(b, o, len);
      if (!icmp6.verifyChecksum(ip6.srcOffset, ip6.dstOffset)) return -1;
    } else if (ip6.protocol === IPPROTO_UDP) {
      udp.parse(b, o, len);
      if (!udp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset)) return -1;
    } else if (ip6.protocol === IPPROTO_TCP) {
      tcp.parse(b, o, len);
      if (!tcp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset)) return -1;
    }
    return n + 1;
  }
  return 0;
}

Deno.test("wire: kernel checksums verify, and any one-bit flip breaks them", () => {
  let frames0 = 0;
  for (const name of Object.keys(frames) as FrameName[]) {
    if (name.endsWith("Partial")) continue;
    const b = frameBytes(name);
    const n = verifyAll(b);
    assert.ok(n >= 0, `${name}: checksum`);
    if (n === 0) continue; // ARP, and later fragments of IPv6
    frames0++;
    // Flip every bit a checksum covers: IPv4 from its header on (padding excluded); IPv6
    // its addresses and the upper layer (hop limit, flow label, extension headers are not
    // covered by any checksum).
    eth.parse(b, 0, b.length);
    let ranges: [number, number][];
    if (eth.etherType === ETH_P_IP) {
      ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN);
      // A fragment's L4 checksum covers the reassembled datagram: only the header here.
      ranges = [[ETH_HLEN, ETH_HLEN + (ip4.isFragment ? ip4.headerLen : ip4.totalLen)]];
    } else {
      ip6.parse(b, ETH_HLEN, b.length - ETH_HLEN);
      ranges = [[ip6.srcOffset, ip6.srcOffset + 32], [ip6.l4Offset, ip6.l4Offset + ip6.l4Len]];
    }
    for (const [from, end] of ranges) {
      for (let i = from; i < end; i++) {
        for (let k = 0; k < 8; k++) {
          const c = frameBytes(name);
          c[i] ^= 1 << k;
          const r = (() => {
            try {
              return verifyAll(c);
            } catch {
              return -2; // a flip that breaks a length field is also caught, by parse
            }
          })();
          assert.ok(r < 0, `${name}: flip of byte ${i} bit ${k} went unnoticed`);
        }
      }
    }
  }
  assert.ok(frames0 >= 20);
});

Deno.test("wire: partial checksums from checksum offload equal our pseudo-header sums", () => {
  for (const name of ["udp4Partial", "udp6Partial"] as const) {
    const b = frameBytes(name);
    eth.parse(b, 0, b.length);
    let ps: number, o: number;
    if (eth.etherType === ETH_P_IP) {
      ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN);
      udp.parse(b, ip4.payloadOffset, ip4.payloadLen);
      ps = pseudoSum(b, ip4.srcOffset, ip4.dstOffset, 4, IPPROTO_UDP, udp.length);
      o = ip4.payloadOffset;
    } else {
      ip6.parse(b, ETH_HLEN, b.length - ETH_HLEN);
      udp.parse(b, ip6.l4Offset, ip6.l4Len);
      ps = pseudoSum(b, ip6.srcOffset, ip6.dstOffset, 16, IPPROTO_UDP, udp.length);
      o = ip6.l4Offset;
    }
    const len = udp.length;
    const verify = () =>
      eth.etherType === ETH_P_IP
        ? udp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset)
        : udp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset);
    // Linux stores ~csum_tcpudp_magic(...) = the folded, uncomplemented pseudo-header sum.
    assert.equal(udp.checksum, fold(ps), name);
    assert.ok(!verify(), `${name} is really partial`);
    // Completing it like a NIC (sum from the UDP header on) gives a checksum that verifies.
    completePartial(b, o, o + len, o + 6);
    assert.ok(verify(), name);
  }
});

Deno.test("wire: kernel TCP handshake: options, unsigned seq/ack, flags", () => {
  for (const v of ["4", "6"] as const) {
    const syn = frameBytes(`tcp${v}Syn`), synAck = frameBytes(`tcp${v}SynAck`);
    const data = frameBytes(`tcp${v}Data`);
    const l4 = (b: Uint8Array) => {
      if (v === "4") {
        assert.ok(ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN));
        assert.ok(tcp.parse(b, ip4.payloadOffset, ip4.payloadLen));
      } else {
        assert.ok(ip6.parse(b, ETH_HLEN, b.length - ETH_HLEN));
        assert.equal(ip6.protocol, IPPROTO_TCP);
        assert.ok(tcp.parse(b, ip6.l4Offset, ip6.l4Len));
      }
      assert.ok(tcp.parseOptions(opts));
    };
    l4(syn);
    assert.equal(tcp.flags, TCP_SYN);
    assert.equal(opts.mss, v === "4" ? 1460 : 1440);
    assert.ok(opts.sackPermitted);
    assert.ok(opts.wscale >= 0 && opts.wscale <= 14);
    assert.ok(opts.hasTimestamp);
    assert.equal(opts.tsEcr, 0);
    assert.equal(tcp.optionsLen, 20);
    const synSeq = tcp.seq, synTs = opts.tsVal;
    assert.ok(synSeq >= 0 && synSeq <= 0xffffffff);
    l4(synAck);
    assert.equal(tcp.flags, TCP_SYN | TCP_ACK);
    assert.equal(tcp.ack, (synSeq + 1) >>> 0);
    assert.equal(opts.tsEcr, synTs);
    const synAckSeq = tcp.seq;
    l4(data);
    assert.equal(tcp.seq, (synSeq + 1) >>> 0);
    assert.equal(tcp.ack, (synAckSeq + 1) >>> 0);
    assert.equal(opts.mss, 0, "no MSS on data");
    assert.equal(opts.wscale, -1);
    assert.ok(opts.hasTimestamp);
    assert.equal(tcp.optionsLen, 12);
    const text = new TextDecoder().decode(
      data.subarray(tcp.payloadOffset, tcp.payloadOffset + tcp.payloadLen),
    );
    assert.equal(text, `hello tcp v${v}\n`);
  }
  const rst = frameBytes("tcp4Rst");
  ip4.parse(rst, ETH_HLEN, rst.length - ETH_HLEN);
  // The RST frame is 54 bytes: no Ethernet padding in the capture, but the IP length rules.
  assert.ok(tcp.parse(rst, ip4.payloadOffset, ip4.payloadLen));
  assert.equal(tcp.flags, TCP_RST | TCP_ACK);
  assert.equal(tcp.window, 0);
  assert.equal(tcp.payloadLen, 0);
});

Deno.test("wire: kernel IPv4 fragments", () => {
  const parts = (["ip4Frag0", "ip4Frag1", "ip4FragLast"] as const).map((n) => {
    const b = frameBytes(n);
    assert.ok(ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN));
    assert.ok(ip4.isFragment);
    return { off: ip4.fragOffset, len: ip4.payloadLen, mf: ip4.mf, id: ip4.ident, df: ip4.df };
  });
  assert.deepEqual(parts.map((p) => p.off), [0, 1480, 2960]);
  assert.deepEqual(parts.map((p) => p.mf), [true, true, false]);
  assert.ok(parts.every((p) => p.id === parts[0].id && !p.df));
  // The pieces tile the 3008-byte UDP datagram.
  assert.equal(parts.reduce((a, p) => a + p.len, 0), 3008);
  const b = frameBytes("ip4Frag0");
  ip4.parse(b, ETH_HLEN, b.length - ETH_HLEN);
  assert.ok(udp.parse(b, ip4.payloadOffset, ip4.payloadLen) === false, "length 3008 > fragment");
  assert.equal(u16(b, ip4.payloadOffset + 4), 3008);
  const ok = frameBytes("udp4");
  ip4.parse(ok, ETH_HLEN, ok.length - ETH_HLEN);
  assert.ok(!ip4.isFragment && ip4.df);
});

Deno.test("wire: kernel IPv6 fragments and the hop-by-hop walk", () => {
  const f0 = frameBytes("ip6Frag0");
  assert.ok(ip6.parse(f0, ETH_HLEN, f0.length - ETH_HLEN));
  assert.equal(ip6.nextHeader, IPPROTO_FRAGMENT);
  assert.equal(ip6.fragHeaderOffset, ETH_HLEN + 40);
  assert.ok(ip6.isFragment && ip6.fragMore && ip6.fragOffset === 0);
  assert.equal(ip6.protocol, IPPROTO_UDP);
  assert.equal(ip6.l4Offset, ETH_HLEN + 48);
  assert.equal(ip6.l4Len, 1448);
  assert.equal(u16(f0, ip6.l4Offset + 2), 7003, "UDP header right after the fragment header");
  const id = ip6.fragIdent;
  const fl = frameBytes("ip6FragLast");
  assert.ok(ip6.parse(fl, ETH_HLEN, fl.length - ETH_HLEN));
  assert.ok(ip6.isFragment && !ip6.fragMore);
  assert.equal(ip6.fragOffset, 2896);
  assert.equal(ip6.fragIdent, id);
  assert.equal(ip6.protocol, IPPROTO_UDP);
  assert.equal(ip6.l4Offset, ETH_HLEN + 48, "later fragment: data right after the header");
  assert.equal(ip6.l4Len, 3008 - 2896);

  const m = frameBytes("mldv2Report");
  assert.ok(ip6.parse(m, ETH_HLEN, m.length - ETH_HLEN));
  assert.equal(ip6.nextHeader, IPPROTO_HOPOPTS);
  assert.equal(ip6.extCount, 1);
  assert.equal(ip6.protocol, IPPROTO_ICMPV6);
  assert.equal(ip6.l4Offset, ETH_HLEN + 48);
  assert.ok(!ip6.isFragment);
  assert.ok(icmp6.parse(m, ip6.l4Offset, ip6.l4Len));
  assert.equal(icmp6.type, 143);
  assert.ok(icmp6.verifyChecksum(ip6.srcOffset, ip6.dstOffset));
});

Deno.test("wire: kernel ARP and NDP", () => {
  const req = frameBytes("arpRequest");
  assert.ok(arp.parse(req, ETH_HLEN, req.length - ETH_HLEN));
  assert.equal(arp.op, ARP_REQUEST);
  const rep = frameBytes("arpReply");
  assert.ok(arp.parse(rep, ETH_HLEN, rep.length - ETH_HLEN));
  assert.equal(arp.op, ARP_REPLY);
  assert.equal(formatMac(rep, arp.shaOffset), "02:00:00:00:00:0b");

  const ndpOf = (name: FrameName) => {
    const b = frameBytes(name);
    assert.ok(ip6.parse(b, ETH_HLEN, b.length - ETH_HLEN));
    assert.equal(ip6.hopLimit, 255);
    assert.ok(ndp.parse(b, ip6.l4Offset, ip6.l4Len), name);
    return b;
  };
  let b = ndpOf("ns");
  assert.equal(ndp.type, ND_NEIGHBOR_SOLICIT);
  assert.equal(formatIp(b, ndp.targetOffset, 16), "2001:db8::2");
  assert.equal(formatMac(b, ndp.srcLinkAddrOffset), "02:00:00:00:00:0a");
  assert.equal(ndp.tgtLinkAddrOffset, -1);
  assert.equal(formatIp(b, ip6.dstOffset, 16), "ff02::1:ff00:2");
  b = ndpOf("nsDad");
  assert.equal(formatIp(b, ip6.srcOffset, 16), "::");
  assert.equal(ndp.srcLinkAddrOffset, -1, "DAD NS carries no source link-layer option");
  b = ndpOf("na");
  assert.equal(ndp.type, ND_NEIGHBOR_ADVERT);
  assert.ok(ndp.solicited && ndp.override && !ndp.router);
  assert.equal(formatMac(b, ndp.tgtLinkAddrOffset), "02:00:00:00:00:0b");
  b = ndpOf("rs");
  assert.equal(ndp.type, ND_ROUTER_SOLICIT);
  const it = ndp.options(new NdpOptionIter());
  assert.ok(it.next());
  assert.equal(it.type, ND_OPT_SOURCE_LINKADDR);
  assert.equal(it.len, 8);
  assert.equal(
    formatMac(b, it.linkAddrOffset),
    formatMac(b, eth.parse(b, 0, b.length) ? eth.srcOffset : 0),
  );
  assert.ok(!it.next());
  assert.ok(!it.error);
});

Deno.test("wire: kernel ICMP errors quote the offending datagram", () => {
  const b4 = frameBytes("icmp4PortUnreachable");
  ip4.parse(b4, ETH_HLEN, b4.length - ETH_HLEN);
  assert.ok(icmp4.parse(b4, ip4.payloadOffset, ip4.payloadLen));
  assert.equal(icmp4.type, ICMP_DEST_UNREACH);
  assert.equal(icmp4.code, ICMP_PORT_UNREACH);
  assert.ok(icmp4.isError);
  assert.ok(inner4.parse(b4, icmp4.dataOffset, icmp4.dataLen));
  assert.equal(formatIp(b4, inner4.dstOffset, 4), "192.0.2.2");
  assert.ok(udp.parse(b4, inner4.payloadOffset, inner4.payloadLen));
  assert.equal(udp.dstPort, 7009);

  const b6 = frameBytes("icmp6PortUnreachable");
  ip6.parse(b6, ETH_HLEN, b6.length - ETH_HLEN);
  assert.ok(icmp6.parse(b6, ip6.l4Offset, ip6.l4Len));
  assert.equal(icmp6.code, ICMPV6_PORT_UNREACH);
  assert.ok(icmp6.isError);
  assert.ok(inner6.parse(b6, icmp6.dataOffset, icmp6.dataLen));
  assert.equal(inner6.protocol, IPPROTO_UDP);
  assert.ok(udp.parse(b6, inner6.l4Offset, inner6.l4Len));
  assert.equal(udp.srcPort, 40009);
});
