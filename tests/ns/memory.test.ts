// Memory after a burst: 20,000 short connections through slirpd grow its heap (connections,
// sockets, timers: garbage once they are gone), and V8 keeps what it grew to for as long as
// nothing allocates. Once the guest is quiet slirpd collects and gives it back
// (daemon/memory.ts): RSS must come back within 25 MB of its baseline within ~25 s.

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, skip, startSlirpd } from "../support/harness.ts";
import { rss } from "../support/tcp_peer.ts";

const SERVER = String.raw`
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7001)); s.listen(4096); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"x"); c.close()
`;

const CHURN = String.raw`
import socket
for i in range(20000):
    c = socket.create_connection(("192.0.2.2", 7001), timeout=5)
    c.recv(1); c.close()
print("done", flush=True)
`;

Deno.test({
  name: "memory: RSS comes back near its baseline after 20,000 short connections",
  ignore: skip(needs("python3", "ip", "nsenter"), "memory after a burst"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using net = await makeHostNet();
    await using server = net.remote.spawn(["python3", "-c", SERVER]);
    await server.waitFor((b) => b.stdout.includes("ready"), 10_000, "server");
    await using guest = await makeNetns("memguest");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", "--enable-host", "--quiet"],
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const base = await rss(slirpd.pid);
    const r = await guest.exec(["python3", "-c", CHURN], { timeoutMs: 600_000 });
    assert.match(r.stdout, /done/, r.stderr);
    const peak = await rss(slirpd.pid);
    let now = peak;
    for (let i = 0; i < 25 && now - base > 25e6; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      now = await rss(slirpd.pid);
    }
    const mb = (n: number) => (n / 1e6).toFixed(0);
    console.log(`slirpd RSS ${mb(base)} → ${mb(peak)} after 20k connections → ${mb(now)} MB`);
    assert.ok(now - base <= 25e6, `RSS still ${mb(now - base)} MB above its baseline`);
  },
});
