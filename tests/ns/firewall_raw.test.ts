// The firewall against raw frames: SYNs and datagrams built with scapy and written onto the
// guest's tap (addressed to slirpd's MAC), so the guest kernel's own routing and source checks
// cannot hide an attack. slirpd runs in an isolated host namespace with services on the host's
// loopback (127.0.0.1, ::1) and on a remote 192.0.2.11, started with
// `--allow all --disable-host-loopback --deny 192.0.2.11`:
//
//  - other spellings of the loopback (0.0.0.0, ::, ::ffff:127.0.0.1, ::ffff:0.0.0.0, NAT64
//    64:ff9b::7f00:1, 6to4 2002:7f00:1::, IPv4-compatible ::127.0.0.1) get no SYN-ACK and no
//    UDP answer;
//  - other spellings of the denied 192.0.2.11 (::ffff:192.0.2.11, 64:ff9b::c000:20b, 6to4) the
//    same;
//  - destinations that are never a flow (broadcasts, multicast) the same;
//  - frames whose source the guest may not use (loopback, multicast, 0.0.0.0, another host's
//    address) are dropped and counted;
// while the control probes (192.0.2.2, [2001:db8::2]) are answered, so the method works.

import assert from "node:assert/strict";
import {
  type HostNet,
  makeHostNet,
  makeNetns,
  must,
  needs,
  needsScapy,
  type Netns,
  SCAPY_PY,
  skip,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";

const PY = SCAPY_PY;
const PROBE = new URL("../support/raw_probe.py", import.meta.url).pathname;

const SKIP = needsScapy("ip", "nsenter");

const SERVE = String.raw`
import socket, sys, threading, time
def tcp(host, port):
    f = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(f, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept(); c.close()
    threading.Thread(target=loop, daemon=True).start()
def udp(host, port):
    f = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(f, socket.SOCK_DGRAM)
    s.bind((host, port))
    def loop():
        while True:
            d, peer = s.recvfrom(2048); s.sendto(b"echo " + d, peer)
    threading.Thread(target=loop, daemon=True).start()
for spec in sys.argv[1:]:
    p, h, port = spec.split("/")
    (tcp if p == "tcp" else udp)(h, int(port))
print("ready", flush=True)
time.sleep(3600)
`;

interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
  probe(...specs: string[]): Promise<Record<string, string[]>>;
}

