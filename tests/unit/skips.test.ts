// `deno task test` on a machine without a tool: the tests that need it are skipped (not failed),
// and the run ends with one line naming the tool and the apt-get line; --no-skips (CI) fails.
// The "machine" is an empty PATH: tcp_peer.test.ts then cannot find python3.

import assert from "node:assert/strict";
import { run } from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;

Deno.test("skips: a missing tool skips its tests and is named with its apt-get line", async () => {
  const empty = await Deno.makeTempDir();
  try {
    const cmd = [Deno.execPath(), "run", "--allow-all", `${REPO}scripts/test.ts`];
    const file = `${REPO}tests/ns/tcp_peer.test.ts`;
    const env = { PATH: empty };
    const r = await run([...cmd, file], { env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.at(-2), "tests: 0 passed, 0 failed, 1 skipped");
    assert.equal(lines.at(-1), "skipped tests need python3: apt-get install -y python3");

    const strict = await run([...cmd, "--no-skips", file], { env, timeoutMs: 120_000 });
    assert.equal(strict.code, 1, strict.stdout + strict.stderr);
    assert.match(strict.stderr, /--no-skips: 1 tool\(s\) missing/);

    // With python3 (checked here without needs(): this part is optional, not a skip).
    if ((await run(["sh", "-c", "command -v python3"])).code === 0) {
      const full = await run([...cmd, file], { timeoutMs: 120_000 });
      assert.equal(full.code, 0, full.stdout + full.stderr);
      assert.match(full.stdout, /tests: 1 passed, 0 failed, 0 skipped\nskipped: nothing/);
    }
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});
