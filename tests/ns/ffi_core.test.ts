// ffi core on the real kernel: netns windows, tap open/attach, vnet header + offloads,
// rtnetlink configuration, and frames through the tap (the guest kernel answers our frames,
// ping in the guest succeeds). Every namespace is fresh (random suffix) and removed afterwards.

import { skip } from "../support/harness.ts";
import { makeNetns, must, needs, run } from "../support/harness.ts";
import { nsInode, openGuestNetnsDirect, withNetns } from "../../ffi/netns.ts";
import { openTap, Tap, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from "../../ffi/tap.ts";
import { configureGuest, formatIp, type GuestConfig } from "../../ffi/netlink.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { raiseFdLimit } from "../../ffi/fd.ts";
import {
  arpReply,
  assert,
  assertEquals,
  assertMatch,
  assertThrows,
  GUEST4,
  GUEST6,
  GW4,
  GW6,
  icmp4EchoReply,
  icmp6EchoReply,
  isArpRequest,
  isIcmp4Echo,
  isIcmp6Echo,
  isNeighborSolicitation,
  neighborAdvert,
  readUntil,
} from "../support/ffi_helpers.ts";

const SKIP = Deno.uid() !== 0 ? "skipped: needs root" : null;
const here = () => nsInode("/proc/thread-self/ns/net");
const tapName = () => `sdtap${Math.random().toString(36).slice(2, 8)}`;

function guestConfig(ifname: string): GuestConfig {
  return {
    ifname,
    mtu: 1500,
    addrs: [{ addr: GUEST4, prefixLen: 24 }, { addr: GUEST6, prefixLen: 64 }],
    gateways: [GW4, GW6],
  };
}

interface IpAddr {
  ifname: string;
  mtu: number;
  flags: string[];
  ifindex: number;
  addr_info: {
    family: string;
    local: string;
    prefixlen: number;
    tentative?: boolean;
    dadfailed?: boolean;
  }[];
}

async function ipJson<T>(ns: string, ...args: string[]): Promise<T> {
  return JSON.parse(await must(["ip", "-n", ns, "-j", ...args])) as T;
}

Deno.test({
  name: "withNetns: runs fn in the target netns and always comes back",
  ignore: skip(SKIP, "ffi_core"),
  fn: async () => {
    await using ns = await makeNetns("wns");
    const home = here();
    const inside = withNetns(ns.path, () => here());
    assertEquals(inside, nsInode(ns.path));
    assert(inside !== home);
    assertEquals(here(), home);

    assertThrows(
      () =>
        withNetns(ns.path, () => {
          throw new Error("boom");
        }),
      Error,
      "boom",
    );
    assertEquals(here(), home);

    // An async fn would run partly outside the window: refused, and we are still home.
    assertThrows(() => withNetns(ns.path, async () => {}), TypeError, "must be synchronous");
    assertEquals(here(), home);

    // Nested windows come back to the outer one, then home.
    await using ns2 = await makeNetns("wns2");
    const nested = withNetns(ns.path, () => [withNetns(ns2.path, here), here()]);
    assertEquals(nested, [nsInode(ns2.path), nsInode(ns.path)]);
    assertEquals(here(), home);
  },
});

Deno.test({
  name: "withNetns: errors name the call and the path",
  ignore: skip(SKIP, "ffi_core"),
  fn: () => {
    const home = here();
    const e1 = assertThrows(() => withNetns("/nonexistent/ns/net", () => 1), SyscallError);
    assertEquals(e1.message, "open(/nonexistent/ns/net): ENOENT");
    // A namespace file of the wrong type: setns(CLONE_NEWNET) refuses it.
    const e2 = assertThrows(() => withNetns("/proc/self/ns/uts", () => 1), SyscallError);
    assertEquals(e2.message, "setns(/proc/self/ns/uts): EINVAL");
    assertEquals(e2.code, "EINVAL");
    assertEquals(here(), home);
  },
});

Deno.test({
  name: "openTap creates a tap and configureGuest sets it up like slirp4netns --configure",
  ignore: skip(SKIP, "ffi_core"),
  fn: async () => {
    await using ns = await makeNetns("cfg");
    await must(["ip", "-n", ns.name, "link", "set", "lo", "down"]); // configureGuest must raise it
    const name = tapName();
    const tap = withNetns(ns.path, () => {
      const t = openTap({ name, create: true, vnetHdr: true, offload: true });
      configureGuest(guestConfig(name));
      return t;
    });
    try {
      assertEquals([tap.name, tap.created, tap.vnetLen, tap.offloaded], [name, true, 10, true]);
      assertEquals(tap.offloadFlags, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
      // The device is in the guest netns, not here.
      assert((await run(["ip", "link", "show", name])).code !== 0);

      const [link] = await ipJson<IpAddr[]>(ns.name, "addr", "show", "dev", name);
      assertEquals(link.ifindex, tap.ifindex);
      assertEquals(link.mtu, 1500);
      assert(link.flags.includes("UP"), link.flags.join());
      const addrs = link.addr_info.filter((a) =>
        a.local !== undefined && !a.local.startsWith("fe80")
      );
      assertEquals(addrs.map((a) => `${a.local}/${a.prefixlen}`).sort(), [
        "10.0.2.100/24",
        "fd00::100/64",
      ]);
      // IFA_F_NODAD: usable at once, not tentative.
      assert(addrs.every((a) => !a.tentative && !a.dadfailed), JSON.stringify(addrs));
      const [lo] = await ipJson<IpAddr[]>(ns.name, "link", "show", "lo");
      assert(lo.flags.includes("UP"));

      const r4 = await ipJson<{ dst: string; gateway?: string; dev: string }[]>(
        ns.name,
        "-4",
        "route",
      );
      assert(
        r4.some((r) => r.dst === "default" && r.gateway === "10.0.2.2" && r.dev === name),
        JSON.stringify(r4),
      );
      const r6 = await ipJson<{ dst: string; gateway?: string; dev: string }[]>(
        ns.name,
        "-6",
        "route",
      );
      assert(
        r6.some((r) => r.dst === "default" && r.gateway === "fd00::2" && r.dev === name),
        JSON.stringify(r6),
      );

      // A second run hits the existing address: the error names the operation.
      const e = assertThrows(
        () => withNetns(ns.path, () => configureGuest(guestConfig(name))),
        SyscallError,
      );
      assertEquals(e.message, `netlink RTM_NEWADDR(10.0.2.100/24 on ${name}): EEXIST`);
    } finally {
      tap.close();
    }
    // Created by us, not persistent: closing the fd removed it.
    assert((await run(["ip", "-n", ns.name, "link", "show", name])).code !== 0);
  },
});

Deno.test({
  name: "openTap attaches to an existing tap, and fails clearly for a missing or non-tap device",
  ignore: skip(SKIP, "ffi_core"),
  fn: async () => {
    await using ns = await makeNetns("att");
    const name = tapName();
    await must(["ip", "-n", ns.name, "tuntap", "add", "dev", name, "mode", "tap"]);
    await must(["ip", "-n", ns.name, "tuntap", "add", "dev", `${name}u`, "mode", "tun"]);

    const g = openGuestNetnsDirect(ns.path);
    let tap: Tap | undefined;
    try {
      tap = openTap({ name, create: false, vnetHdr: false, offload: true }, g);
      assertEquals([tap.created, tap.vnetLen, tap.offloaded, tap.offloadFlags], [
        false,
        0,
        false,
        0,
      ]);
    } finally {
      g.close();
      tap?.close();
    }
    // Persistent (made by ip tuntap): still there after we let go.
    await must(["ip", "-n", ns.name, "link", "show", name]);

    const missing = withNetns(
      ns.path,
      () =>
        assertThrows(() => openTap({ name: "nope0", create: false, vnetHdr: true, offload: true })),
    );
    assertEquals(missing.message, `--interface nope0: no such tap in the namespace ${ns.path}`);
    const viaG = openGuestNetnsDirect(ns.path);
    try {
      const e = assertThrows(() =>
        openTap({ name: "nope0", create: false, vnetHdr: true, offload: true }, viaG)
      );
      assertEquals(e.message, `--interface nope0: no such tap in the namespace ${ns.path}`);
    } finally {
      viaG.close();
    }
    assert(
      (await run(["ip", "-n", ns.name, "link", "show", "nope0"])).code !== 0,
      "nothing was created",
    );

    const notTap = withNetns(
      ns.path,
      () =>
        assertThrows(() =>
          openTap({ name: `${name}u`, create: true, vnetHdr: true, offload: true })
        ),
    );
    assertMatch(notTap.message, /exists and is not a \(single-queue\) tap device/);
    const bad = assertThrows(() =>
      openTap({ name: "x".repeat(16), create: true, vnetHdr: false, offload: false })
    );
    assertMatch(bad.message, /not a valid interface name/);
  },
});

async function pingThroughTap(vnetHdr: boolean): Promise<void> {
  await using ns = await makeNetns("ping");
  const name = tapName();
  const g = openGuestNetnsDirect(ns.path);
  let tap: Tap;
  try {
    tap = openTap({ name, create: true, vnetHdr, offload: true }, g);
    configureGuest(guestConfig(name), g);
  } finally {
    g.close();
  }
  try {
    const e = tap.vnetLen; // the Ethernet header starts after the vnet header
    assertEquals(e, vnetHdr ? 10 : 0);
    const rx = new Uint8Array(128 * 1024), tx = new Uint8Array(2048);
    const ping = ns.exec(["ping", "-c1", "-W5", "10.0.2.2"], { timeoutMs: 10_000 });
    let n = await readUntil(
      tap,
      rx,
      (b) => isArpRequest(b, e, GW4),
      5000,
      "ARP request for 10.0.2.2",
    );
    assertEquals((rx[e + 12] << 8) | rx[e + 13], 0x0806);
    assert(tap.write(tx, arpReply(rx, e, tx)));
    // The kernel took our ARP reply: it now sends the echo request to our MAC.
    n = await readUntil(tap, rx, (b) => isIcmp4Echo(b, e, GW4), 5000, "ICMP echo request");
    assert(tap.write(tx, icmp4EchoReply(rx, e, n, tx)));
    const r = await ping;
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assertMatch(r.stdout, /1 received/);
    assertEquals(tap.writeDrops, 0);
  } finally {
    tap.close();
  }
}

Deno.test({
  name: "tap read/write with the vnet header: ARP + echo reply make the guest's ping succeed",
  ignore: skip(SKIP ?? needs("ping"), "ffi_core"),
  fn: () => pingThroughTap(true),
});

Deno.test({
  name: "tap read/write without the vnet header (vnetLen 0)",
  ignore: skip(SKIP ?? needs("ping"), "ffi_core"),
  fn: () => pingThroughTap(false),
});

Deno.test({
  name: "IPv6 is usable right after configureGuest: ping -6 fd00::2 goes out from fd00::100",
  ignore: skip(SKIP ?? needs("ping"), "ffi_core"),
  fn: async () => {
    await using ns = await makeNetns("ping6");
    const name = tapName();
    const g = openGuestNetnsDirect(ns.path);
    let tap: Tap;
    try {
      tap = openTap({ name, create: true, vnetHdr: true, offload: true }, g);
      configureGuest(guestConfig(name), g);
    } finally {
      g.close();
    }
    try {
      const e = tap.vnetLen;
      const rx = new Uint8Array(128 * 1024), tx = new Uint8Array(2048);
      // No waiting for DAD: the solicitation's source is fd00::100 itself (a tentative address
      // could not be used), and the default route via fd00::2 was accepted.
      const ping = ns.exec(["ping", "-6", "-c1", "-W5", "fd00::2"], { timeoutMs: 10_000 });
      await readUntil(
        tap,
        rx,
        (b) => isNeighborSolicitation(b, e, GUEST6, GW6),
        5000,
        "NS for fd00::2",
      );
      assert(tap.write(tx, neighborAdvert(rx, e, tx)));
      const n = await readUntil(
        tap,
        rx,
        (b) => isIcmp6Echo(b, e, GW6),
        5000,
        "ICMPv6 echo request",
      );
      assert(tap.write(tx, icmp6EchoReply(rx, e, n, tx)));
      const r = await ping;
      assertEquals(r.code, 0, r.stdout + r.stderr);
    } finally {
      tap.close();
    }
  },
});

Deno.test("formatIp prints v4 and compressed v6", () => {
  assertEquals(formatIp(GUEST4), "10.0.2.100");
  assertEquals(formatIp(GUEST6), "fd00::100");
  assertEquals(formatIp(new Uint8Array(16)), "::");
  assertEquals(
    formatIp(new Uint8Array([0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])),
    "2001:db8:0:1::1",
  );
});

Deno.test({
  name: "raiseFdLimit lifts the soft descriptor limit to the hard one",
  ignore: skip(needs("prlimit"), "raiseFdLimit"),
  fn() {
    const limits = () =>
      Deno.readTextFileSync("/proc/self/limits").match(/^Max open files\s+(\S+)\s+(\S+)/m)!
        .slice(1);
    const hard = limits()[1];
    // Lower our own soft limit the way a service manager would start us (soft 1024).
    const out = new Deno.Command("prlimit", {
      args: ["--pid", `${Deno.pid}`, `--nofile=1024:${hard}`],
    }).outputSync();
    assert(out.success, new TextDecoder().decode(out.stderr));
    assertEquals(limits()[0], "1024");
    assertEquals(`${raiseFdLimit()}`, hard);
    assertEquals(limits(), [hard, hard]);
  },
});
