// Remote forwards (-R) end to end: the peer servers run in the isolated host namespace (on its
// loopback, reachable as 127.0.0.1 and ::1), clients in the guest. slirpd runs without
// --enable-host or --enable-routing: remote forwards are not subject to the firewall.
// Asserted: TCP and UDP, IPv4, IPv6 and across families; bind addresses other than the gateway
// (outside the guest's prefix, and inside it, where slirpd answers ARP/NDP for them); bind port
// 0 (every port of the address, kept); a host name as target; the log lines.

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, type Netns, startSlirpd } from "./harness.ts";
import { fwdPeer } from "./fwd_peer.ts";

const SKIP = needs("python3");

const FORWARDS = [
  "3007:127.0.0.1:7", // default bind: the gateway 10.0.2.2
  "192.0.2.5:3008:127.0.0.1:7", // any address: routed to slirpd by the guest
  "10.0.2.5:3009:127.0.0.1:7", // in the guest's prefix: ARP
  "[fd00::2]:3010:[::1]:7",
  "[fd00::5]:3011:[::1]:7", // NDP
  "10.0.2.2:3012:[::1]:7", // IPv4 guest → IPv6 host
  "3013:localhost:7",
  "10.0.2.7:0:127.0.0.1:0", // every port of 10.0.2.7, same port on the host
  "udp://3007:127.0.0.1:7",
  "udp://[fd00::2]:3010:[::1]:7",
  "udp://10.0.2.5:3009:[::1]:7",
];

async function client(ns: Netns, args: string[]): Promise<string> {
  const r = await ns.exec(["python3", await fwdPeer(), ...args], { timeoutMs: 30_000 });
  assert.ok(r.code === 0 && r.stdout.includes("OK"), `${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

Deno.test({
  name: "fwd -R: tcp/udp to host services, v4, v6, across families, any bind address",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    await using srv = net.host.spawn(["python3", await fwdPeer(), "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "host servers");
    const args = ["--configure"];
    for (const f of FORWARDS) args.push("-R", f);
    await using slirpd = await startSlirpd({ guest, hostNs: net.host, args });

    assert.equal(await client(guest, ["tcp", "10.0.2.2", "3007"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["tcp", "192.0.2.5", "3008"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["tcp", "10.0.2.5", "3009"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["tcp", "fd00::2", "3010"]), "OK FROM ::1");
    assert.equal(await client(guest, ["tcp", "fd00::5", "3011"]), "OK FROM ::1");
    assert.equal(await client(guest, ["tcp", "10.0.2.2", "3012"]), "OK FROM ::1");
    assert.equal(await client(guest, ["tcp", "10.0.2.2", "3013"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["tcp", "10.0.2.7", "7"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["udp", "10.0.2.2", "3007"]), "OK FROM 127.0.0.1");
    assert.equal(await client(guest, ["udp", "fd00::2", "3010"]), "OK FROM ::1");
    assert.equal(await client(guest, ["udp", "10.0.2.5", "3009"]), "OK FROM ::1");
    // Nothing else of the host is reachable: no forward, no --enable-host.
    const r = await guest.exec(["python3", await fwdPeer(), "tcp", "10.0.2.2", "7"]);
    assert.notEqual(r.code, 0, "10.0.2.2:7 is not forwarded and must not connect");
    // The in-prefix bind addresses are answered on the link.
    const neigh = await guest.must(["ip", "neigh", "show"]);
    assert.match(neigh, /10\.0\.2\.5 dev \S+ lladdr 52:55:0a:00:02:02/);
    assert.match(neigh, /fd00::5 dev \S+ lladdr 52:55:0a:00:02:02/);

    const out = slirpd.stdout;
    assert.match(out, /\[\+\] Accepting on remote side tcp:\/\/10\.0\.2\.2:3007\n/);
    assert.match(out, /\[\+\] Accepting on remote side tcp:\/\/\[fd00::2\]:3010\n/);
    assert.match(out, /\[\+\] Accepting on remote side udp:\/\/10\.0\.2\.5:3009\n/);
    assert.equal((await slirpd.stop()).code, 0);
  },
});
