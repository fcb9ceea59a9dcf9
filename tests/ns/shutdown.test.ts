// How slirpd ends: SIGTERM resets the guest's live connections both ways (the guest's socket
// gets RST, the host peer too), and a guest namespace that disappears stops slirpd within
// about a second with one line and exit code 3 (README).

import assert from "node:assert/strict";
import {
  Background,
  eventually,
  makeHostNet,
  makeNetns,
  needs,
  skip,
  Slirpd,
  slirpdCommand,
  startSlirpd,
} from "../support/harness.ts";

// Server (remote): streams bytes until the peer goes; reports how the connection ended.
const SERVER = String.raw`
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7101)); s.listen(4); print("ready", flush=True)
c, _ = s.accept(); print("accepted", flush=True)
try:
    while True:
        c.sendall(b"x" * 65536)
except OSError as e:
    print("server end", type(e).__name__, flush=True)
`;

// Client (guest): reads slowly so the transfer is still going when slirpd is stopped.
const CLIENT = String.raw`
import socket, time
s = socket.create_connection(("192.0.2.2", 7101), timeout=5); print("connected", flush=True)
s.settimeout(30)
try:
    while True:
        d = s.recv(4096)
        if not d:
            print("client end eof", flush=True); break
        time.sleep(0.01)
except OSError as e:
    print("client end", type(e).__name__, flush=True)
`;

Deno.test({
  name: "shutdown: SIGTERM resets a guest connection mid-transfer, both ways",
  ignore: skip(needs("python3", "ss", "ip", "nsenter"), "shutdown reset"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using net = await makeHostNet();
    await using server = net.remote.spawn(["python3", "-c", SERVER]);
    await server.waitFor((b) => b.stdout.includes("ready"), 10_000, "server");
    await using guest = await makeNetns("shutguest");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", "--enable-host"],
    });
    await using client = guest.spawn(["python3", "-c", CLIENT]);
    await client.waitFor((b) => b.stdout.includes("connected"), 15_000, "client connect");
    await server.waitFor((b) => b.stdout.includes("accepted"), 10_000, "server accept");
    await new Promise((r) => setTimeout(r, 500)); // mid-transfer
    const st = await slirpd.stop("SIGTERM");
    assert.equal(st.code, 0);
    await client.waitFor((b) => b.stdout.includes("client end"), 5_000, "guest socket end");
    assert.match(client.stdout, /client end ConnectionResetError/);
    await server.waitFor((b) => b.stdout.includes("server end"), 5_000, "host socket end");
    assert.match(server.stdout, /server end (ConnectionResetError|BrokenPipeError)/);
    const ss = await guest.must(["ss", "-Htn", "state", "established"]);
    assert.equal(ss.trim(), "", `guest sockets still established:\n${ss}`);
  },
});

Deno.test({
  name: "shutdown: the guest namespace's last process exits → slirpd exits 3 with one line",
  ignore: skip(needs("unshare", "sleep"), "netns gone"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A namespace nobody mounted: the sleep is all that holds it (besides slirpd).
    await using holder = new Background(["unshare", "-n", "sleep", "120"]);
    const path = `/proc/${holder.pid}/ns/net`;
    const self = Deno.statSync("/proc/self/ns/net").ino;
    await eventually(
      () => {
        try {
          return Deno.statSync(path).ino !== self;
        } catch {
          return false;
        }
      },
      10_000,
      "unshare -n",
    );
    await using slirpd = new Slirpd([...slirpdCommand(), "--netns", path, "--configure"]);
    await slirpd.ready();
    const t0 = Date.now();
    await holder.stop("SIGKILL");
    const st = await Promise.race([
      slirpd.child.status,
      new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
    ]);
    const ms = Date.now() - t0;
    assert.ok(
      st !== null,
      `slirpd still running 10 s after the namespace's end:\n${slirpd.stderr}`,
    );
    assert.equal(st.code, 3, slirpd.stderr);
    assert.ok(ms < 3_000, `took ${ms} ms`);
    const lines = slirpd.stderr.split("\n").filter((l) => l.includes("network namespace"));
    assert.equal(lines.length, 1, slirpd.stderr);
    assert.match(lines[0], /is gone .*PID \d+.*exit 3/);
    console.log(`exited ${ms} ms after the namespace's last process`);
  },
});
