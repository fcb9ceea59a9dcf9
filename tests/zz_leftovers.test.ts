// Runs last (files run in name order): the suite left nothing behind — no test namespaces,
// no slirpd or helper processes started by the tests.

import assert from "node:assert/strict";
import { leftoverNamespaces, run } from "./harness.ts";

Deno.test("leftovers: no test namespaces and no slirpd processes remain", async () => {
  assert.deepEqual(await leftoverNamespaces(), []);
  const ps = await run(["ps", "-eo", "pid,args"]);
  const strays = ps.stdout.split("\n").filter((l) =>
    /main\.ts .*--netns|sdt-|\/proc\/\d+\/ns\/net --configure/.test(l) && !l.includes("ps -eo")
  );
  assert.deepEqual(strays, []);
});
