// Round trip: rebuild the kernel's frames with the stack/wire emitters from the values our
// views read out of them, and require the exact same bytes, checksums included (so the
// kernel's checksums equal ours, and our option layout is Linux's).

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { completePartial, finish, fold, pseudoSum2, sum } from "../../stack/wire/checksum.ts";
import { frameBytes, type FrameName } from "../fixtures/frames.ts";
import { copyBytes, u16 } from "../../stack/wire/bytes.ts";
import { emitEthernet, ETH_HLEN, EthernetView } from "../../stack/wire/ethernet.ts";
import { ArpView, emitArp } from "../../stack/wire/arp.ts";
import {
  emitIpv4,
  IPV4_DF,
  IPV4_HLEN,
  IPV4_MF,
  Ipv4View,
  setIpv4Checksum,
} from "../../stack/wire/ipv4.ts";
import {
  emitIpv6,
  emitIpv6Fragment,
  IPPROTO_FRAGMENT,
  IPV6_HLEN,
  Ipv6View,
} from "../../stack/wire/ipv6.ts";
import {
  emitIcmpv4Echo,
  emitIcmpv4EchoReply,
  emitIcmpv4Unreachable,
  ICMP_ECHO_REQUEST,
  ICMP_PORT_UNREACH,
  Icmpv4View,
  IPPROTO_ICMP,
} from "../../stack/wire/icmpv4.ts";
import {
  emitIcmpv6Echo,
  emitIcmpv6Unreachable,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PORT_UNREACH,
  Icmpv6View,
  IPPROTO_ICMPV6,
  setIcmpv6Checksum,
} from "../../stack/wire/icmpv6.ts";
import {
  emitNa,
  emitNs,
  emitRs,
  ND_OPT_NONCE,
  NdpOptionIter,
  NdpView,
} from "../../stack/wire/ndp.ts";
import {
  emitUdp,
  IPPROTO_UDP,
  setUdpChecksum,
  setUdpPartialChecksum,
  UdpView,
} from "../../stack/wire/udp.ts";
import {
  emitTcp,
  IPPROTO_TCP,
  setTcpChecksum,
  setTcpPartialChecksum,
  TCP_HLEN,
  TcpOptions,
  TcpView,
  writeTcpOptions,
  writeTcpTimestamp,
} from "../../stack/wire/tcp.ts";

const eth = new EthernetView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const tcp = new TcpView();
const udp = new UdpView();
const opts = new TcpOptions();

/** Kernel frame plus a scratch TX buffer of the same size, non-zero so stale bytes show. */
function setup(name: FrameName) {
  const k = frameBytes(name);
  const out = new Uint8Array(k.length).fill(0xa5);
  assert.ok(eth.parse(k, 0, k.length));
  const dst = k.slice(0, 6), src = k.slice(6, 12);
  emitEthernet(out, 0, dst, src, eth.etherType);
  return { k, out };
}

/** Writes the IP header of `k` again into `out` with emitIpv4/emitIpv6. */
function ipHeader(
  k: Uint8Array,
  out: Uint8Array,
): { src: Uint8Array; dst: Uint8Array; l4: number; l4n: number } {
  eth.parse(k, 0, k.length);
  if (eth.etherType === 0x0800) {
    assert.ok(ip4.parse(k, ETH_HLEN, k.length - ETH_HLEN));
    const src = k.slice(ip4.srcOffset, ip4.srcOffset + 4),
      dst = k.slice(ip4.dstOffset, ip4.dstOffset + 4);
    const flags = (ip4.df ? IPV4_DF : 0) | (ip4.mf ? IPV4_MF : 0) | (ip4.fragOffset >> 3);
    const n = emitIpv4(
      out,
      ETH_HLEN,
      ip4.tos,
      ip4.totalLen,
      ip4.ident,
      flags,
      ip4.ttl,
      ip4.protocol,
      src,
      dst,
    );
    assert.equal(n, IPV4_HLEN);
    return { src, dst, l4: ip4.payloadOffset, l4n: ip4.payloadLen };
  }
  assert.ok(ip6.parse(k, ETH_HLEN, k.length - ETH_HLEN));
  const src = k.slice(ip6.srcOffset, ip6.srcOffset + 16),
    dst = k.slice(ip6.dstOffset, ip6.dstOffset + 16);
  emitIpv6(
    out,
    ETH_HLEN,
    ip6.trafficClass,
    ip6.flowLabel,
    ip6.payloadLen,
    ip6.nextHeader,
    ip6.hopLimit,
    src,
    dst,
  );
  return { src, dst, l4: ip6.l4Offset, l4n: ip6.l4Len };
}

