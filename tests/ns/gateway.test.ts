// slirpd attached to a real guest namespace answers as the gateway: ARP/NDP, ping v4/v6,
// readiness signals, clean stop, and the command line's errors.

import assert from "node:assert/strict";
import { FLAGS } from "../../daemon/options.ts";
import {
  Background,
  makeNetns,
  needs,
  run,
  skip,
  slirpdCommand,
  startSlirpd,
} from "../support/harness.ts";

const PING = needs("ping");

Deno.test("gateway: --configure sets the guest up as slirp4netns does", async () => {
  await using guest = await makeNetns("cfg");
  await using slirpd = await startSlirpd({ guest, args: ["--configure", "--mtu", "65520"] });
  const link = await guest.must(["ip", "-o", "link", "show", "tun0"]);
  assert.match(link, /mtu 65520/);
  assert.match(link, /state UP|,UP/);
  const addrs = await guest.must(["ip", "-o", "addr", "show", "dev", "tun0"]);
  assert.match(addrs, /inet 10\.0\.2\.100\/24/);
  assert.match(addrs, /inet6 fd00::100\/64/);
  const v6line = addrs.split("\n").find((l) => l.includes("fd00::100/64")) ?? "";
  assert.ok(!/tentative/.test(v6line), `fd00::100 must be usable at once: ${v6line}`);
  assert.match(await guest.must(["ip", "-o", "link", "show", "lo"]), /UP/);
  assert.match(await guest.must(["ip", "route"]), /default via 10\.0\.2\.2 dev tun0/);
  assert.match(await guest.must(["ip", "-6", "route"]), /default via fd00::2 dev tun0/);
  assert.deepEqual((await slirpd.stop()).code, 0);
});