async function makeWorld(args: string[]): Promise<World> {
  const undo: AsyncDisposable[] = [];
  const dispose = async () => {
    for (const d of undo.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
  };
  try {
    const net = await makeHostNet();
    undo.push(net);
    await must(["ip", "-n", net.remote.name, "addr", "add", "192.0.2.11/32", "dev", "lo"]);
    const hostSvc = net.host.spawn([
      PY,
      "-c",
      SERVE,
      "tcp/127.0.0.1/7001",
      "tcp/::1/7001",
      "udp/127.0.0.1/7002",
      "udp/::1/7002",
    ]);
    undo.push(hostSvc);
    const remoteSvc = net.remote.spawn([PY, "-c", SERVE, "tcp/::/7001", "udp/::/7002"]);
    undo.push(remoteSvc);
    await hostSvc.waitFor((b) => b.stdout.includes("ready"), 10_000, "host services");
    await remoteSvc.waitFor((b) => b.stdout.includes("ready"), 10_000, "remote services");
    const guest = await makeNetns("rawguest");
    undo.push(guest);
    const slirpd = await startSlirpd({ guest, hostNs: net.host, args: ["--configure", ...args] });
    undo.push(slirpd);
    return {
      net,
      guest,
      slirpd,
      async probe(...specs: string[]) {
        const r = await guest.exec(
          [PY, PROBE, "tun0", "10.0.2.100", "fd00::100", ...specs],
          { timeoutMs: 60_000 },
        );
        if (r.code !== 0) throw new Error(`raw_probe: exit ${r.code}\n${r.stdout}${r.stderr}`);
        return JSON.parse(r.stdout.trim().split("\n").pop()!);
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Probes that must see no SYN-ACK and no UDP answer (an RST or ICMP error is fine). */
function assertClosed(res: Record<string, string[]>, specs: string[]): void {
  const open = specs.filter((s) => res[s].some((r) => r === "tcp SA" || r.startsWith("udp ")));
  assert.deepEqual(open, [], `answered through the firewall: ${JSON.stringify(res)}`);
}

Deno.test({
  name: "firewall raw: loopback and denied hosts under other spellings stay closed",
  ignore: skip(SKIP, "firewall raw frames"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using w = await makeWorld([
      "--allow",
      "all",
      "--disable-host-loopback",
      "--deny",
      "any://192.0.2.11",
    ]);
    const control = ["tcp/192.0.2.2/7001", "tcp/2001:db8::2/7001", "udp/192.0.2.2/7002"];
    const closed = [
      // the host's loopback
      "tcp/127.0.0.1/7001",
      "tcp/::1/7001",
      "tcp/0.0.0.0/7001",
      "tcp/0.1.2.3/7001",
      "tcp/::/7001",
      "tcp/::ffff:127.0.0.1/7001",
      "tcp/::ffff:0.0.0.0/7001",
      "tcp/::127.0.0.1/7001",
      "tcp/64:ff9b::7f00:1/7001",
      "tcp/2002:7f00:1::1/7001",
      "udp/0.0.0.0/7002",
      "udp/::ffff:127.0.0.1/7002",
      "udp/::ffff:0.0.0.0/7002",
      // the denied remote
      "tcp/192.0.2.11/7001",
      "tcp/::ffff:192.0.2.11/7001",
      "tcp/64:ff9b::c000:20b/7001",
      "tcp/2002:c000:20b::1/7001",
      "udp/192.0.2.11/7002",
      "udp/::ffff:192.0.2.11/7002",
      // never a flow
      "tcp/10.0.2.255/7001",
      "tcp/255.255.255.255/7001",
      "tcp/224.0.0.1/7001",
      "udp/10.0.2.255/7002",
      "udp/ff02::1/7002",
    ];
    const res = await w.probe(...control, ...closed);
    assert.ok(res["tcp/192.0.2.2/7001"].includes("tcp SA"), JSON.stringify(res));
    assert.ok(res["tcp/2001:db8::2/7001"].includes("tcp SA"), JSON.stringify(res));
    assert.ok(res["udp/192.0.2.2/7002"].some((r) => r.startsWith("udp echo")), JSON.stringify(res));
    assertClosed(res, closed);
  },
});

Deno.test({
  name: "firewall raw: sources the guest may not use are dropped and counted",
  ignore: skip(SKIP, "firewall raw frames"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using w = await makeWorld(["--allow", "all"]);
    const bad = [
      "tcp/192.0.2.2/7001/127.0.0.1",
      "tcp/192.0.2.2/7001/0.0.0.0",
      "tcp/192.0.2.2/7001/224.0.0.9",
      "tcp/192.0.2.2/7001/192.0.2.99", // another host's address
      "tcp/192.0.2.2/7001/10.0.2.2", // slirpd's own gateway address
      "tcp/192.0.2.2/7001/10.0.2.255",
      "udp/192.0.2.2/7002/127.0.0.1",
      "tcp/2001:db8::2/7001/ff02::1",
      "tcp/2001:db8::2/7001/2001:db8::99",
      "tcp/2001:db8::2/7001/fd00::2",
      "udp/2001:db8::2/7002/::",
    ];
    const res = await w.probe("tcp/192.0.2.2/7001", ...bad);
    assert.ok(res["tcp/192.0.2.2/7001"].includes("tcp SA"), JSON.stringify(res));
    const answered = bad.filter((s) => res[s].length > 0);
    assert.deepEqual(answered, [], `answered: ${JSON.stringify(res)}`);
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
    const m = /"dropBadSource":(\d+)/.exec(w.slirpd.stderr);
    assert.ok(m !== null && Number(m[1]) >= bad.length, w.slirpd.stderr.slice(-2000));
  },
});

Deno.test({
  name: "firewall raw: a guest connecting from ::1 (tentative address) fails fast",
  ignore: skip(needs("ip", "nsenter", "python3", "sysctl"), "::1 source"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using w = await makeWorld(["--allow", "all"]);
    const g = w.guest;
    // The guest's only IPv6 address stays tentative (60 DAD probes) and it has no link-local
    // one, so Linux picks lo's ::1 as the source of a connect to a routed destination.
    await g.must(["sysctl", "-qw", "net.ipv6.conf.tun0.dad_transmits=60"]);
    await g.must(["ip", "-6", "addr", "flush", "dev", "tun0"]);
    await g.must(["ip", "-6", "addr", "add", "fd00::100/64", "dev", "tun0"]);
    await g.must([
      ...["ip", "-6", "neigh", "replace", "fd00::2", "lladdr", "52:55:0a:00:02:02"],
      ...["dev", "tun0", "nud", "permanent"],
    ]);
    const py = "import socket, time\n" +
      "s = socket.socket(socket.AF_INET6); s.settimeout(10); t = time.time()\n" +
      "try:\n  s.connect(('2001:db8::2', 7001)); r = 'connected ' + s.getsockname()[0]\n" +
      "except Exception as e:\n  r = 'error ' + type(e).__name__\n" +
      "print(r, int((time.time() - t) * 1000))";
    const r = await g.exec(["python3", "-c", py], { timeoutMs: 30_000 });
    const [what, ms] = r.stdout.trim().split(/ (?=\d+$)/);
    assert.equal(what, "error PermissionError", r.stdout + r.stderr);
    assert.ok(Number(ms) < 3_000, `connect took ${ms} ms`);
    await w.slirpd.stop();
    assert.match(w.slirpd.stderr, /"dropBadSource":[1-9]/);
  },
});
