// Connection churn: short connections from the guest, the guest closing first, must not run
// the host out of ephemeral ports. slirpd's host socket carries the guest's FIN first, so it
// is the one that ends in TIME-WAIT (60 s in Linux) for every connection; with a small
// ip_local_port_range in the host namespace, a few hundred connections used to exhaust it
// (EADDRNOTAVAIL: the guest got RST). slirpd now reuses its own TIME-WAIT ports for new
// connects (ffi/socket.ts), so every connection is served.

import assert from "node:assert/strict";
import { HostNet, needs } from "../support/harness.ts";
import { makeWorld } from "../support/tcp_peer.ts";

const SKIP = needs("python3", "ss");

Deno.test({
  name: "tcp churn: 20000 short connections through 100 host ports, none refused",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--quiet"]);
    // 100 ephemeral ports on slirpd's side; the guest keeps its own (default) range.
    await w.net.host.must(["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40099"]);
    const t0 = performance.now();
    const out = await w.client(["churn", HostNet.REMOTE4, "20000", "4"], 300_000);
    const s = (performance.now() - t0) / 1000;
    console.log(`${out.split("\n")[0]}: ${(20000 / s).toFixed(0)} conn/s`);
    // The TIME-WAIT entries stay bounded by the range (reused, not piling up).
    const tw = await w.net.host.must(["ss", "-Htan", "state", "time-wait"]);
    const n = tw.split("\n").filter(Boolean).length;
    assert.ok(n <= 100, `${n} TIME-WAIT sockets with 100 ports`);
    // IPv6 too (the same range applies to both families).
    await w.client(["churn", HostNet.REMOTE6, "2000", "4"], 300_000);
  },
});
