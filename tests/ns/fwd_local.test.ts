// Local forwards (-L) end to end: slirpd runs in an isolated host namespace, the peer servers
// run in the guest (tests/support/fwd_peer.ts), clients connect from the host namespace or from the
// "remote" namespace behind it. Asserted: echo over TCP and UDP, IPv4, IPv6 and across
// families; the source address the guest sees (the client's, the gateway's for loopback and
// cross-family clients, the PROXY header's for tcppp v1 and v2); three datagrams stay three
// (two of them larger than the MTU); UDP flows end when idle; a host name as bind address;
// bind port 0; the log lines.

import assert from "node:assert/strict";
import {
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  startSlirpd,
} from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3");

const FORWARDS = [
  "7", // defaults: 127.0.0.1:7 → 10.0.2.100:7
  "udp://7",
  "192.0.2.1:2001:10.0.2.100:7",
  "[2001:db8::1]:2002:[fd00::100]:7",
  "192.0.2.1:2003:[fd00::100]:7", // IPv4 client → IPv6 guest
  "[2001:db8::1]:2004:10.0.2.100:7", // IPv6 client → IPv4 guest
  "udp://192.0.2.1:2001:10.0.2.100:7",
  "udp://[2001:db8::1]:2002:[fd00::100]:7",
  "udp://192.0.2.1:2003:[fd00::100]:7",
  "tcppp://127.0.0.1:2005:10.0.2.100:7",
  "0.0.0.0:2006:10.0.2.100:7", // dual-stack
  "localhost:2009:10.0.2.100:7",
  "0", // a free port, logged
];

