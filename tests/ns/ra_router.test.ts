// IPv6 router advertisements: what slirpd answers to router solicitations and sends on its
// own (frames checked byte by byte), and a real guest kernel configuring itself from them by
// SLAAC: an fd00::/64 address, a default route via slirpd's link-local address, the MTU.

import assert from "node:assert/strict";
import { Stack } from "../../stack/mod.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { Poller } from "../../ffi/poller.ts";
import { formatIp, formatMac, u16 } from "../../stack/wire/bytes.ts";
import { finish, pseudoSum, sum } from "../../stack/wire/checksum.ts";
import { emitRs, NdpOptionIter, NdpView } from "../../stack/wire/ndp.ts";
import type { ServicesOptions } from "../../stack/services/mod.ts";
import { eventually, makeNetns, needs, skip, startSlirpd } from "../support/harness.ts";

const GUEST_MAC = new Uint8Array([0x02, 0, 0, 0, 0, 0x42]);
const GUEST_LL = new Uint8Array([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]);
const UNSPEC = new Uint8Array(16);
const ALL_ROUTERS = new Uint8Array([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

class CaptureTap {
  readonly frames: Uint8Array[] = [];
  readonly vnetLen = 0 as const;
  readonly offloaded = false;
  read(): number {
    return 0;
  }
  write(b: Uint8Array, len: number): boolean {
    this.frames.push(b.slice(0, len));
    return true;
  }
}

function makeStack(services: ServicesOptions) {
  const tap = new CaptureTap();
  const poller = new Poller();
  const stack = new Stack({
    plan: defaultNetPlan(),
    mtu: 1500,
    tap,
    poller,
    policy: () => false,
    log: () => {},
    quiet: true,
    connectTimeoutMs: 1000,
    services,
  });
  return {
    tap,
    stack,
    [Symbol.dispose]() {
      stack.close();
      poller.close();
    },
  };
}

/** An Ethernet + IPv6 router solicitation from `src`, with or without a source LL option. */
function rsFrame(src: Uint8Array, withSlla: boolean, hopLimit = 255): Uint8Array {
  const f = new Uint8Array(14 + 40 + 16);
  f.set([0x33, 0x33, 0, 0, 0, 2], 0);
  f.set(GUEST_MAC, 6);
  f.set([0x86, 0xdd], 12);
  const n = emitRs(f, 54, withSlla ? GUEST_MAC : null, src, ALL_ROUTERS);
  f.set([0x60, 0, 0, 0, 0, n, 58, hopLimit], 14);
  f.set(src, 22);
  f.set(ALL_ROUTERS, 38);
  return f.subarray(0, 54 + n);
}

interface Ra {
  src: string;
  dst: string;
  hopLimit: number;
  routerLifetime: number;
  slla: string;
  mtu: number;
  prefix: string;
  prefixFlags: number;
  valid: number;
  preferred: number;
  rdnss: string[];
}

/** Parses a captured RA frame (checksum verified); null when it is not one. */
function parseRa(f: Uint8Array): Ra | null {
  if (u16(f, 12) !== 0x86dd || f[20] !== 58 || f[54] !== 134) return null;
  const len = u16(f, 18);
  assert.equal(finish(sum(f, 54, len, pseudoSum(f, 22, 38, 16, 58, len))), 0, "RA checksum");
  const v = new NdpView();
  assert.ok(v.parse(f, 54, len), "a well-formed RA");
  const ra: Ra = {
    src: formatIp(f, 22, 16),
    dst: formatIp(f, 38, 16),
    hopLimit: f[21],
    routerLifetime: v.routerLifetime,
    slla: v.srcLinkAddrOffset >= 0 ? formatMac(f, v.srcLinkAddrOffset) : "",
    mtu: v.mtuOption,
    prefix: "",
    prefixFlags: 0,
    valid: 0,
    preferred: 0,
    rdnss: [],
  };
  const it = v.options(new NdpOptionIter());
  while (it.next()) {
    if (it.type === 3) {
      ra.prefix = `${formatIp(f, it.prefixOffset, 16)}/${it.prefixLen}`;
      ra.prefixFlags = it.prefixFlags;
      ra.valid = it.validLifetime;
      ra.preferred = it.preferredLifetime;
    } else if (it.type === 25) {
      for (let i = 0; i < it.rdnssCount; i++) ra.rdnss.push(formatIp(f, it.rdnssAddrOffset(i), 16));
    }
  }
  return ra;
}

function ras(tap: CaptureTap): Ra[] {
  return tap.frames.map(parseRa).filter((r): r is Ra => r !== null);
}

/** Lets the stack's timers run: the wheel counts whole milliseconds. */
async function tickLater(stack: Stack): Promise<void> {
  await new Promise((r) => setTimeout(r, 3));
  stack.tick();
}

Deno.test("ra: a valid solicitation gets a full RA; invalid ones get nothing", async () => {
  using s = makeStack({ dns: true, configured: false });
  await tickLater(s.stack); // the first unsolicited RA goes out at once
  const first = ras(s.tap);
  assert.equal(first.length, 1);
  assert.equal(first[0].dst, "ff02::1");
  s.tap.frames.length = 0;

  s.stack.input(rsFrame(GUEST_LL, true, 64), 70); // forwarded (hop limit 64): invalid
  s.stack.input(rsFrame(UNSPEC, true), 70); // from :: with a link-layer option: invalid
  assert.equal(ras(s.tap).length, 0);
  const rs = rsFrame(GUEST_LL, true);
  s.stack.input(rs, rs.length);
  const got = ras(s.tap);
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], {
    src: "fe80::5055:aff:fe00:202",
    dst: "fe80::42",
    hopLimit: 255,
    routerLifetime: 1800,
    slla: "52:55:0a:00:02:02",
    mtu: 1500,
    prefix: "fd00::/64",
    prefixFlags: 0xc0, // on-link + autonomous (SLAAC)
    valid: 86400,
    preferred: 14400,
    rdnss: ["fd00::3"],
  });
});

