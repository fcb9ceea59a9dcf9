// The harness's own leftover checks: they look only at what the test made, and they fail the
// test that leaked.

import assert from "node:assert/strict";
import { Background, makeNetns, taggedProcesses } from "../support/harness.ts";

Deno.test("harness: a Background's leaked grandchild is found, killed and reported", async () => {
  const b = new Background(["sh", "-c", "sleep 57 & echo started; exit 0"]);
  await b.waitFor((x) => x.stdout.includes("started"), 5_000, "start");
  await b.child.status; // (not b.done: the sleep still holds the output pipes)
  const [stray] = taggedProcesses(b.tag);
  assert.ok(stray, "the background sleep is tagged");
  assert.match(stray.args, /sleep 57/);
  await assert.rejects(() => b[Symbol.asyncDispose](), /leftover processes of "sh -c .*sleep 57/);
  assert.deepEqual(taggedProcesses(b.tag), []);
});

Deno.test("harness: a clean Background disposes without complaint", async () => {
  await using b = new Background(["sleep", "30"]);
  assert.equal(taggedProcesses(b.tag).length, 1);
});

Deno.test("harness: a Netns is gone after dispose", async () => {
  const ns = await makeNetns("harness");
  await ns[Symbol.asyncDispose]();
  assert.throws(() => Deno.statSync(ns.path), Deno.errors.NotFound);
});
