// `deno task install` from a checkout, offline, gives a `slirpd` command whose signals and exit
// codes are slirpd's own: SIGTERM → 0, SIGINT → 0, `-- CMD` → CMD's status, nothing left
// running (Background's dispose fails the test on a leftover process). The command runs with
// the narrow permissions of scripts/permissions.ts, so this also checks that they suffice.

import assert from "node:assert/strict";
import { Background, makeNetns, needs, READY_LINE, run, skip } from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const SKIP = (Deno.uid() !== 0 ? "skipped: needs root" : null) ?? needs("ping", "unshare");
/** No network: any download would go through this dead proxy and fail. */
const OFFLINE = { HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9" };

Deno.test({
  name: "install: deno task install works offline; the command's signals and exit codes",
  ignore: skip(SKIP, "install"),
  fn: async () => {
    const root = await Deno.makeTempDir();
    try {
      const inst = await run(
        [Deno.execPath(), "run", "--allow-all", `${REPO}scripts/install.ts`, "--root", root],
        { env: OFFLINE, timeoutMs: 120_000 },
      );
      assert.equal(inst.code, 0, inst.stdout + inst.stderr);
      const bin = `${root}/bin/slirpd`;
      const shim = await Deno.readTextFile(bin);
      assert.match(shim, /^exec deno run .*--allow-ffi .*main\.ts' "\$@"$/m, shim);
      assert.doesNotMatch(shim, /--allow-all|-A /, "the narrow permissions, not --allow-all");
      const env = {
        ...OFFLINE,
        PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH")}`,
      };

      for (const sig of ["SIGTERM", "SIGINT"] as const) {
        await using guest = await makeNetns("inst");
        await using s = new Background([bin, "--netns", guest.path, "-c"], env);
        await s.waitFor((b) => b.stderr.includes(READY_LINE), 60_000, "readiness");
        const cmdline = await Deno.readTextFile(`/proc/${s.pid}/cmdline`);
        assert.match(cmdline, /main\.ts/, "the shim exec'd deno: slirpd has the command's PID");
        const r = await guest.exec(["ping", "-c", "1", "-W", "5", "10.0.2.2"]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const st = await s.stop(sig, 10_000);
        assert.equal(st.code, 0, `${sig}: ${s.stderr}`);
        assert.equal(st.signal, null);
      }

      const c = await run([bin, "--", "sh", "-c", "ip -br link show tun0 >/dev/null && exit 3"], {
        env,
        timeoutMs: 60_000,
      });
      assert.equal(c.code, 3, c.stdout + c.stderr);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
