// TCP through slirpd under pressure: a host reader that does not read (backpressure must stop
// the guest's sender and slirpd's memory must stay bounded), a lossy link (every byte still
// arrives intact), and the whole MTU range without the vnet header.

import assert from "node:assert/strict";
import { HostNet, makeNetns, must, needs, skip } from "../support/harness.ts";
import { makeWorld, rss } from "../support/tcp_peer.ts";

const SKIP = needs("python3", "tc");

Deno.test({
  name:
    "tcp pressure: a host server that does not read stops the guest; slirpd's memory is bounded",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--quiet"]);
    const pid = w.slirpd.pid;
    // Warm up (JIT, buffers), then take the baseline.
    await w.client(["upload", HostNet.REMOTE4, String(32 << 20)], 60_000);
    const before = await rss(pid);
    const gate = await Deno.makeTempFile({ prefix: "slirpd-gate-" });
    await Deno.remove(gate);
    try {
      const pusher = w.guest.spawn([
        "python3",
        w.py,
        "slowpush",
        HostNet.REMOTE4,
        String(256 << 20),
        "4",
        gate,
      ]);
      await using _p = pusher;
      await pusher.waitFor((b) => b.stdout.includes("blocked-after"), 30_000, "the push to block");
      const sent = Number(pusher.stdout.match(/blocked-after (\d+)/)![1]);
      const during = await rss(pid);
      console.log(
        `guest blocked after ${(sent / 1e6).toFixed(1)} MB; slirpd RSS ${
          (before / 1e6).toFixed(0)
        } → ${(during / 1e6).toFixed(0)} MB`,
      );
      // The guest could only hand over what the socket buffers on the way hold (guest send
      // buffer + host socket send/receive buffers, a few MB each), not the 256 MB it tried.
      assert.ok(sent < 48 << 20, `the guest pushed ${sent} bytes into a server that reads nothing`);
      assert.ok(during - before < 64 << 20, `slirpd grew by ${during - before} bytes`);
      await Deno.writeTextFile(gate, "go");
      const st = await pusher.done;
      assert.equal(st.code, 0, `${pusher.stdout}${pusher.stderr}`);
      assert.match(pusher.stdout, /OK/);
    } finally {
      await Deno.remove(gate).catch(() => {});
    }
  },
});

// A lossy link between the guest's TCP and slirpd. Loss has to happen after the sender's TCP
// thinks the segment went out: nftables drops in the sender's own output path (or at its
// device's egress) fail the transmit synchronously, so the kernel sends the segment again as
// new data, with no hole for slirpd to see and no retransmission counted (that made "the
// guest never retransmitted" a matter of luck). So the guest's client runs one hop further, in
// a namespace behind a veth, and the guest namespace (which holds the tap) forwards and
// masquerades for it (slirpd accepts only the guest's own source address) and drops 5% of the
// TCP segments it forwards, each way (`numgen random mod 100 < 5`). Checked: loss happened
// both ways (nft's counters), both TCPs retransmitted (the client's TcpRetransSegs, slirpd's
// retransmits on its stop line), and the peers' hashes.
const NFT = `table ip sdtloss {
  chain hop {
    type filter hook forward priority 0;
    iifname "sdtl0" meta l4proto tcp numgen random mod 100 < 5 counter drop
    oifname "sdtl0" meta l4proto tcp numgen random mod 100 < 5 counter drop
  }
  chain out4 { type nat hook postrouting priority 100; oifname "tun0" masquerade; }
}`;

/** TcpRetransSegs of a namespace (nstat -az: absolute counters). */
async function retransSegs(ns: { must(c: string[]): Promise<string> }): Promise<number> {
  const out = await ns.must(["nstat", "-az", "TcpRetransSegs"]);
  return Number(/TcpRetransSegs\s+(\d+)/.exec(out)?.[1] ?? "0");
}