function same(out: Uint8Array, k: Uint8Array, what: string) {
  assert.equal(Buffer.from(out).toString("hex"), Buffer.from(k).toString("hex"), what);
}

Deno.test("wire emit: ARP request and reply", () => {
  for (const name of ["arpRequest", "arpReply"] as const) {
    const { k, out } = setup(name);
    const a = new ArpView();
    assert.ok(a.parse(k, ETH_HLEN, k.length - ETH_HLEN));
    const n = emitArp(
      out,
      ETH_HLEN,
      a.op,
      k.slice(a.shaOffset, a.shaOffset + 6),
      k.slice(a.spaOffset, a.spaOffset + 4),
      k.slice(a.thaOffset, a.thaOffset + 6),
      k.slice(a.tpaOffset, a.tpaOffset + 4),
    );
    assert.equal(ETH_HLEN + n, k.length);
    same(out, k, name);
  }
});

Deno.test("wire emit: IPv4 headers of all IPv4 frames, fragments included", () => {
  for (
    const name of [
      "icmp4EchoRequest",
      "icmp4EchoReply",
      "udp4",
      "tcp4Syn",
      "tcp4Rst",
      "icmp4PortUnreachable",
      "ip4Frag0",
      "ip4Frag1",
      "ip4FragLast",
    ] as const
  ) {
    const { k, out } = setup(name);
    ipHeader(k, out);
    same(out.subarray(0, ETH_HLEN + IPV4_HLEN), k.subarray(0, ETH_HLEN + IPV4_HLEN), name);
    // setIpv4Checksum recomputes the same value after a field change and back.
    out[ETH_HLEN + 8]--;
    setIpv4Checksum(out, ETH_HLEN);
    assert.ok(ip4.parse(out, ETH_HLEN, out.length - ETH_HLEN) && ip4.verifyChecksum());
    out[ETH_HLEN + 8]++;
    setIpv4Checksum(out, ETH_HLEN);
    same(out.subarray(0, ETH_HLEN + IPV4_HLEN), k.subarray(0, ETH_HLEN + IPV4_HLEN), name);
  }
});

Deno.test("wire emit: IPv6 header and Fragment header", () => {
  for (const name of ["ip6Frag0", "ip6FragLast"] as const) {
    const { k, out } = setup(name);
    ipHeader(k, out);
    const fo = ip6.fragHeaderOffset;
    assert.equal(ip6.nextHeader, IPPROTO_FRAGMENT);
    emitIpv6Fragment(out, fo, k[fo], ip6.fragOffset, ip6.fragMore, ip6.fragIdent);
    same(out.subarray(0, fo + 8), k.subarray(0, fo + 8), name);
  }
});

Deno.test("wire emit: ICMP echo request, and the reply a responder builds from it", () => {
  const { k, out } = setup("icmp4EchoRequest");
  const { l4, l4n } = ipHeader(k, out);
  const icmp = new Icmpv4View();
  assert.ok(icmp.parse(k, l4, l4n));
  copyBytes(out, l4 + 8, k, icmp.dataOffset, icmp.dataLen);
  emitIcmpv4Echo(out, l4, ICMP_ECHO_REQUEST, icmp.echoId, icmp.echoSeq, icmp.dataLen);
  same(out, k, "echo request");

  // The reply: the kernel's reply frame must equal what we build from the request.
  const reply = setup("icmp4EchoReply");
  const { l4: rl4 } = ipHeader(reply.k, reply.out);
  copyBytes(reply.out, rl4 + 8, k, icmp.dataOffset, icmp.dataLen);
  emitIcmpv4EchoReply(reply.out, rl4, icmp.echoId, icmp.echoSeq, icmp.dataLen);
  same(reply.out, reply.k, "echo reply");
});

