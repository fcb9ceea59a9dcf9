// Router advertisements and ND options: what slirpd sends as the guest's router, parsed back,
// plus the RFC 4861 option rules (zero length invalidates the packet).

import assert from "node:assert/strict";
import { formatIp, parseIp } from "../../stack/wire/bytes.ts";
import { Icmpv6View } from "../../stack/wire/icmpv6.ts";
import {
  emitNa,
  emitRa,
  emitRaHeader,
  ND_NA_FLAG_OVERRIDE,
  ND_NA_FLAG_ROUTER,
  ND_NA_FLAG_SOLICITED,
  ND_OPT_MTU,
  ND_OPT_PI_FLAG_AUTO,
  ND_OPT_PI_FLAG_ONLINK,
  ND_OPT_PREFIX_INFORMATION,
  ND_OPT_RDNSS,
  ND_OPT_SOURCE_LINKADDR,
  ND_RA_FLAG_OTHER,
  ND_ROUTER_ADVERT,
  NdpOptionIter,
  NdpView,
  writeLinkAddrOption,
  writeMtuOption,
  writePrefixOption,
  writeRdnssOption,
} from "../../stack/wire/ndp.ts";

const gw = parseIp("fe80::1")!;
const allNodes = parseIp("ff02::1")!;
const mac = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);

Deno.test("ndp: emitRa with every option parses back", () => {
  const b = new Uint8Array(256);
  const dns = new Uint8Array(32);
  dns.set(parseIp("fd00::3")!, 0);
  dns.set(parseIp("fd00::4")!, 16);
  const n = emitRa(
    b,
    0,
    {
      routerLifetime: 1800,
      flags: ND_RA_FLAG_OTHER,
      srcMac: mac,
      mtu: 1500,
      prefix: parseIp("fd00::")!,
      prefixLen: 64,
      rdnss: dns,
      rdnssLifetime: 3600,
    },
    gw,
    allNodes,
  );
  assert.equal(n, 16 + 8 + 8 + 32 + 8 + 32);
  const icmp = new Icmpv6View();
  assert.ok(icmp.parse(b, 0, n));
  // The checksum covers the pseudo header: put the addresses where an IPv6 header has them.
  const pkt = new Uint8Array(40 + n);
  pkt.set(gw, 8);
  pkt.set(allNodes, 24);
  pkt.set(b.subarray(0, n), 40);
  assert.ok(icmp.parse(pkt, 40, n) && icmp.verifyChecksum(8, 24));

  const v = new NdpView();
  assert.ok(v.parse(b, 0, n));
  assert.equal(v.type, ND_ROUTER_ADVERT);
  assert.equal(v.curHopLimit, 64);
  assert.equal(v.raFlags, ND_RA_FLAG_OTHER);
  assert.equal(v.routerLifetime, 1800);
  assert.equal(v.reachableTime, 0);
  assert.equal(v.retransTimer, 0);
  assert.equal(v.mtuOption, 1500);
  assert.deepEqual([...b.subarray(v.srcLinkAddrOffset, v.srcLinkAddrOffset + 6)], [...mac]);
  const it = v.options(new NdpOptionIter());
  const seen: number[] = [];
  while (it.next()) {
    assert.ok(it.wellFormed);
    seen.push(it.type);
    if (it.type === ND_OPT_PREFIX_INFORMATION) {
      assert.equal(it.prefixLen, 64);
      assert.equal(it.prefixFlags, ND_OPT_PI_FLAG_ONLINK | ND_OPT_PI_FLAG_AUTO);
      assert.equal(it.validLifetime, 86400);
      assert.equal(it.preferredLifetime, 14400);
      assert.equal(formatIp(b, it.prefixOffset, 16), "fd00::");
    } else if (it.type === ND_OPT_RDNSS) {
      assert.equal(it.rdnssLifetime, 3600);
      assert.equal(it.rdnssCount, 2);
      assert.equal(formatIp(b, it.rdnssAddrOffset(0), 16), "fd00::3");
      assert.equal(formatIp(b, it.rdnssAddrOffset(1), 16), "fd00::4");
    } else if (it.type === ND_OPT_MTU) {
      assert.equal(it.mtu, 1500);
    }
  }
  assert.ok(!it.error);
  assert.deepEqual(seen, [
    ND_OPT_SOURCE_LINKADDR,
    ND_OPT_MTU,
    ND_OPT_PREFIX_INFORMATION,
    ND_OPT_RDNSS,
  ]);
});

Deno.test("ndp: a zero-length or overrunning option invalidates the message", () => {
  const b = new Uint8Array(128);
  let n = emitRaHeader(b, 0, 64, 0, 600, 0, 0);
  n += writeLinkAddrOption(b, n, ND_OPT_SOURCE_LINKADDR, mac);
  const v = new NdpView();
  assert.ok(v.parse(b, 0, n));
  // RFC 4861 §4.6: an option with length 0 -> discard the packet.
  b[n] = ND_OPT_MTU;
  b[n + 1] = 0;
  assert.ok(!v.parse(b, 0, n + 8));
  const it = new NdpOptionIter();
  it.reset(b, 16, n + 8 - 16);
  assert.ok(it.next());
  assert.ok(!it.next());
  assert.ok(it.error);
  assert.ok(!it.next(), "stays stopped");
  // Length running past the message.
  writeMtuOption(b, n, 1400);
  assert.ok(v.parse(b, 0, n + 8));
  assert.equal(v.mtuOption, 1400);
  b[n + 1] = 2;
  assert.ok(!v.parse(b, 0, n + 8));
  // A lone type byte with no length.
  assert.ok(!v.parse(b, 0, n + 1));
  // Options of a known type but the wrong size are skipped, not fatal (and not used).
  b[n + 1] = 2; // MTU option 16 bytes long
  assert.ok(v.parse(b, 0, n + 16));
  assert.equal(v.mtuOption, -1);
});

Deno.test("ndp: message rules: type, code 0, minimum lengths", () => {
  const b = new Uint8Array(64);
  const src = parseIp("fe80::2")!, dst = parseIp("fe80::1")!;
  const target = parseIp("2001:db8::5")!;
  const n = emitNa(
    b,
    0,
    ND_NA_FLAG_ROUTER | ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE,
    target,
    mac,
    src,
    dst,
  );
  assert.equal(n, 32);
  const v = new NdpView();
  assert.ok(v.parse(b, 0, n));
  assert.ok(v.router && v.solicited && v.override);
  assert.equal(formatIp(b, v.targetOffset, 16), "2001:db8::5");
  assert.ok(!v.parse(b, 0, 23), "NA shorter than 24 bytes");
  b[1] = 1;
  assert.ok(!v.parse(b, 0, n), "code must be 0");
  b[1] = 0;
  b[0] = 128;
  assert.ok(!v.parse(b, 0, n), "echo request is not ND");
});

Deno.test("ndp: option writers' sizes", () => {
  const b = new Uint8Array(128);
  assert.equal(writePrefixOption(b, 0, new Uint8Array(16), 64, 0xc0, 1, 2), 32);
  assert.equal(b[1], 4);
  assert.equal(writeRdnssOption(b, 0, 10, new Uint8Array(48)), 56);
  assert.equal(b[1], 7);
  assert.equal(writeMtuOption(b, 0, 9000), 8);
});
