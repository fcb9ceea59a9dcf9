// TCP through slirpd end to end: the guest's kernel TCP (in a guest netns behind slirpd's tap)
// talks to real sockets in an isolated "remote" namespace; slirpd runs in the isolated "host"
// namespace and connect()s for the guest. Nothing here is faked.
//
// Covered: echo over IPv4 and IPv6 with the slirpnetstack log lines; 256 MB each way with a
// hash compared at both ends (with and without the vnet header); half-close both ways;
// refused and blocked destinations; 200 concurrent connections and no state left after.

import assert from "node:assert/strict";
import { HostNet, needs } from "../support/harness.ts";
import { fdCount, makeWorld } from "../support/tcp_peer.ts";

const SKIP = needs("python3", "ss");

function count(s: string, re: RegExp): number {
  return (s.match(re) ?? []).length;
}

Deno.test({
  name: "tcp routing: echo over IPv4 and IPv6, logged like slirpnetstack",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["echo", HostNet.REMOTE4, "200000"]);
    await w.client(["echo", HostNet.REMOTE6, "200000"]);
    await w.slirpd.waitFor((b) => count(b.stdout, /Routing conn done/g) >= 2, 5000, "done lines");
    const out = w.slirpd.stdout;
    assert.match(
      out,
      /\[\+\] tcp:\/\/10\.0\.2\.100:\d+\/192\.0\.2\.1:\d+-192\.0\.2\.2:7 Routing conn new/,
    );
    assert.match(
      out,
      /\[-\] tcp:\/\/10\.0\.2\.100:\d+\/192\.0\.2\.1:\d+-192\.0\.2\.2:7 Routing conn done: l=200000 r=200000/,
    );
    assert.match(
      out,
      /\[\+\] tcp:\/\/\[fd00::100\]:\d+\/\[2001:db8::1\]:\d+-\[2001:db8::2\]:7 Routing conn new/,
    );
    assert.match(out, /\[2001:db8::2\]:7 Routing conn done: l=200000 r=200000/);
  },
});

for (const vnet of [true, false]) {
  Deno.test({
    name: `tcp routing: 256 MB each way, hashes equal at both ends (${
      vnet ? "vnet header, TSO/GSO" : "no vnet header, MTU 1500"
    })`,
    ignore: SKIP !== null,
    fn: async () => {
      await using w = await makeWorld(vnet ? [] : ["--no-vnet-hdr"]);
      const n = String(256 << 20);
      let t0 = performance.now();
      await w.client(["upload", HostNet.REMOTE4, n], 240_000);
      const up = performance.now() - t0;
      t0 = performance.now();
      await w.client(["download", HostNet.REMOTE4, n], 240_000);
      const down = performance.now() - t0;
      console.log(
        `256 MB up ${(256 / (up / 1000)).toFixed(0)} MB/s, down ${
          (256 / (down / 1000)).toFixed(0)
        } MB/s (${vnet ? "vnet" : "plain"})`,
      );
    },
  });
}

Deno.test({
  name: "tcp routing: half-close both ways carries FIN as a half-close",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["halfclose", HostNet.REMOTE4]);
    await w.client(["halfclose", HostNet.REMOTE6]);
  },
});

Deno.test({
  name: "tcp routing: refused → ECONNREFUSED; blocked destination → refused without a connect",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["refused", HostNet.REMOTE4, "5"]);
    await w.client(["refused", HostNet.REMOTE6, "5"]);
    // The guest's own network (here the gateway address) is on the sanity block list.
    await w.client(["refused", "10.0.2.2", "7"]);
    await w.client(["refused", "fd00::2", "7"]);
    assert.match(w.slirpd.stdout, /192\.0\.2\.2:5 Routing conn error: ECONNREFUSED/);
    // (The firewall may log the block itself; there is no connect and no "Routing conn".)
    assert.ok(
      !/10\.0\.2\.2:7 Routing conn/.test(w.slirpd.stdout),
      "a blocked flow never reaches connect()",
    );
  },
});

Deno.test({
  name: "tcp routing: 200 concurrent connections open, echo, close; nothing is left after",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--quiet"]);
    const pid = w.slirpd.pid;
    const fds0 = await fdCount(pid);
    await w.client(["many", HostNet.REMOTE4, "200"], 120_000);
    await w.client(["many", HostNet.REMOTE6, "200"], 120_000);
    // Every host socket slirpd opened is closed again (TIME-WAIT entries hold no socket).
    let fds = -1;
    for (let i = 0; i < 50; i++) {
      fds = await fdCount(pid);
      if (fds <= fds0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(fds <= fds0, `slirpd holds ${fds - fds0} more fds than before`);
    // The host namespace has no connection of slirpd's left but the kernel's TIME-WAITs.
    const ss = await w.net.host.must(["ss", "-tanH"]);
    const live = ss.split("\n").filter((l) => l.trim() && !/TIME-WAIT|LISTEN/.test(l));
    assert.deepEqual(live, [], `host sockets still open:\n${live.join("\n")}`);
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
  },
});

Deno.test({
  name: "tcp routing: RST is carried both ways",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["resets", HostNet.REMOTE4]);
    await w.servers.waitFor((b) => /peer-(reset|eof)/.test(b.stdout), 10_000, "the server's view");
    assert.match(w.servers.stdout, /peer-reset/, "the guest's RST reached the host peer");
    await w.client(["resets", HostNet.REMOTE6]);
  },
});

Deno.test({
  name: "tcp routing: small request/response round trips have no delayed-ACK or Nagle stalls",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--quiet"]);
    for (const host of [HostNet.REMOTE4, HostNet.REMOTE6]) {
      const out = await w.client(["pingpong", host, "500"]);
      const rtt = Number(out.match(/rtt-ms ([\d.]+)/)![1]);
      console.log(`${host}: mean round trip ${rtt.toFixed(3)} ms`);
      assert.ok(rtt < 5, `mean round trip ${rtt} ms`);
    }
  },
});