Deno.test("wire emit: ICMPv6 echo request and reply", () => {
  for (
    const [name, type] of [["icmp6EchoRequest", ICMPV6_ECHO_REQUEST], [
      "icmp6EchoReply",
      ICMPV6_ECHO_REPLY,
    ]] as const
  ) {
    const { k, out } = setup(name);
    const { src, dst, l4, l4n } = ipHeader(k, out);
    const icmp = new Icmpv6View();
    assert.ok(icmp.parse(k, l4, l4n));
    copyBytes(out, l4 + 8, k, icmp.dataOffset, icmp.dataLen);
    assert.equal(
      emitIcmpv6Echo(out, l4, type, icmp.echoId, icmp.echoSeq, icmp.dataLen, src, dst),
      l4n,
    );
    same(out, k, name);
  }
});

Deno.test("wire emit: ICMP port unreachable quoting the kernel's datagram", () => {
  // v4: Linux quotes the whole datagram (up to a 576-byte error): maxData large.
  const { k, out } = setup("icmp4PortUnreachable");
  const { l4, l4n } = ipHeader(k, out);
  const icmp = new Icmpv4View();
  icmp.parse(k, l4, l4n);
  const orig = k.slice(icmp.dataOffset, icmp.dataOffset + icmp.dataLen);
  const n = emitIcmpv4Unreachable(
    out,
    l4,
    ICMP_PORT_UNREACH,
    orig,
    0,
    orig.length,
    0,
    576 - 28 - 20,
  );
  assert.equal(n, l4n);
  same(out, k, "icmp4 unreachable");
  // The RFC 792 minimum: header + 8 bytes, and a checksum that verifies.
  const small = new Uint8Array(100);
  const m = emitIcmpv4Unreachable(small, 0, ICMP_PORT_UNREACH, orig, 0, orig.length);
  assert.equal(m, 8 + 20 + 8);
  assert.ok(icmp.parse(small, 0, m) && icmp.verifyChecksum());
  assert.equal(icmp.type, 3);
  assert.equal(u16(small, 8 + 20 + 2), 7009, "quoted UDP destination port");
  assert.equal(
    emitIcmpv4Unreachable(small, 0, 3, new Uint8Array(10), 0, 10),
    0,
    "no IP header to quote",
  );

  // v6: everything up to the minimum MTU is quoted, as Linux does.
  const s6 = setup("icmp6PortUnreachable");
  const h6 = ipHeader(s6.k, s6.out);
  const icmp6 = new Icmpv6View();
  icmp6.parse(s6.k, h6.l4, h6.l4n);
  const orig6 = s6.k.slice(icmp6.dataOffset, icmp6.dataOffset + icmp6.dataLen);
  emitIcmpv6Unreachable(s6.out, h6.l4, ICMPV6_PORT_UNREACH, h6.src, h6.dst, orig6, 0, orig6.length);
  same(s6.out, s6.k, "icmp6 unreachable");
  // A big invoking packet is cut so the error fits in 1280 bytes.
  const big = new Uint8Array(3000), buf = new Uint8Array(1300);
  assert.equal(emitIcmpv6Unreachable(buf, 0, 4, h6.src, h6.dst, big, 0, big.length), 1280 - 40);
});

Deno.test("wire emit: UDP over IPv4 and IPv6, full and partial checksums", () => {
  for (const name of ["udp4", "udp6", "udp4Partial", "udp6Partial"] as const) {
    const { k, out } = setup(name);
    const { src, dst, l4, l4n } = ipHeader(k, out);
    assert.ok(udp.parse(k, l4, l4n));
    copyBytes(out, l4 + 8, k, udp.payloadOffset, udp.payloadLen);
    assert.equal(emitUdp(out, l4, udp.srcPort, udp.dstPort, udp.length), 8);
    if (name.endsWith("Partial")) setUdpPartialChecksum(out, l4, udp.length, src, dst);
    else setUdpChecksum(out, l4, udp.length, src, dst);
    same(out, k, name);
  }
  // RFC 768: a computed zero goes out as 0xffff. Find a payload word making the sum zero.
  const b = new Uint8Array(10);
  const src = new Uint8Array([192, 0, 2, 1]), dst = new Uint8Array([192, 0, 2, 2]);
  emitUdp(b, 0, 1, 2, 10);
  setUdpChecksum(b, 0, 10, src, dst);
  const c = u16(b, 6);
  b[8] = c >> 8;
  b[9] = c & 0xff; // adding the checksum value as data makes the new sum all ones
  setUdpChecksum(b, 0, 10, src, dst);
  assert.equal(u16(b, 6), 0xffff);
  assert.equal(finish(sum(b, 0, 10, pseudoSum2(src, 0, dst, 0, 4, IPPROTO_UDP, 10))), 0);
});

