// Remote forwards (-R) end to end: the peer servers run in the isolated host namespace (on its
// loopback, reachable as 127.0.0.1 and ::1), clients in the guest. slirpd runs without
// --enable-host or --enable-routing: remote forwards are not subject to the firewall.
// Asserted: TCP and UDP, IPv4, IPv6 and across families; bind addresses other than the gateway
// (outside the guest's prefix, and inside it, where slirpd answers ARP/NDP for them); bind port
// 0 (every port of the address, kept); a host name as target; the log lines (slirpnetstack's
// "remote-fwd conn", not "Routing conn"). Removing a remote forward (the API socket's
// remove_hostfwd) resets its live TCP connections, closes its UDP flows, refuses new ones.

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, type Netns, startSlirpd } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

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
    // Connection lines as slirpnetstack's remote forwards print them: GUEST-BIND/HOST.
    assert.match(
      out,
      /\[\+\] tcp:\/\/10\.0\.2\.100:\d+-10\.0\.2\.2:3007\/127\.0\.0\.1:\d+-127\.0\.0\.1:7 remote-fwd conn new\n/,
    );
    assert.match(
      out,
      /\[\+\] tcp:\/\/10\.0\.2\.100:\d+-10\.0\.2\.2:3012\/\[::1\]:\d+-\[::1\]:7 remote-fwd conn new\n/,
    );
    assert.match(
      out,
      /\[\+\] udp:\/\/\[fd00::100\]:\d+-\[fd00::2\]:3010\/\[::1\]:\d+-\[::1\]:7 remote-fwd conn new\n/,
    );
    await slirpd.waitFor(
      (b) => /-10\.0\.2\.7:7\/\S+ remote-fwd conn done: l=11005 r=11020\n/.test(b.stdout),
      5000,
      "the done line",
    );
    assert.doesNotMatch(out, /Routing conn/, "every flow here is a remote forward's");
    assert.equal((await slirpd.stop()).code, 0);
  },
});

/** One API socket request (slirp4netns' protocol: write, shut down the write side, read). */
async function api(path: string, req: object): Promise<unknown> {
  const c = await Deno.connect({ transport: "unix", path });
  try {
    await c.write(new TextEncoder().encode(JSON.stringify(req)));
    await c.closeWrite();
    return JSON.parse(await new Response(c.readable).text());
  } finally {
    try {
      c.close();
    } catch { /* closed by the response stream */ }
  }
}

Deno.test({
  name: "fwd -R: removing it resets its connections, closes its flows, refuses new ones",
  ignore: SKIP !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "slirpd-fwdr-" });
    const path = `${dir}/api.sock`;
    try {
      await using net = await makeHostNet();
      await using guest = await makeNetns("guest");
      const py = await fwdPeer();
      await using srv = net.host.spawn(["python3", py, "serve"]);
      await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "host servers");
      await using slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        args: [
          "--configure",
          "--api-socket",
          path,
          "-R",
          "3020:127.0.0.1:7",
          "-R",
          "udp://3020:127.0.0.1:7",
        ],
      });
      // Once in ~10 full-suite runs the first held connection saw EOF before the server's
      // greeting (not reproduced alone or under CPU load): say so loudly, then try once more.
      let hold = guest.spawn(["python3", py, "hold", "10.0.2.2", "3020", "20"]);
      await hold.waitFor((b) => /connected[^\n]*\n/.test(b.stdout), 10_000, "held connection");
      if (!/connected FROM/.test(hold.stdout)) {
        console.log(
          `WOBBLY: empty greeting: ${hold.stdout}${hold.stderr}\nserver: ${srv.stderr}\n` +
            `slirpd: ${slirpd.stdout}`,
        );
        await hold.stop("SIGKILL");
        hold = guest.spawn(["python3", py, "hold", "10.0.2.2", "3020", "20"]);
        await hold.waitFor((b) => /connected[^\n]*\n/.test(b.stdout), 10_000, "held connection");
      }
      await using _hold = hold;
      assert.match(hold.stdout, /connected FROM 127\.0\.0\.1/);
      assert.equal(await client(guest, ["udp", "10.0.2.2", "3020"]), "OK FROM 127.0.0.1");

      // Rows 1 and 2 are the -R flags: removing them ends what they carry.
      assert.deepEqual(await api(path, { execute: "remove_hostfwd", arguments: { id: 1 } }), {
        return: {},
      });
      await hold.waitFor((b) => b.stdout.includes("OK closed"), 10_000, "the close");
      assert.match(hold.stdout, /OK closed reset/, "the guest gets a RST");
      const r = await guest.exec(["python3", py, "tcp", "10.0.2.2", "3020"], { timeoutMs: 20_000 });
      assert.notEqual(r.code, 0, "no forward any more");
      assert.match(r.stderr, /Connection refused/);
      assert.deepEqual(await api(path, { execute: "remove_hostfwd", arguments: { id: 2 } }), {
        return: {},
      });
      await slirpd.waitFor(
        (b) =>
          /udp:\/\/\S+-10\.0\.2\.2:3020\/\S+ remote-fwd conn done: .*\(forward removed\)\n/.test(
            b.stdout,
          ),
        5000,
        "the UDP flow closed",
      );
      assert.match(
        slirpd.stdout,
        /\[-\] tcp:\/\/10\.0\.2\.100:\d+-10\.0\.2\.2:3020\/\S+ remote-fwd conn done: l=0 r=\d+ \(forward removed\)\n/,
      );
      assert.equal((await slirpd.stop()).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