async function client(ns: Netns, args: string[]): Promise<string> {
  const r = await ns.exec(["python3", await fwdPeer(), ...args], { timeoutMs: 30_000 });
  assert.ok(r.code === 0 && r.stdout.includes("OK"), `${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

Deno.test({
  name: "fwd -L: tcp/udp echo v4, v6, across families; the guest sees the client (or PROXY) source",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    await using srv = guest.spawn(["python3", await fwdPeer(), "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    // never: this asserts the tap path's source choice (fwd_splice.test.ts: the spliced path).
    const args = ["--configure", "--udp-timeout", "2", "--forward-splice", "never"];
    for (const f of FORWARDS) args.push("-L", f);
    await using slirpd = await startSlirpd({ guest, hostNs: net.host, args });
    const h = net.host, r = net.remote;
    const R4 = HostNet.REMOTE4, R6 = HostNet.REMOTE6;

    // Loopback clients are on the sanity block list: the guest sees the gateway.
    assert.equal(await client(h, ["tcp", "127.0.0.1", "7"]), "OK FROM 10.0.2.2");
    assert.equal(await client(h, ["udp", "127.0.0.1", "7"]), "OK FROM 10.0.2.2");
    // Routable clients are seen as themselves, in their own family.
    assert.equal(await client(r, ["tcp", HostNet.HOST4, "2001"]), `OK FROM ${R4}`);
    assert.equal(await client(r, ["tcp", HostNet.HOST6, "2002"]), `OK FROM ${R6}`);
    assert.equal(await client(r, ["udp", HostNet.HOST4, "2001"]), `OK FROM ${R4}`);
    assert.equal(await client(r, ["udp", HostNet.HOST6, "2002"]), `OK FROM ${R6}`);
    // Across families the guest sees the gateway of the target's family.
    assert.equal(await client(r, ["tcp", HostNet.HOST4, "2003"]), "OK FROM fd00::2");
    assert.equal(await client(r, ["tcp", HostNet.HOST6, "2004"]), "OK FROM 10.0.2.2");
    assert.equal(await client(r, ["udp", HostNet.HOST4, "2003"]), "OK FROM fd00::2");
    // tcppp: the PROXY header's source (v1 and v2); an IPv6 one toward IPv4 → the gateway.
    const pp = ["tcp", "127.0.0.1", "2005"];
    assert.equal(await client(h, [...pp, "pp1", "198.51.100.7"]), "OK FROM 198.51.100.7");
    assert.equal(await client(h, [...pp, "pp2", "203.0.113.9"]), "OK FROM 203.0.113.9");
    assert.equal(await client(h, [...pp, "pp2", "2001:db8:1::5"]), "OK FROM 10.0.2.2");
    assert.equal(await client(h, [...pp, "pp1split", "198.51.100.8"]), "OK FROM 198.51.100.8");
    assert.equal(await client(h, [...pp, "pp2split", "198.51.100.9"]), "OK FROM 198.51.100.9");
    // Not a PROXY header: closed, never forwarded.
    assert.match(
      await client(h, ["raw", "127.0.0.1", "2005", "GET / HTTP/1.0\r\n\r\n"]),
      /OK closed/,
    );
    // 0.0.0.0 listens on both families.
    assert.equal(await client(h, ["tcp", "::1", "2006"]), "OK FROM 10.0.2.2");
    assert.equal(await client(r, ["tcp", HostNet.HOST4, "2006"]), `OK FROM ${R4}`);
    assert.equal(await client(r, ["tcp", HostNet.HOST6, "2006"]), "OK FROM 10.0.2.2");
    // A host name as the bind address (resolved at start).
    assert.equal(await client(h, ["tcp", "127.0.0.1", "2009"]), "OK FROM 10.0.2.2");

    const out = slirpd.stdout;
    assert.match(out, /\[\+\] local-fwd Local listen tcp:\/\/127\.0\.0\.1:7\n/);
    assert.match(out, /\[\+\] local-fwd Local listen udp:\/\/127\.0\.0\.1:7\n/);
    assert.match(out, /\[\+\] local-fwd Local listen tcp:\/\/\[2001:db8::1\]:2002\n/);
    assert.match(out, /\[\+\] local-fwd Local PP listen tcp:\/\/127\.0\.0\.1:2005\n/);
    assert.match(out, /\[\+\] local-fwd Local listen tcp:\/\/\[::\]:2006\n/);
    const free = out.match(/local-fwd Local listen tcp:\/\/127\.0\.0\.1:(\d+)\n/g) ?? [];
    assert.ok(
      free.some((l) => !/:(7|2005|2009)\n$/.test(l) && !/:0\n$/.test(l)),
      `bind port 0 logs the port it got:\n${out}`,
    );
    assert.match(
      out,
      /\[\+\] tcp:\/\/192\.0\.2\.2:\d+-192\.0\.2\.1:2001\/192\.0\.2\.2:\d+-10\.0\.2\.100:7 local-fwd conn\n/,
    );
    await slirpd.waitFor((b) => /2001\/\S+ local-fwd done: l=11005 r=11020/.test(b.stdout), 5000);
    assert.match(
      out,
      /\[\+\] udp:\/\/\[2001:db8::2\]:\d+-\[2001:db8::1\]:2002\/\S+ local-fwd conn/,
    );
    assert.match(
      out,
      /tcp:\/\/127\.0\.0\.1:\d+-127\.0\.0\.1:2005\/198\.51\.100\.7:\d+-\S+ local-fwd PP conn/,
    );
    await slirpd.waitFor((b) =>
      /:2005\/10\.0\.2\.100:7 local-fwd PP error: bad magic/.test(b.stdout)
    );
    // UDP clients' flows end when idle (--udp-timeout 2), with their byte counts.
    const idle =
      /\[-\] udp:\/\/192\.0\.2\.2:\d+-192\.0\.2\.1:2001\/\S+ local-fwd done: l=9933 r=\d+ \(idle\)/;
    await slirpd.waitFor((b) => idle.test(b.stdout), 10_000, "idle UDP flow");
    const st = await slirpd.stop();
    assert.equal(st.code, 0);
  },
});
