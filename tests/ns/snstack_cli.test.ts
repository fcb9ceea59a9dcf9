// slirpnetstack's process interface, as scripts written for it use it (issue 11): the start-up
// and shutdown lines in order and SIGWINCH to the parent; -version; -exit-with-parent and
// -maxprocs; -fd with a socketpair(AF_UNIX, SOCK_DGRAM) end and with a tap fd; exit codes
// 247 (-L cannot listen) and 246 (-R cannot resolve); one-line errors without Go's "=".
//
// The parent-side parts (a SIGWINCH handler, a parent that dies, inherited descriptors) are
// tests/support/snstack_helper.py. slirpd runs in the test's namespace unless said otherwise.

import assert from "node:assert/strict";
import { makeNetns, needs, run, slirpdCommand, startSlirpd } from "../support/harness.ts";

const SKIP = needs("python3", "ping");
const HELPER = new URL("../support/snstack_helper.py", import.meta.url).pathname;

async function tempLog(): Promise<string> {
  return await Deno.makeTempFile({ prefix: "sdt-snstack-", suffix: ".log" });
}

Deno.test({
  name: "snstack: start-up lines in order, SIGWINCH to the parent, closing line, exit 0",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("snl");
    const log = await tempLog();
    try {
      const cmd = [...slirpdCommand(), "-netns", guest.path, "-interface", "tun0", "-c"];
      const r = await run(["python3", HELPER, "winch", log, ...cmd], { timeoutMs: 120_000 });
      const err = await Deno.readTextFile(log);
      assert.match(r.stdout, /^WINCH$/m, `no SIGWINCH to the parent:\n${r.stdout}${err}`);
      assert.match(r.stdout, /^EXIT 0$/m, r.stdout + err);
      const lines = err.split("\n");
      const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
      const join = at(new RegExp(`^\\[\\.\\] Joininig netns ${guest.path}$`));
      const open = at(/^\[\.\] Opening tun interface tun0$/);
      const started = at(/^\[\+\] #\d+ Slirpnetstack started$/);
      const closing = at(/^\[-\] #\d+ Slirpnetstack closing$/);
      assert.ok(join >= 0 && open > join && started > open && closing > started, err);
    } finally {
      await Deno.remove(log);
    }
  },
});

Deno.test({
  name: "snstack: -version prints version and build time; --version slirp4netns' lines",
  fn: async () => {
    const r = await run([...slirpdCommand(), "-version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^slirpnetstack version \S+.*\nbuild time \S+\n$/);
    const s = await run([...slirpdCommand(), "--version"]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^slirpd version \S+\ncommit: \S+\nSLIRP_CONFIG_VERSION_MAX: 4\n$/);
  },
});

Deno.test({
  name: "snstack: -exit-with-parent ends slirpd cleanly when its parent dies; -maxprocs accepted",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("snp");
    const log = await tempLog();
    let pid = 0;
    try {
      const cmd = [
        ...slirpdCommand(),
        "-netns",
        guest.path,
        "-c",
        "-exit-with-parent",
        "-maxprocs",
        "2",
      ];
      const r = await run(["python3", HELPER, "orphan", log, ...cmd], { timeoutMs: 120_000 });
      const m = r.stdout.match(/^CHILD (\d+)$/m);
      assert.ok(m, r.stdout + (await Deno.readTextFile(log)));
      pid = Number(m[1]);
      const gone = async () => {
        for (let i = 0; i < 200; i++) {
          try {
            Deno.kill(pid, "SIGCONT"); // (existence probe; slirpd ignores SIGCONT)
          } catch {
            return true;
          }
          await new Promise((res) => setTimeout(res, 100));
        }
        return false;
      };
      assert.ok(await gone(), "slirpd still runs after its parent died");
      pid = 0;
      assert.match(await Deno.readTextFile(log), /Slirpnetstack closing/);
    } finally {
      if (pid > 0) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await Deno.remove(log);
    }
  },
});

Deno.test({
  name: "snstack: -fd with a socketpair(AF_UNIX, SOCK_DGRAM) end: ARP and ping answered",
  ignore: SKIP !== null,
  fn: async () => {
    const log = await tempLog();
    try {
      const r = await run(["python3", HELPER, "dgram", log, ...slirpdCommand()], {
        timeoutMs: 120_000,
      });
      const err = await Deno.readTextFile(log);
      assert.match(r.stdout, /^ARP OK\nPING OK\nEXIT 0$/m, r.stdout + err);
      assert.doesNotMatch(err, /Joininig|Opening tun/, "no netns with -fd");
    } finally {
      await Deno.remove(log);
    }
  },
});

Deno.test({
  name: "snstack: -fd with a tap fd; -fd and -netns exclude each other",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("snf");
    const log = await tempLog();
    try {
      const r = await guest.exec(
        ["python3", HELPER, "tapfd", log, "tfd0", ...slirpdCommand()],
        { timeoutMs: 120_000 },
      );
      assert.match(
        r.stdout,
        /^PING OK\nEXIT 0$/m,
        r.stdout + r.stderr + Deno.readTextFileSync(log),
      );
    } finally {
      await Deno.remove(log);
    }
    const both = await run([...slirpdCommand(), "-fd", "0", "-netns", guest.path]);
    assert.equal(both.code, 2);
    assert.equal(
      both.stderr,
      'slirpd: invalid value "0" for flag -fd: -netns is given too (one or the other)\n',
    );
  },
});

Deno.test({
  name: "snstack: -L that cannot listen exits 247, -R that cannot resolve 246, signal or not",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("snx");
    using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (busy.addr as Deno.NetAddr).port;
    const l = await startSlirpd({
      guest,
      args: ["-c", "-L", `${port}:10.0.2.100:80`],
      noWait: true,
    });
    // A SIGTERM right after the line must not turn the exit into a signal death.
    await l.waitFor((b) => b.stderr.includes("Failed to listen"), 60_000, "the -L failure");
    try {
      l.child.kill("SIGTERM");
    } catch { /* exited already */ }
    const ls = await l.stop("SIGCONT", 20_000); // (just wait)
    assert.equal(ls.code, 247, l.stderr);
    assert.equal(ls.signal, null);
    assert.match(
      l.stderr,
      new RegExp(`^\\[!\\] Failed to listen on tcp://127\\.0\\.0\\.1:${port}: `, "m"),
    );

    const r = await startSlirpd({
      guest,
      args: ["-c", "-R", "3000:no-such-host.invalid:80"],
      noWait: true,
    });
    const rs = await r.stop("SIGCONT", 60_000); // (just wait)
    assert.equal(rs.code, 246, r.stderr);
    assert.match(r.stderr, /^\[!\] Failed to resolve .*no-such-host\.invalid/m);
    await l[Symbol.asyncDispose]();
    await r[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "snstack: -R=SPEC errors name the value without the '='",
  fn: async () => {
    const r = await run([...slirpdCommand(), "-netns", "/x", "-R=tcp://:99999"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'slirpd: invalid value "tcp://:99999" for flag -R: bind port "99999" is not a port ' +
        "number (0-65535)\n",
    );
  },
});
