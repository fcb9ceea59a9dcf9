// --outbound-addr / --outbound-addr6 end to end: routed flows leave the host from the given
// source address, for TCP, UDP and ICMP echo, IPv4 and IPv6.
//
// The isolated host namespace gets a second address on its veth (192.0.2.11, 2001:db8::11,
// secondary, so the kernel would never pick it by itself: for IPv6, 2001:db8::1 shares the
// longer prefix with 2001:db8::2). The remote namespace runs a TCP and a UDP server on :7 that
// answer with the peer address they saw, and raw ICMP sockets that print the source of every
// echo request.

import assert from "node:assert/strict";
import { HostNet, makeHostNet, makeNetns, needs, startSlirpd } from "../support/harness.ts";

const SKIP = needs("python3", "ping", "sysctl");

const PY = String.raw`
import socket, sys, threading, time

def peer(a):
    return a[0][7:] if a[0].startswith("::ffff:") else a[0]

def serve():
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("::", 7))
    t.listen(16)
    def tcp():
        while True:
            c, a = t.accept()
            try:
                c.sendall(("peer " + peer(a) + "\n").encode())
            finally:
                c.close()
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", 7))
    def udp():
        while True:
            d, a = u.recvfrom(2048)
            u.sendto(("peer " + peer(a)).encode(), a)
    def sniff(family, proto, echo):
        s = socket.socket(family, socket.SOCK_RAW, proto)
        while True:
            d, a = s.recvfrom(65535)
            # IPv4 raw sockets hand the IP header too; IPv6 ones only the ICMPv6 message.
            t = d[(d[0] & 15) * 4] if family == socket.AF_INET else d[0]
            if t == echo:
                print("icmp " + a[0], flush=True)
    for f, args in ((tcp, ()), (udp, ()),
                    (sniff, (socket.AF_INET, socket.IPPROTO_ICMP, 8)),
                    (sniff, (socket.AF_INET6, socket.IPPROTO_ICMPV6, 128))):
        threading.Thread(target=f, args=args, daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)

def probe(host):
    f = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(f, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, 7))
    print("tcp " + s.recv(100).decode().strip(), flush=True)
    u = socket.socket(f, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.connect((host, 7))
    u.send(b"x")
    print("udp " + u.recv(100).decode(), flush=True)

if sys.argv[1] == "serve":
    serve()
else:
    probe(sys.argv[2])
`;

Deno.test({
  name: "outbound: --outbound-addr[6] is the source of routed TCP, UDP and ping (v4 and v6)",
  ignore: SKIP !== null,
  fn: async () => {
    const py = await Deno.makeTempFile({ prefix: "slirpd-outbound-", suffix: ".py" });
    try {
      await Deno.writeTextFile(py, PY);
      await using net = await makeHostNet();
      // The host's veth: the device holding 192.0.2.1.
      const line = await net.host.must(["ip", "-o", "-4", "addr", "show", "to", "192.0.2.1/32"]);
      const dev = line.trim().split(/\s+/)[1];
      await net.host.must(["ip", "addr", "add", "192.0.2.11/24", "dev", dev]);
      await net.host.must(["ip", "addr", "add", "2001:db8::11/64", "dev", dev, "nodad"]);
      // Ping sockets for slirpd's routed echo (per netns), and the first IPv6 neighbour
      // resolution of a fresh veth (~1 s, link-local DAD) out of the way.
      await net.host.must(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
      await net.host.exec(["ping", "-6", "-c1", "-W3", HostNet.REMOTE6]);
      await using remote = net.remote.spawn(["python3", py, "serve"]);
      await remote.waitFor((b) => b.stdout.includes("ready"), 10_000, "remote servers");
      await using guest = await makeNetns("obguest");
      await using _slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        args: [
          "--configure",
          "--enable-host",
          "--outbound-addr",
          "192.0.2.11",
          "--outbound-addr6",
          "2001:db8::11",
        ],
      });
      for (
        const [remote4or6, src] of [[HostNet.REMOTE4, "192.0.2.11"], [
          HostNet.REMOTE6,
          "2001:db8::11",
        ]]
      ) {
        const r = await guest.exec(["python3", py, "probe", remote4or6], { timeoutMs: 15_000 });
        assert.equal(r.stdout, `tcp peer ${src}\nudp peer ${src}\n`, `${remote4or6}: ${r.stderr}`);
        const p = await guest.exec(["ping", "-c1", "-W3", remote4or6]);
        assert.equal(p.code, 0, `ping ${remote4or6}: ${p.stdout}${p.stderr}`);
        await remote.waitFor(
          (b) => b.stdout.includes(`icmp ${src}\n`),
          5_000,
          `an echo request from ${src} at the remote`,
        );
      }
      // Every echo request the remote saw came from the outbound addresses.
      const sources = remote.stdout.split("\n").filter((l) => l.startsWith("icmp "));
      assert.ok(sources.length >= 2, remote.stdout);
      for (const l of sources) assert.match(l, /^icmp (192\.0\.2\.11|2001:db8::11)$/);
    } finally {
      await Deno.remove(py).catch(() => {});
    }
  },
});
