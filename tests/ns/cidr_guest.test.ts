// --cidr / --cidr6 (slirp4netns' flag, and its IPv6 twin): the guest's addresses, the gateway,
// the DNS forwarder and the router advertisements all follow the networks; bad values are
// one clear line and exit 2.

import assert from "node:assert/strict";
import { parseConfig, UsageError } from "../../daemon/config.ts";
import { formatIp } from "../../stack/wire/bytes.ts";
import { makeNetns, needs, run, skip, slirpdCommand, startSlirpd } from "../support/harness.ts";

const RESOLVER = new URL("../support/dns_server.ts", import.meta.url).pathname;

function usage(args: string[]): string {
  try {
    parseConfig(["--netns", "/run/netns/x", ...args]);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  return "accepted";
}

Deno.test("cidr: values are validated; host bits must be zero", () => {
  const bad: [string, string, RegExp][] = [
    // slirp4netns' wording (scripts grep it), our detail after it.
    [
      "--cidr",
      "10.0.2.1/24",
      /: invalid CIDR: CIDR needs to be a network address like 10\.0\.2\.0\/24, not like 10\.0\.2\.100\/24 \(the network is 10\.0\.2\.0\/24\)$/,
    ],
    ["--cidr", "10.0.2.0/26", /: invalid CIDR: prefix length needs to be 1-25$/],
    ["--cidr", "10.0.2.0/0", /: invalid CIDR: prefix length needs to be 1-25$/],
    ["--cidr", "10.0.2.0", /: invalid CIDR: not an IPv4 CIDR/],
    ["--cidr", "10.0.2.256/24", /is not an IPv4 address/],
    ["--cidr", "fd00::/64", /is not an IPv4 address/],
    ["--cidr", "127.0.0.0/8", /must not be in/],
    ["--cidr", "224.0.0.0/24", /must not be in/],
    ["--cidr", "", /not an IPv4 CIDR/],
    ["--cidr6", "fd00::1/64", /host bits must be zero \(the network is fd00::\/64\)/],
    ["--cidr6", "fd00::/65", /prefix length must be 1\.\.64/],
    ["--cidr6", "fe80::/64", /link-local/],
    ["--cidr6", "ff02::/64", /multicast/],
    ["--cidr6", "10.0.2.0/24", /is not an IPv6 address/],
  ];
  for (const [flag, value, why] of bad) {
    const msg = usage([flag, value]);
    assert.match(
      msg,
      new RegExp(`^invalid value "${value.replace(/[.]/g, "\\.")}" for flag ${flag.slice(1)}: `),
    );
    assert.match(msg, why, `${flag} ${value}`);
    assert.ok(!msg.includes("\n"), "one line");
  }
  const ok = parseConfig(["--netns", "/x", "--cidr", "10.0.3.128/25", "--cidr6", "fd00:1234::/48"]);
  assert.ok(!ok.help);
  if ("config" in ok) {
    assert.equal(`${formatIp(ok.config.cidr4.addr)}/${ok.config.cidr4.len}`, "10.0.3.128/25");
    assert.equal(`${formatIp(ok.config.cidr6.addr)}/${ok.config.cidr6.len}`, "fd00:1234::/48");
  }
});

Deno.test("cidr: a bad value stops slirpd with one line and exit 2", async () => {
  for (const args of [["--cidr", "10.0.2.100/24"], ["--cidr6", "fd00::/80"]]) {
    const r = await run([...slirpdCommand(), "--netns", "/run/netns/none", ...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^slirpd: invalid value "${args[1]}" for flag ${args[0].slice(1)}`),
    );
  }
});

Deno.test({
  name: "cidr: --cidr 10.0.3.0/24 --cidr6 fd00:1234::/64 moves guest, gateway, DNS and RAs",
  ignore: skip(needs("ping", "dig"), "cidr guest"),
  fn: async () => {
    const dir = Deno.makeTempDirSync({ prefix: "slirpd-cidr-" });
    try {
      Deno.writeTextFileSync(`${dir}/resolv.conf`, "nameserver 127.0.0.53\n");
      await using host = await makeNetns("cidrh");
      await using guest = await makeNetns("cidrg");
      await using resolver = host.spawn([
        Deno.execPath(),
        "run",
        "-A",
        RESOLVER,
        JSON.stringify([{ addr: "127.0.0.53", mode: "answer", a: "192.0.2.53" }]),
      ]);
      await resolver.waitFor((b) => b.stdout.includes("READY"), 20_000, "test resolver");
      await using _slirpd = await startSlirpd({
        guest,
        hostNs: host,
        args: [
          "--configure",
          "--cidr",
          "10.0.3.0/24",
          "--cidr6",
          "fd00:1234::/64",
          "--resolv-conf",
          `${dir}/resolv.conf`,
        ],
      });
      const addrs = await guest.must(["ip", "-o", "addr", "show", "dev", "tun0"]);
      assert.match(addrs, /inet 10\.0\.3\.100\/24/);
      assert.match(addrs, /inet6 fd00:1234::100\/64/);
      assert.match(await guest.must(["ip", "route"]), /default via 10\.0\.3\.2 dev tun0/);
      assert.match(await guest.must(["ip", "-6", "route"]), /default via fd00:1234::2 dev tun0/);
      for (const [v, addr] of [["-4", "10.0.3.2"], ["-4", "10.0.3.3"], ["-6", "fd00:1234::2"]]) {
        const r = await guest.exec(["ping", v, "-c", "1", "-W", "2", addr]);
        assert.equal(r.code, 0, `ping ${addr}: ${r.stdout}${r.stderr}`);
      }
      // The old addresses are nobody's now.
      const old = await guest.exec(["ping", "-c", "1", "-W", "1", "10.0.2.2"]);
      assert.notEqual(old.code, 0, "10.0.2.2 must not answer");
      const d = await guest.exec(["dig", "+time=3", "+tries=1", "@10.0.3.3", "moved.test", "A"]);
      assert.match(d.stdout, /moved\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.53/, d.stdout + d.stderr);
      // RAs announce the new prefix (the guest learns it is on-link) but neither SLAAC nor a
      // default route: slirpd configured both itself. Exactly one IPv6 default route.
      // The first RAs go out at once and ~4 s later: look after both.
      await new Promise((r) => setTimeout(r, 5_000));
      const defaults = await guest.must(["ip", "-6", "route", "show", "default"]);
      assert.equal(defaults.trim().split("\n").length, 1, defaults);
      assert.match(defaults, /default via fd00:1234::2 dev tun0/);
      const v6 = await guest.must([
        "ip",
        "-6",
        "-o",
        "addr",
        "show",
        "dev",
        "tun0",
        "scope",
        "global",
      ]);
      assert.equal(v6.trim().split("\n").length, 1, v6);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
