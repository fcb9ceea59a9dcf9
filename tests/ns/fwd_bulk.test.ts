// Local forwards under load and at start-up: 256 MB each way through -L with a sha256 at both
// ends (the TCP engine's active open, then its zero-copy data path), and forwards that cannot
// be set up stopping slirpd before readiness with slirpnetstack's line and a non-zero exit.

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, READY_LINE, startSlirpd } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3");

Deno.test({
  name: "fwd -L: 256 MB each way, sha256 equal at both ends",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    const py = await fwdPeer();
    await using srv = guest.spawn(["python3", py, "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      // never: the TCP engine's path (fwd_splice.test.ts carries the spliced one).
      args: [
        "--configure",
        "--forward-splice",
        "never",
        "-L",
        "4009:10.0.2.100:9",
        "-L",
        "4019:10.0.2.100:19",
      ],
    });
    const n = String(256 << 20);
    for (const [mode, port] of [["upload", "4009"], ["download", "4019"]]) {
      const t0 = performance.now();
      const r = await net.host.exec(["python3", py, mode, "127.0.0.1", port, n], {
        timeoutMs: 240_000,
      });
      const s = (performance.now() - t0) / 1000;
      assert.ok(r.code === 0 && r.stdout.includes("OK"), `${mode}: ${r.stdout}${r.stderr}`);
      console.log(`-L ${mode} 256 MB: ${(256 / s).toFixed(0)} MB/s`);
    }
    await slirpd.waitFor((b) => (b.stdout.match(/local-fwd done/g) ?? []).length >= 2, 10_000);
    assert.match(slirpd.stdout, /:4009\/\S+ local-fwd done: l=268435456 r=\d+/);
    assert.match(slirpd.stdout, /:4019\/\S+ local-fwd done: l=\d+ r=268435521/);
  },
});

Deno.test({
  name: "fwd: a forward that cannot be set up stops slirpd before readiness (247, or 1)",
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    // -L: slirpnetstack's 247; a -R whose bind address is taken: 1 (246 is for names).
    const cases: [string[], RegExp, number][] = [
      [
        ["-L", "4100:10.0.2.100:7", "-L", "127.0.0.1:4100"],
        /\[!\] Failed to listen on tcp:\/\/127\.0\.0\.1:4100: bind: address already in use/,
        247,
      ],
      [
        ["-L", "udp://192.0.2.77:4101"],
        /\[!\] Failed to listen on udp:\/\/192\.0\.2\.77:4101: bind: cannot assign requested/,
        247,
      ],
      [
        ["-R", "3007", "-R", "10.0.2.2:3007:127.0.0.1:9"],
        /\[!\] Failed to accept on remote side/,
        1,
      ],
    ];
    for (const [args, line, code] of cases) {
      await using s = await startSlirpd({
        guest,
        hostNs: net.host,
        args: ["--configure", ...args],
        noWait: true,
      });
      const st = await s.done;
      assert.equal(st.code, code, `${args.join(" ")}: exit ${st.code}\n${s.stderr}`);
      assert.match(s.stderr, line);
      assert.ok(!s.stderr.includes(READY_LINE), "no readiness before the failure");
    }
    // A spec that does not parse is a usage error (exit 2), in Go's flag wording.
    await using s = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["-L", "a:b"],
      noWait: true,
    });
    assert.equal((await s.done).code, 2);
    assert.match(s.stderr, /invalid value "a:b" for flag -L: bind port "b" is not a port number/);
  },
});
