// A guest slirpd did not configure gets its IPv4 setup from slirpd's DHCP server with a real
// client: busybox udhcpc on a tap the test made itself, a script that applies the lease with
// `ip`, then ping to the gateway. The lease follows the client's MAC.

import assert from "node:assert/strict";
import { makeNetns, needs, type Netns, skip, startSlirpd } from "../support/harness.ts";

const TOOLS = needs("busybox", "ping");

const SCRIPT = `#!/bin/sh
# udhcpc calls this with deconfig|bound|renew|nak; the lease is in the environment.
case "$1" in
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/\${mask:-24}" dev "$interface"
    ip -4 route replace default via "\${router%% *}" dev "$interface"
    echo "ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu lease=$lease serverid=$serverid" \\
      > "$OUT"
    ;;
esac
`;

async function udhcpc(guest: Netns, script: string, out: string): Promise<string> {
  const r = await guest.exec([
    "env",
    `OUT=${out}`,
    "busybox",
    "udhcpc",
    "-i",
    "tun0",
    "-n", // exit if no lease
    "-q", // exit after getting one
    "-t",
    "4",
    "-T",
    "1",
    "-s",
    script,
  ], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `udhcpc: ${r.stdout}${r.stderr}`);
  return Deno.readTextFileSync(out).trim();
}

Deno.test({
  name: "dhcp guest: udhcpc gets 10.0.2.15, router, DNS and MTU; the lease follows the MAC",
  ignore: skip(TOOLS, "dhcp guest"),
  fn: async () => {
    const dir = Deno.makeTempDirSync({ prefix: "slirpd-dhcp-" });
    try {
      const script = `${dir}/udhcpc.sh`;
      Deno.writeTextFileSync(script, SCRIPT);
      Deno.chmodSync(script, 0o755);
      await using guest = await makeNetns("dhcp");
      // An unconfigured tap: made by the test, up, no address.
      await guest.must(["ip", "tuntap", "add", "mode", "tap", "name", "tun0"]);
      await guest.must(["ip", "link", "set", "tun0", "address", "02:00:00:00:00:01"]);
      await guest.must(["ip", "link", "set", "tun0", "mtu", "4000", "up"]);
      await using slirpd = await startSlirpd({
        guest,
        args: ["--interface", "tun0", "--mtu", "4000"],
      });
      const lease = await udhcpc(guest, script, `${dir}/lease1`);
      assert.equal(
        lease,
        "ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3 mtu=4000 lease=86400 serverid=10.0.2.2",
      );
      assert.match(await guest.must(["ip", "-4", "addr", "show", "tun0"]), /10\.0\.2\.15\/24/);
      const ping = await guest.exec(["ping", "-c", "1", "-W", "2", "10.0.2.2"]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      // The same MAC again: the same address. Another MAC: the next one.
      assert.match(await udhcpc(guest, script, `${dir}/lease2`), /^ip=10\.0\.2\.15 /);
      await guest.must(["ip", "link", "set", "tun0", "address", "02:00:00:00:00:02"]);
      assert.match(await udhcpc(guest, script, `${dir}/lease3`), /^ip=10\.0\.2\.16 /);
      const st = await slirpd.stop();
      assert.equal(st.code, 0, slirpd.stderr);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
