// The host-prefix watcher (firewall/hostprefixes.ts, ffi/rtwatch.ts) against a real kernel: a netns
// with addresses and routes of each kind, dumped over rtnetlink; then a change made with `ip`
// while the Poller runs reaches the set through the change socket, without the 30 s rescan.
// The dump and the change socket are made inside the namespace with withNetns.

import assert from "node:assert/strict";
import { HostPrefixes, interfaceAddress } from "../../firewall/hostprefixes.ts";
import { dumpHost, openRouteMonitor } from "../../ffi/rtwatch.ts";
import { withNetns } from "../../ffi/netns.ts";
import { Poller } from "../../ffi/poller.ts";
import { parseIp } from "../../stack/wire/bytes.ts";
import { makeNetns, type Netns } from "../support/harness.ts";

function ip(s: string): Uint8Array {
  return parseIp(s)!;
}

function has(h: HostPrefixes, s: string): boolean {
  const a = ip(s);
  return h.contains(a.length === 4 ? 4 : 6, a);
}

/** A namespace with one veth end (192.0.2.1/24, 2001:db8::1/64) and routes of every kind. */
async function hostNs(): Promise<Netns> {
  const ns = await makeNetns("fwhost");
  try {
    const ip = (...a: string[]) => ns.must(["ip", ...a]);
    await ip("link", "add", "name", "fw0", "type", "veth", "peer", "name", "fw1");
    await ip("addr", "add", "192.0.2.1/24", "dev", "fw0");
    await ip("addr", "add", "2001:db8::1/64", "dev", "fw0", "nodad");
    await ip("link", "set", "fw0", "up");
    await ip("link", "set", "fw1", "up");
    await ip("route", "add", "198.51.100.0/24", "via", "192.0.2.2"); // via a gateway: not host
    await ip("route", "add", "default", "via", "192.0.2.2"); // default: not host
    await ip("route", "add", "203.0.113.0/25", "dev", "fw0"); // on the link: host
    await ip("-6", "route", "add", "2001:db8:1::/48", "via", "2001:db8::2");
    await ip("-6", "route", "add", "2001:db8:2::/48", "dev", "fw0");
    await ip("-6", "route", "add", "default", "via", "2001:db8::2");
    return ns;
  } catch (e) {
    await ns[Symbol.asyncDispose]();
    throw e;
  }
}

Deno.test("firewall host prefixes: addresses and on-link routes; no default, no gateway routes", async () => {
  await using ns = await hostNs();
  const h = new HostPrefixes({ rescanMs: 0, dump: () => withNetns(ns.path, dumpHost) });
  try {
    for (
      const a of ["192.0.2.1", "192.0.2.2", "192.0.2.255", "203.0.113.1", "127.0.0.1", "127.9.9.9"]
    ) {
      assert.ok(has(h, a), `${a} is on the host: ${h.list()}`);
    }
    for (const a of ["2001:db8::1", "2001:db8::abcd", "2001:db8:2::7", "::1"]) {
      assert.ok(has(h, a), `${a} is on the host: ${h.list()}`);
    }
    for (
      const a of ["198.51.100.1", "203.0.113.200", "8.8.8.8", "2001:db8:1::1", "2001:4860::8888"]
    ) {
      assert.ok(!has(h, a), `${a} is not on the host: ${h.list()}`);
    }
    assert.ok(!h.list().includes("0.0.0.0/0") && !h.list().some((p) => p.endsWith("/0")));
    assert.deepEqual(withNetns(ns.path, () => [...interfaceAddress("fw0", 4)]), [192, 0, 2, 1]);
    assert.deepEqual(withNetns(ns.path, () => interfaceAddress("fw0", 6)), ip("2001:db8::1"));
    assert.throws(() => withNetns(ns.path, () => interfaceAddress("lo", 6)), /no usable IPv6/);
    assert.throws(
      () => withNetns(ns.path, () => interfaceAddress("nope0", 4)),
      /no interface nope0/,
    );

    // A failing dump keeps the previous set (and is counted, logged once).
    const logs: string[] = [];
    let fail = false;
    const h2 = new HostPrefixes({
      rescanMs: 0,
      log: (l) => logs.push(l),
      dump: () => {
        if (fail) throw new Error("boom");
        return withNetns(ns.path, dumpHost);
      },
    });
    fail = true;
    assert.equal(h2.rescan(), false);
    assert.ok(has(h2, "192.0.2.1"));
    assert.deepEqual([h2.failures, h2.rescans, logs.length], [1, 1, 1]);
    h2.close();
  } finally {
    h.close();
  }
});

Deno.test("firewall host prefixes: a change is seen through netlink events within a second", async () => {
  await using ns = await hostNs();
  const poller = new Poller();
  const h = new HostPrefixes({
    poller,
    rescanMs: 0, // no periodic rescan: only events can update the set
    dump: () => withNetns(ns.path, dumpHost),
    openMonitor: () => withNetns(ns.path, openRouteMonitor),
  });
  const loop = poller.run(() => 20);
  try {
    assert.ok(h.fd >= 0, "the change socket is open");
    const until = async (pred: () => boolean, what: string) => {
      const t0 = performance.now();
      for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(pred(), `${what} (after ${(performance.now() - t0).toFixed(0)} ms)`);
      return performance.now() - t0;
    };
    assert.ok(!has(h, "198.51.100.9"));
    const scans = h.rescans;
    await ns.must(["ip", "addr", "add", "198.51.100.9/32", "dev", "lo"]);
    const ms = await until(() => has(h, "198.51.100.9"), "an added address becomes host");
    console.log(`address seen after ${ms.toFixed(0)} ms, ${h.events} change messages`);
    assert.ok(h.rescans - scans <= 3, `bursts are coalesced: ${h.rescans - scans} rescans`);
    await ns.must(["ip", "-6", "route", "add", "2001:db8:3::/48", "dev", "fw0"]);
    await until(() => has(h, "2001:db8:3::1"), "an added on-link IPv6 route becomes host");
    await ns.must(["ip", "addr", "del", "198.51.100.9/32", "dev", "lo"]);
    await until(() => !has(h, "198.51.100.9"), "a removed address is host no more");
    assert.ok(h.events > 0);
  } finally {
    poller.stop();
    await loop;
    h.close();
    poller.close();
  }
});
