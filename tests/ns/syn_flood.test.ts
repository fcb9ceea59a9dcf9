// A guest SYN flood (raw SYNs from scapy, the guest's own RSTs dropped by nftables so nothing
// cleans up after it) must not become a connection flood on the host: slirpd completes a host
// connect() per SYN, so half-open connections are bounded (stack/tcp/tunables.ts
// MAX_HALF_OPEN, MAX_HALF_OPEN_PER_DST; the oldest goes first) and a guest that never completes
// the handshake is given up after ~7 s. Under the flood a normal guest connection still works.

import assert from "node:assert/strict";
import {
  makeHostNet,
  makeNetns,
  needsScapy,
  SCAPY_PY,
  skip,
  startSlirpd,
} from "../support/harness.ts";
import { MAX_HALF_OPEN_PER_DST } from "../../stack/tcp/tunables.ts";
import { fdCount, rss } from "../support/tcp_peer.ts";

const PY = SCAPY_PY;

const SERVER = String.raw`
import socket, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7001)); s.listen(4096); print("ready", flush=True)
keep = []
while True:
    c, _ = s.accept(); keep.append(c)
`;

const FLOOD = String.raw`
import sys
from scapy.all import Ether, IP, TCP, get_if_hwaddr, sendp, conf
conf.verb = 0
mac = get_if_hwaddr("tun0")
n = int(sys.argv[1])
frames = [Ether(src=mac, dst="52:55:0a:00:02:02") / IP(src="10.0.2.100", dst="192.0.2.2") /
          TCP(sport=20000 + i, dport=7001, flags="S", seq=1000 + i) for i in range(n)]
sendp(frames, iface="tun0")
print("sent", n, flush=True)
`;

const CONNECT = String.raw`
import socket
s = socket.create_connection(("192.0.2.2", 7001), timeout=10)
print("connected", flush=True)
`;

Deno.test({
  name: "syn flood: 3,000 unanswered SYNs open a bounded number of host connections",
  ignore: skip(needsScapy("nft", "ss", "ip", "nsenter"), "syn flood"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using net = await makeHostNet();
    await using server = net.remote.spawn([PY, "-c", SERVER]);
    await server.waitFor((b) => b.stdout.includes("ready"), 10_000, "server");
    await using guest = await makeNetns("flood");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", "--enable-host", "--quiet"],
    });
    // The guest kernel would answer every SYN-ACK with RST and so clean up after the flood.
    await guest.must(["nft", "add", "table", "inet", "sdtflood"]);
    await guest.must([
      ..."nft add chain inet sdtflood out { type filter hook output priority 0 ; }".split(" "),
    ]);
    await guest.must([
      ..."nft add rule inet sdtflood out oifname tun0 tcp flags rst drop".split(" "),
    ]);
    const established = async () =>
      (await net.remote.must(["ss", "-Htn", "state", "established", "( sport = :7001 )"]))
        .split("\n").filter(Boolean).length;
    const rss0 = await rss(slirpd.pid), fds0 = await fdCount(slirpd.pid);
    const f = await guest.exec([PY, "-c", FLOOD, "3000"], { timeoutMs: 120_000 });
    const rss1 = await rss(slirpd.pid);
    assert.match(f.stdout, /sent 3000/, f.stderr);
    const during = await established();
    const c = await guest.exec(["python3", "-c", CONNECT], { timeoutMs: 30_000 });
    assert.match(c.stdout, /connected/, `a normal connection failed under the flood: ${c.stderr}`);
    // Given up within ~7 s (2 SYN-ACK retries); allow a slow machine some more.
    let after = during;
    for (let i = 0; i < 40 && after > 2; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = await established();
    }
    const rss2 = await rss(slirpd.pid), fds2 = await fdCount(slirpd.pid);
    const mb = (n: number) => (n / 1e6).toFixed(0);
    console.log(
      `host connections: ${during} right after 3000 SYNs, ${after} later; slirpd RSS ` +
        `${mb(rss0)} → ${mb(rss1)} → ${mb(rss2)} MB, fds ${fds0} → ${fds2}`,
    );
    assert.ok(fds2 <= fds0 + 2, `descriptors ${fds0} → ${fds2}`);
    assert.ok(rss2 - rss0 < 32e6, `RSS grew by ${mb(rss2 - rss0)} MB`);
    assert.ok(during <= MAX_HALF_OPEN_PER_DST + 2, `${during} host connections from the flood`);
    assert.ok(after <= 2, `${after} host connections left after the flood`);
    assert.equal((await slirpd.stop()).code, 0);
  },
});