Deno.test("wire emit: TCP SYN, SYN-ACK, data and RST like the kernel's", () => {
  for (
    const name of [
      "tcp4Syn",
      "tcp4SynAck",
      "tcp4Data",
      "tcp4Fin",
      "tcp6Syn",
      "tcp6SynAck",
      "tcp6Data",
      "tcp4Rst",
    ] as const
  ) {
    const { k, out } = setup(name);
    const { src, dst, l4, l4n } = ipHeader(k, out);
    assert.ok(tcp.parse(k, l4, l4n));
    assert.ok(tcp.parseOptions(opts));
    let ol: number;
    if (opts.mss) {
      ol = writeTcpOptions(out, l4 + TCP_HLEN, opts); // the parsed options, written back
    } else if (opts.hasTimestamp) {
      ol = writeTcpTimestamp(out, l4 + TCP_HLEN, opts.tsVal, opts.tsEcr);
    } else {
      ol = 0;
    }
    assert.equal(ol, tcp.optionsLen, name);
    const hl = emitTcp(
      out,
      l4,
      tcp.srcPort,
      tcp.dstPort,
      tcp.seq,
      tcp.ack,
      tcp.flags,
      tcp.window,
      ol,
    );
    assert.equal(hl, tcp.headerLen);
    copyBytes(out, l4 + hl, k, tcp.payloadOffset, tcp.payloadLen);
    setTcpChecksum(out, l4, l4n, src, dst);
    same(out, k, name);
    // The partial checksum is the folded pseudo-header sum; completing it like a NIC
    // gives the kernel's bytes again.
    setTcpPartialChecksum(out, l4, l4n, src, dst);
    assert.equal(
      u16(out, l4 + 16),
      fold(pseudoSum2(src, 0, dst, 0, src.length === 4 ? 4 : 16, IPPROTO_TCP, l4n)),
    );
    completePartial(out, l4, l4 + l4n, l4 + 16);
    same(out, k, name + " completed");
  }
});

Deno.test("wire emit: NS, DAD NS, NA and RS like the kernel's", () => {
  const ndp = new NdpView();
  for (const name of ["ns", "nsDad", "na", "rs"] as const) {
    const { k, out } = setup(name);
    const { src, dst, l4, l4n } = ipHeader(k, out);
    assert.ok(ndp.parse(k, l4, l4n));
    const sll = ndp.srcLinkAddrOffset >= 0
      ? k.slice(ndp.srcLinkAddrOffset, ndp.srcLinkAddrOffset + 6)
      : null;
    const tll = ndp.tgtLinkAddrOffset >= 0
      ? k.slice(ndp.tgtLinkAddrOffset, ndp.tgtLinkAddrOffset + 6)
      : null;
    const target = k.slice(ndp.targetOffset, ndp.targetOffset + 16);
    let n: number;
    if (name === "rs") n = emitRs(out, l4, sll, src, dst);
    else if (name === "na") n = emitNa(out, l4, ndp.naFlags, target, tll, src, dst);
    else n = emitNs(out, l4, target, sll, src, dst);
    if (name === "nsDad") {
      // Linux adds a DAD nonce option (RFC 7527) that we never send: append it, re-sum.
      const it = ndp.options(new NdpOptionIter());
      assert.ok(it.next() && it.type === ND_OPT_NONCE && !it.next());
      copyBytes(out, l4 + n, k, ndp.optionsOffset, 8);
      n += 8;
      setIcmpv6Checksum(out, l4, n, src, dst);
    }
    assert.equal(n, l4n);
    same(out, k, name);
  }
});

Deno.test("wire emit: protocol numbers", () => {
  assert.deepEqual([IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPV6_HLEN], [
    1,
    6,
    17,
    58,
    40,
  ]);
});
