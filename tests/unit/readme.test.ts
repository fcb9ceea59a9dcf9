// The README stays true: it names every flag (the table comes from scripts/flags_table.ts) and
// its quick start is the two commands CI and a new user run.

import assert from "node:assert/strict";
import { FLAGS } from "../../daemon/options.ts";

const README = await Deno.readTextFile(new URL("../../README.md", import.meta.url));

Deno.test("readme: every flag is documented", () => {
  for (const name of Object.keys(FLAGS)) {
    assert.match(README, new RegExp(`\`(-\\w, )?--${name}\\b`), `--${name} missing from README`);
  }
});

Deno.test("readme: the quick start is the demo and the test suite", async () => {
  assert.match(README, /npx -y deno@2\.9\.6 task demo/);
  assert.match(README, /npx -y deno@2\.9\.6 task test/);
  const ci = await Deno.readTextFile(new URL("../../.ci/run", import.meta.url));
  assert.match(ci, /npx -y deno@2\.9\.6 task test/, "CI runs the README's test command");
});
