// The release binary: `deno task compile` makes one self-contained `slirpd`, and that binary
// attaches to a namespace and answers pings like `deno run main.ts` does.
//
// `deno compile` fetches the `denort` runtime from Deno's download host, which some machines
// (this project's CI among them) cannot reach. Where DENORT_BIN points at a denort, the test
// runs; elsewhere it is skipped and says so.

import assert from "node:assert/strict";
import { makeNetns, needs, run, skip, SLIRPD_V8_FLAGS, startSlirpd } from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const DENORT = Deno.env.get("DENORT_BIN");
const REASON = !DENORT
  ? "skipped: needs DENORT_BIN (deno compile downloads denort, unreachable here)"
  : needs("ping");

Deno.test({
  name: "compile: the compiled slirpd starts, answers ping, stops with 0",
  ignore: skip(REASON, "compiled binary"),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out = `${dir}/slirpd`;
      const c = await run(
        [
          Deno.execPath(),
          "compile",
          "--allow-all",
          SLIRPD_V8_FLAGS,
          "--output",
          out,
          `${REPO}main.ts`,
        ],
        { timeoutMs: 300_000 },
      );
      assert.equal(c.code, 0, c.stderr);
      const help = await run([out, "--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /--netns/);
      await using guest = await makeNetns("bin");
      const env = { SLIRPD_BIN: out };
      await using slirpd = await startSlirpd({ guest, args: ["--configure"], env });
      const r = await guest.exec(["ping", "-c", "2", "-i", "0.1", "-W", "2", "10.0.2.2"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal((await slirpd.stop()).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