Deno.test("ra: from :: the answer goes to all nodes; solicitation floods are rate-limited", async () => {
  using s = makeStack({ dns: true, configured: false });
  const rs = rsFrame(UNSPEC, false);
  await new Promise((r) => setTimeout(r, 250)); // past the gap after any earlier answer
  for (let i = 0; i < 50; i++) s.stack.input(rs, rs.length);
  const got = ras(s.tap).filter((r) => r.dst === "ff02::1");
  assert.equal(got.length, 1, "50 solicitations at once: one answer");
});

Deno.test("ra: --configure drops the A flag and the default-router role; --disable-dns drops RDNSS", async () => {
  using s = makeStack({ dns: false, configured: true });
  await tickLater(s.stack);
  const [ra] = ras(s.tap);
  assert.equal(ra.prefixFlags, 0x80, "on-link only: no second, SLAAC address");
  assert.deepEqual(ra.rdnss, []);
  assert.equal(ra.routerLifetime, 0, "the guest has its static default route: not a second one");
});

Deno.test({
  name: "ra guest: the kernel's SLAAC gets fd00::/64, a default route via fe80 and the MTU",
  ignore: skip(needs("ping"), "ra guest"),
  fn: async () => {
    await using guest = await makeNetns("slaac");
    await guest.must(["ip", "tuntap", "add", "mode", "tap", "name", "tun0"]);
    await guest.must(["ip", "link", "set", "tun0", "address", "02:00:00:00:00:07"]);
    await guest.must(["ip", "link", "set", "tun0", "mtu", "9000"]);
    await using _slirpd = await startSlirpd({
      guest,
      args: ["--interface", "tun0", "--mtu", "4000"],
    });
    await guest.must(["ip", "link", "set", "tun0", "up"]);
    let addrs = "";
    await eventually(
      async () => {
        addrs = await guest.must(["ip", "-6", "addr", "show", "dev", "tun0", "scope", "global"]);
        return /inet6 fd00::[0-9a-f:]+\/64/.test(addrs) && !/tentative/.test(addrs);
      },
      15_000,
      "a SLAAC address in fd00::/64",
    );
    assert.match(addrs, /inet6 fd00::ff:fe00:7\/64 scope global dynamic/); // EUI-64 of the MAC
    const routes = await guest.must(["ip", "-6", "route", "show", "default"]);
    assert.match(routes, /default via fe80::5055:aff:fe00:202 dev tun0 proto ra/);
    const mtu = (await guest.must(["cat", "/proc/sys/net/ipv6/conf/tun0/mtu"])).trim();
    assert.equal(mtu, "4000", "the RA's MTU option");
    const ping = await guest.exec(["ping", "-6", "-c", "1", "-W", "2", "fd00::2"]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
  },
});
