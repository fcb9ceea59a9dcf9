// Routed ICMP echo end to end: `ping` in the guest netns, slirpd in the isolated "host"
// namespace, the pinged address in the "remote" namespace. Whether the remote kernel really
// answered is read from its own ICMP counters (/proc/net/snmp, snmp6: InEchos).
//
// Covered: IPv4 and IPv6 echo through unprivileged ping sockets (ping_group_range set in the
// host netns), with 3000-byte pings fragmented both ways; identifiers kept (seen by a sniffer in
// the remote namespace) and, when another ping socket on the host holds the ident, rewritten
// back in the replies; the fallback when ping_group_range forbids ping sockets (answered
// locally, said once in the log, the remote never sees a request); a blocked destination.

import assert from "node:assert/strict";
import {
  type Background,
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";

const SKIP = needs("ping", "python3", "sysctl");

const FALLBACK_LINE = /ICMP echo sockets are not permitted/;

interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
}

async function makeWorld(args: string[], pingRange: string | null): Promise<World> {
  const net = await makeHostNet();
  const owned: AsyncDisposable[] = [net];
  const dispose = async () => {
    for (const d of owned.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
  };
  try {
    // ping_group_range is per network namespace: this one is where slirpd's sockets live.
    if (pingRange !== null) {
      await net.host.must(["sysctl", "-w", `net.ipv4.ping_group_range=${pingRange}`]);
    }
    // A fresh veth pair resolves its first IPv6 neighbour only after ~1 s (link-local DAD).
    await net.host.exec(["ping", "-6", "-c1", "-W3", HostNet.REMOTE6]);
    const guest = await makeNetns("guest");
    owned.push(guest);
    const slirpd = await startSlirpd({ guest, hostNs: net.host, args: ["--configure", ...args] });
    owned.push(slirpd);
    return { net, guest, slirpd, [Symbol.asyncDispose]: dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Echo requests the remote kernel has received (IPv4 or IPv6). */
async function inEchos(ns: Netns, family: 4 | 6): Promise<number> {
  if (family === 4) {
    const lines = (await ns.must(["cat", "/proc/net/snmp"])).split("\n").filter((l) =>
      l.startsWith("Icmp:")
    );
    const names = lines[0].split(/\s+/), values = lines[1].split(/\s+/);
    return Number(values[names.indexOf("InEchos")]);
  }
  const m = (await ns.must(["cat", "/proc/net/snmp6"])).match(/Icmp6InEchos\s+(\d+)/);
  return Number(m![1]);
}

async function ping(w: World, family: 4 | 6, count: number, size = 56) {
  const addr = family === 4 ? HostNet.REMOTE4 : HostNet.REMOTE6;
  return await w.guest.exec([
    "ping",
    `-${family}`,
    "-c",
    `${count}`,
    "-i",
    "0.1",
    "-W",
    "2",
    "-s",
    `${size}`,
    addr,
  ], { timeoutMs: 20_000 });
}

Deno.test({
  name: "ping routing: echo through ping sockets (v4/v6, 3000-byte fragmented), remote answers",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"], "0 2147483647");
    for (const family of [4, 6] as const) {
      const before = await inEchos(w.net.remote, family);
      const r = await ping(w, family, 3);
      assert.equal(r.code, 0, `ping -${family}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /3 received/);
      const big = await ping(w, family, 2, 3000);
      assert.equal(big.code, 0, `ping -${family} -s 3000: ${big.stdout}${big.stderr}`);
      assert.match(big.stdout, /2 received/);
      assert.match(big.stdout, /3008 bytes from/);
      const got = await inEchos(w.net.remote, family) - before;
      assert.equal(got, 5, `IPv${family}: the remote kernel received the 5 requests`);
    }
    assert.doesNotMatch(w.slirpd.stderr, FALLBACK_LINE);
  },
});

const SNIFF_PY = String.raw`
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
while True:
    d = s.recv(65535)
    hl = (d[0] & 15) * 4
    t, c, _, i, q = struct.unpack("!BBHHH", d[hl:hl + 8])
    if t == 8:
        print("request id=%d seq=%d" % (i, q), flush=True)
`;

const HOLD_PY = String.raw`
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("holding", flush=True)
time.sleep(60)
`;

const ECHO_PY = String.raw`
import os, socket, struct, sys, time
host, ident, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
data = os.urandom(32)
def csum(b):
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n > 0xffff:
        n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + data), ident, seq) + data
s.sendto(pkt, (host, 0))
end = time.monotonic() + 3
while time.monotonic() < end:
    d = s.recv(65535)
    hl = (d[0] & 15) * 4
    t, c, _, i, q = struct.unpack("!BBHHH", d[hl:hl + 8])
    if t == 0 and q == seq and d[hl + 8:] == data:
        assert i == ident, "reply id %d, sent %d" % (i, ident)
        print("OK reply id=%d seq=%d" % (i, q))
        sys.exit(0)
sys.exit("no reply")
`;

async function pyFile(src: string): Promise<string> {
  const p = await Deno.makeTempFile({ prefix: "slirpd-ping-", suffix: ".py" });
  await Deno.writeTextFile(p, src);
  return p;
}

Deno.test({
  name: "ping routing: identifiers are kept, and rewritten back when the host holds the ident",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"], "0 2147483647");
    const files = [await pyFile(SNIFF_PY), await pyFile(HOLD_PY), await pyFile(ECHO_PY)];
    const bg: Background[] = [];
    try {
      const sniff = w.net.remote.spawn(["python3", files[0]]);
      bg.push(sniff);
      await sniff.waitFor((b) => b.stdout.includes("ready"), 10_000, "sniffer");
      const hold = w.net.host.spawn(["python3", files[1], `${0x4242}`]);
      bg.push(hold);
      await hold.waitFor((b) => b.stdout.includes("holding"), 10_000, "ident holder");
      for (const [id, seq] of [[0x1111, 7], [0x4242, 9]]) {
        const r = await w.guest.exec(["python3", files[2], HostNet.REMOTE4, `${id}`, `${seq}`]);
        assert.equal(r.code, 0, `echo id ${id}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, new RegExp(`OK reply id=${id} seq=${seq}`));
      }
      await sniff.waitFor((b) => /seq=9/.test(b.stdout), 5_000, "both requests at the remote");
      assert.match(sniff.stdout, /request id=4369 seq=7/, "a free ident leaves unchanged");
      const taken = sniff.stdout.match(/request id=(\d+) seq=9/)!;
      assert.notEqual(Number(taken[1]), 0x4242, "the held ident cannot be used on the host");
      await w.slirpd.stop();
      const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
      assert.equal(stats.ping.idRewritten, 1, JSON.stringify(stats.ping));
    } finally {
      for (const b of bg) await b[Symbol.asyncDispose]();
      for (const f of files) await Deno.remove(f);
    }
  },
});

Deno.test({
  name: "ping routing: ping sockets forbidden → answered locally, said once in the log",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"], "1 0");
    for (const family of [4, 6] as const) {
      const before = await inEchos(w.net.remote, family);
      const r = await ping(w, family, 3);
      assert.equal(r.code, 0, `ping -${family}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /3 received/);
      assert.equal(await inEchos(w.net.remote, family), before, "the remote saw no request");
    }
    assert.equal(w.slirpd.stderr.match(new RegExp(FALLBACK_LINE, "g"))?.length, 1);
  },
});

Deno.test({
  name: "ping routing: without --enable-routing/--enable-host the destination gets nothing",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld([], "0 2147483647");
    for (const family of [4, 6] as const) {
      const before = await inEchos(w.net.remote, family);
      const r = await w.guest.exec([
        "ping",
        `-${family}`,
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        family === 4 ? HostNet.REMOTE4 : HostNet.REMOTE6,
      ]);
      assert.notEqual(r.code, 0, "no reply");
      assert.match(r.stdout, /0 received/);
      assert.equal(await inEchos(w.net.remote, family), before);
    }
    await w.slirpd.stop();
    const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
    assert.ok(stats.ping.policyRefused >= 4, JSON.stringify(stats.ping));
  },
});