Deno.test({
  name: "gateway: guest pings 10.0.2.2, 10.0.2.3, fd00::2, fd00::3 and learns slirpd's MAC",
  ignore: skip(PING, "gateway ping"),
  fn: async () => {
    await using guest = await makeNetns("ping");
    await using slirpd = await startSlirpd({ guest, args: ["--configure"] });
    for (
      const [v, addr] of [["-4", "10.0.2.2"], ["-4", "10.0.2.3"], ["-6", "fd00::2"], [
        "-6",
        "fd00::3",
      ]]
    ) {
      const r = await guest.exec([
        "ping",
        v,
        "-c",
        "3",
        "-i",
        "0.05",
        "-W",
        "2",
        "-s",
        "1000",
        addr,
      ]);
      assert.deepEqual(r.code, 0, `ping ${addr}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /3 received/);
    }
    const neigh = await guest.must(["ip", "neigh", "show", "dev", "tun0"]);
    assert.match(neigh, /10\.0\.2\.2 lladdr 52:55:0a:00:02:02/);
    assert.match(neigh, /fd00::2 lladdr 52:55:0a:00:02:02/);
    // Nobody answers for an address slirpd does not own.
    const other = await guest.exec(["ping", "-c", "1", "-W", "1", "10.0.2.77"]);
    assert.ok(other.code !== 0, "10.0.2.77 must not answer");
    const st = await slirpd.stop("SIGINT");
    assert.deepEqual(st.code, 0, slirpd.stderr);
    // The tap slirpd created goes away with it.
    const gone = await guest.exec(["ip", "link", "show", "tun0"]);
    assert.ok(gone.code !== 0, "tun0 must be gone after slirpd stopped");
  },
});

Deno.test({
  name: "gateway: works without the vnet header, and on a tap that already exists",
  ignore: skip(PING, "gateway ping"),
  fn: async () => {
    await using guest = await makeNetns("exist");
    await guest.must(["ip", "tuntap", "add", "mode", "tap", "name", "tap7"]);
    await guest.must(["ip", "addr", "add", "10.0.2.100/24", "dev", "tap7"]);
    await guest.must(["ip", "link", "set", "tap7", "up"]);
    await using slirpd = await startSlirpd({
      guest,
      args: ["--interface", "tap7", "--no-vnet-hdr"],
    });
    const r = await guest.exec(["ping", "-c", "2", "-i", "0.1", "-W", "2", "10.0.2.2"]);
    assert.deepEqual(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual((await slirpd.stop()).code, 0);
    // slirpd did not own that tap: it is still there.
    await guest.must(["ip", "link", "show", "tap7"]);
  },
});

Deno.test("gateway: --ready-fd gets '1' and is closed; the readiness line names the PID", async () => {
  await using guest = await makeNetns("ready");
  const file = await Deno.makeTempFile();
  try {
    const cmd = [...slirpdCommand(), "--netns", guest.path, "--configure", "--ready-fd", "5"];
    const quoted = cmd.map((a) => `'${a}'`).join(" ");
    await using sh = new Background(["bash", "-c", `exec 5>'${file}'; exec ${quoted}`]);
    await sh.waitFor((b) => b.stderr.includes("Slirpnetstack started"), 30_000, "readiness");
    assert.deepEqual(await Deno.readTextFile(file), "1");
    const fds = [...Deno.readDirSync(`/proc/${sh.pid}/fd`)].map((e) => e.name);
    assert.ok(!fds.includes("5"), "--ready-fd must be closed after the write");
    assert.match(sh.stderr, new RegExp(`\\[\\+\\] #${sh.pid} Slirpnetstack started`));
    assert.deepEqual((await sh.stop()).code, 0);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli: --help lists every flag; bad input is one line and a non-zero exit", async () => {
  const help = await run([...slirpdCommand(), "--help"]);
  assert.deepEqual(help.code, 0);
  for (const name of Object.keys(FLAGS)) assert.match(help.stdout, new RegExp(`--${name}\\b`));

  const cases: [string[], RegExp, number][] = [
    [["--bogus"], /^slirpd: flag provided but not defined: --bogus$/, 2],
    [["--netns", "/x", "--mtu", "70000"], /^slirpd: invalid value "70000" for flag -mtu: /, 2],
    [["--netns", "/x", "-mtu", "abc"], /^slirpd: invalid value "abc" for flag -mtu: /, 2],
    [["--netns", "/x", "--ready-fd", "-1"], /flag -ready-fd|ready-fd/, 2],
    [[], /^slirpd: missing --netns PATH/, 2],
    [
      ["--netns", "/nonexistent/ns"],
      /^slirpd: --netns \/nonexistent\/ns: no such network namespace \(open\(\/nonexistent\/ns\): ENOENT\); .*ip netns add/,
      1,
    ],
  ];
  for (const [args, re, code] of cases) {
    const r = await run([...slirpdCommand(), ...args]);
    // (slirpnetstack's progress lines, "[.] Joininig netns ...", come before the error)
    const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("[.] "));
    assert.deepEqual(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.deepEqual(lines.length, 1, `one line for ${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], re);
  }
});

Deno.test("cli: attaching to a tap that does not exist fails clearly", async () => {
  await using guest = await makeNetns("notap");
  const r = await run([...slirpdCommand(), "--netns", guest.path, "--interface", "nope0"]);
  assert.deepEqual(r.code, 1);
  assert.match(r.stderr.trim(), /nope0/);
  const errors = r.stderr.trim().split("\n").filter((l) => !l.startsWith("[.] "));
  assert.deepEqual(errors.length, 1, r.stderr);
});

// Records the largest frame from slirpd's MAC on tun0 (an AF_PACKET socket) until killed.
const BIGGEST = String.raw`
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("tun0", 0)); print("listening", flush=True)
big = 0
while True:
    f = s.recv(70000)
    if f[6:12] == bytes.fromhex("52550a000202") and len(f) > big:
        big = len(f); print("max", big, flush=True)
`;

Deno.test({
  name: "gateway: a ping larger than the MTU is answered in fragments (v4 and v6)",
  ignore: skip(PING ?? needs("python3"), "gateway big ping"),
  fn: async () => {
    await using guest = await makeNetns("bigping");
    await using slirpd = await startSlirpd({ guest, args: ["--configure"] });
    await using cap = guest.spawn(["python3", "-c", BIGGEST]);
    await cap.waitFor((b) => b.stdout.includes("listening"), 10_000, "capture");
    for (const [v, addr] of [["-4", "10.0.2.2"], ["-6", "fd00::2"]]) {
      const r = await guest.exec([
        "ping",
        v,
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        "-s",
        "4000",
        addr,
      ]);
      assert.equal(r.code, 0, `ping -s 4000 ${addr}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /2 received/);
    }
    await new Promise((r) => setTimeout(r, 300));
    const sizes = [...cap.stdout.matchAll(/max (\d+)/g)].map((m) => Number(m[1]));
    const max = Math.max(0, ...sizes);
    // Every frame from slirpd fits the MTU (1500 + the Ethernet header).
    assert.ok(max > 0 && max <= 1514, `largest frame from slirpd: ${max} bytes`);
    assert.equal((await slirpd.stop()).code, 0);
  },
});
