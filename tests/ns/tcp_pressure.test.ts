// TCP through slirpd under pressure: a host reader that does not read (backpressure must stop
// the guest's sender and slirpd's memory must stay bounded), a lossy link (every byte still
// arrives intact), and the whole MTU range without the vnet header.

import assert from "node:assert/strict";
import { HostNet, makeNetns, needs } from "../support/harness.ts";
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

/** Can the guest namespace run netem? (Kernels without sch_netem cannot.) */
async function hasNetem(): Promise<boolean> {
  await using ns = await makeNetns("netem");
  await ns.must(["ip", "link", "add", "nq0", "type", "veth", "peer", "name", "nq1"]);
  const r = await ns.exec(["tc", "qdisc", "add", "dev", "nq0", "root", "netem", "loss", "5%"]);
  return r.code === 0;
}

Deno.test({
  name:
    "tcp pressure: 5% loss (netem in the guest, else slirpd's loss hook) still delivers every byte",
  ignore: SKIP !== null,
  fn: async () => {
    const netem = await hasNetem();
    // Without netem (this kernel may lack sch_netem), slirpd drops 5% of TCP segments in both
    // directions itself (SLIRPD_TEST_TCP_LOSS): the guest's real TCP sees the same loss.
    await using w = await makeWorld(["--quiet"], netem ? {} : { SLIRPD_TEST_TCP_LOSS: "0.05" });
    if (netem) {
      await w.guest.must(["tc", "qdisc", "add", "dev", "tun0", "root", "netem", "loss", "5%"]);
    }
    const n = String(16 << 20);
    await w.client(["upload", HostNet.REMOTE4, n], 180_000);
    await w.client(["download", HostNet.REMOTE4, n], 180_000);
    await w.client(["echo", HostNet.REMOTE6, "1000000"], 180_000);
    await w.client(["many", HostNet.REMOTE4, "20"], 180_000);
    console.log(`loss by ${netem ? "netem" : "slirpd's test hook"}: all bytes intact`);
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
