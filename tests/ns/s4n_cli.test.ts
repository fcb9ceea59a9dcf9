// slirp4netns' command line: `slirpd [OPTIONS] PID|PATH [TAPNAME]` with the options slirp4netns
// users pass (rootlesskit, podman, buildkit): the guest comes up as configured, the sandbox and
// seccomp flags confine it, --userns-path is checked against the netns's owner, --exit-fd ends
// slirpd cleanly, and what slirp4netns would refuse is refused in one line.
//
// slirpd runs in the test's namespace here (as the gateway tests do): nothing is routed.

import assert from "node:assert/strict";
import {
  Background,
  makeNetns,
  needs,
  READY_LINE,
  run,
  slirpdCommand,
} from "../support/harness.ts";

const SKIP = needs("ping", "unshare", "bash");

const quote = (args: string[]) => args.map((a) => `'${a}'`).join(" ");

Deno.test({
  name: "s4n: -c -6 -m --cidr --macaddress --netns-type=path --userns-path -r, default tap0",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("s4n");
    await using holder = guest.spawn(["sleep", "60"]);
    const ready = await Deno.makeTempFile();
    try {
      const cmd = [
        ...slirpdCommand(),
        "-c",
        "-6",
        "-m",
        "9000",
        "--cidr=10.0.5.0/24",
        "--disable-dns",
        "--macaddress=02:5a:00:00:00:42",
        "--netns-type=path",
        `--userns-path=/proc/${holder.pid}/ns/user`,
        "--enable-sandbox",
        "--enable-seccomp",
        "-r",
        "5",
        `/proc/${holder.pid}/ns/net`, // no TAPNAME: slirp4netns' default, tap0
      ];
      await using sh = new Background(["bash", "-c", `exec 5>'${ready}'; exec ${quote(cmd)}`]);
      await sh.waitFor((b) => b.stderr.includes(READY_LINE), 30_000, "readiness");
      assert.equal(await Deno.readTextFile(ready), "1");
      const link = await guest.must(["ip", "-o", "link", "show", "tap0"]);
      assert.match(link, /mtu 9000/);
      assert.match(link, /link\/ether 02:5a:00:00:00:42 /);
      assert.match(
        await guest.must(["ip", "-o", "-4", "addr", "show", "tap0"]),
        /10\.0\.5\.100\/24/,
      );
      const r = await guest.exec(["ping", "-c1", "-W2", "10.0.5.2"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // slirpd answered to the MAC it was given (it learns it from the guest's frames).
      assert.match(await guest.must(["ip", "neigh", "show", "10.0.5.2"]), /lladdr 52:55:0a/);
      // --enable-sandbox / --enable-seccomp confined it (tests/ns/confine.test.ts has the rest).
      assert.doesNotMatch(sh.stderr, /--enable-(sandbox|seccomp)/, sh.stderr);
      const status = await Deno.readTextFile(`/proc/${sh.pid}/status`);
      assert.match(status, /^Seccomp:\s+2$/m);
      assert.equal((await sh.stop()).code, 0);
    } finally {
      await Deno.remove(ready);
    }
  },
});

Deno.test({
  name: "s4n: --exit-fd: slirpd exits 0 when the fd's writer closes it",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("s4nexit");
    await using holder = guest.spawn(["sleep", "60"]);
    const dir = await Deno.makeTempDir();
    const fifo = `${dir}/exit`;
    try {
      await run(["mkfifo", fifo]);
      // Opening a FIFO for writing waits for its reader: slirpd's shell opens it as fd 5.
      const writer = Deno.open(fifo, { write: true });
      const cmd = [...slirpdCommand(), "--configure", "-e", "5", String(holder.pid), "tun0"];
      await using sh = new Background(["bash", "-c", `exec 5<'${fifo}'; exec ${quote(cmd)}`]);
      const w = await writer;
      let exited = false;
      sh.done.then(() => exited = true);
      await sh.waitFor((b) => b.stderr.includes(READY_LINE), 30_000, "readiness");
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!exited, `slirpd must run while the writer is open: ${sh.stderr}`);
      const t0 = performance.now();
      w.close();
      const timer = setTimeout(() => sh.child.kill("SIGKILL"), 5_000);
      const status = await sh.done;
      clearTimeout(timer);
      assert.equal(status.code, 0, sh.stderr);
      assert.ok(performance.now() - t0 < 5_000);
      assert.match(sh.stderr, /Slirpnetstack stopped/);
      // It made the tap (slirp4netns form) and took it away with it.
      await guest.exec(["ip", "link", "show", "tun0"]).then((r) => assert.notEqual(r.code, 0));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "s4n: --userns-path of another user namespace, bad flags: one line, no tap",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("s4nbad");
    await using holder = guest.spawn(["sleep", "60"]);
    // A user namespace that does not own the guest netns.
    await using other = new Background(["unshare", "--user", "sleep", "60"]);
    await new Promise((r) => setTimeout(r, 100));
    const pid = String(holder.pid);
    const cases: [string[], RegExp, number][] = [
      [
        ["-c", `--userns-path=/proc/${other.pid}/ns/user`, pid, "tap0"],
        /^slirpd: --userns-path \/proc\/\d+\/ns\/user is not the user namespace that owns /,
        1,
      ],
      [["--target-type=bess", pid], /^slirpd: flag provided but not defined: --target-type$/, 2],
      [["--macaddress=02:00:00:00:00:01", pid], /flag -macaddress: only valid with --configure/, 2],
      [["-c", "--macaddress=zz", pid], /invalid value "zz" for flag -macaddress/, 2],
      [["--netns-type=pid", `/proc/${pid}/ns/net`], /expected a PID with --netns-type=pid/, 2],
      [["--netns-type=bess", pid], /invalid value "bess" for flag -netns-type/, 2],
      [["-c", "--exit-fd=77", pid], /^slirpd: fcntl\(--exit-fd 77\): EBADF$/, 1],
    ];
    for (const [args, re, code] of cases) {
      const r = await run([...slirpdCommand(), ...args]);
      const lines = r.stderr.trim().split("\n");
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(lines.length, 1, `one line for ${args.join(" ")}: ${r.stderr}`);
      assert.match(lines[0], re);
    }
    const taps = await guest.must(["ip", "-o", "link", "show"]);
    assert.doesNotMatch(taps, /tap0/);
  },
});