Deno.test({
  name: "tcp pressure: 5% loss each way on a hop before the tap still delivers every byte",
  ignore: skip(SKIP ?? needs("nft", "nstat"), "tcp loss"),
  fn: async () => {
    await using w = await makeWorld([]);
    await using client = await makeNetns("lossy");
    const g = w.guest.name;
    await must([
      "ip",
      "link",
      "add",
      "sdtl0",
      "netns",
      g,
      "type",
      "veth",
      "peer",
      "name",
      "sdtl1",
      "netns",
      client.name,
    ]);
    await w.guest.must(["ip", "addr", "add", "10.0.3.1/24", "dev", "sdtl0"]);
    await w.guest.must(["ip", "link", "set", "sdtl0", "up"]);
    await w.guest.must(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    await client.must(["ip", "addr", "add", "10.0.3.2/24", "dev", "sdtl1"]);
    await client.must(["ip", "link", "set", "sdtl1", "up"]);
    await client.must(["ip", "route", "add", "default", "via", "10.0.3.1"]);
    const nft = await w.guest.exec(["nft", "-f", "-"], { stdin: NFT });
    assert.equal(nft.code, 0, nft.stderr);
    const peer = async (args: string[]) => {
      const r = await client.exec(["python3", w.py, ...args], { timeoutMs: 180_000 });
      assert.ok(
        r.code === 0 && r.stdout.includes("OK"),
        `${args.join(" ")}: ${r.stdout}${r.stderr}`,
      );
    };
    const retrans0 = await retransSegs(client);
    const n = String(16 << 20);
    await peer(["upload", HostNet.REMOTE4, n]);
    await peer(["download", HostNet.REMOTE4, n]);
    await peer(["echo", HostNet.REMOTE4, "1000000"]);
    await peer(["many", HostNet.REMOTE4, "20"]);
    const clientRtx = (await retransSegs(client)) - retrans0;
    const rules = await w.guest.must(["nft", "list", "table", "ip", "sdtloss"]);
    const dropped = [...rules.matchAll(/packets (\d+)/g)].map((m) => Number(m[1]));
    assert.equal((await w.slirpd.stop()).code, 0);
    const stop = /Slirpnetstack stopped: (\{.*\})/.exec(w.slirpd.stderr);
    assert.ok(stop !== null, w.slirpd.stderr.slice(-2000));
    const tcp = JSON.parse(stop[1]).tcp as Record<string, number>;
    const slirpdRtx = (tcp.retransmits ?? 0) + (tcp.fastRetransmits ?? 0) + (tcp.probes ?? 0);
    console.log(
      `nft dropped to/from the client ${
        dropped.join("/")
      }; retransmissions: client ${clientRtx}, ` +
        `slirpd ${JSON.stringify(tcp)}`,
    );
    assert.ok(dropped.length === 2 && dropped[0] > 0 && dropped[1] > 0, rules);
    assert.ok(clientRtx > 0, "the guest's client never retransmitted");
    assert.ok(slirpdRtx > 0 || (tcp.retransmittedBytes ?? 0) > 0, "slirpd never retransmitted");
  },
});

for (const mtu of [1280, 9000, 65520]) {
  Deno.test({
    name: `tcp pressure: MTU ${mtu} without the vnet header: 32 MB each way intact`,
    ignore: SKIP !== null,
    fn: async () => {
      await using w = await makeWorld(["--quiet", "--no-vnet-hdr", "--mtu", String(mtu)]);
      const n = String(32 << 20);
      await w.client(["upload", HostNet.REMOTE4, n], 120_000);
      await w.client(["download", HostNet.REMOTE6, n], 120_000);
      if (needs("tshark") !== null) return;
      // slirpd segments at the MSS: no frame to the guest is larger than the MTU.
      const cap = w.guest.spawn([
        "tshark",
        "-i",
        "tun0",
        "-l",
        "-n",
        "-T",
        "fields",
        "-e",
        "frame.len",
      ]);
      await using _c = cap;
      await cap.waitFor((b) => b.stderr.includes("Capturing"), 10_000, "tshark");
      await w.client(["download", HostNet.REMOTE4, String(4 << 20)], 60_000);
      await w.client(["download", HostNet.REMOTE6, String(4 << 20)], 60_000);
      // tshark prints as it dissects; big frames can lag behind the transfer.
      const frames = () => cap.stdout.split("\n").filter(Boolean).map(Number);
      await cap.waitFor(() => frames().length > 20, 15_000, "captured frames").catch(() => {});
      const lens = frames();
      assert.ok(lens.length > 20, `captured ${lens.length} frames`);
      assert.ok(
        Math.max(...lens) <= mtu + 14,
        `a frame of ${Math.max(...lens)} bytes at MTU ${mtu}`,
      );
    },
  });
}
