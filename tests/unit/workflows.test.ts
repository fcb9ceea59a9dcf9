// The GitHub workflows cannot run here, so their commands are checked against what this repo
// runs: CI is .ci/run (which runs the README's test command), the release compiles with
// `deno task compile` for both Linux targets with the version stamp, and attaches the binaries
// and SHA256SUMS. README explains each permission the binary gets (scripts/permissions.ts).

import assert from "node:assert/strict";
import { parse } from "npm:yaml@2.9.1";
import { PERMISSIONS } from "../../scripts/permissions.ts";

const REPO = new URL("../..", import.meta.url);
const read = (p: string) => Deno.readTextFile(new URL(p, REPO));

interface Step {
  run?: string;
  uses?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
}
interface Job {
  needs?: string | string[];
  steps: Step[];
  strategy?: { matrix: Record<string, string[]> };
}
interface Workflow {
  on: Record<string, unknown>;
  jobs: Record<string, Job>;
}

async function workflow(name: string): Promise<Workflow> {
  return parse(await read(`.github/workflows/${name}`)) as Workflow;
}

const runs = (j: Job) => j.steps.map((s) => s.run ?? "").join("\n");

/** Every `deno task X` in a workflow names a task of deno.json; every npx deno is README's. */
async function checkCommands(w: Workflow): Promise<void> {
  const tasks = JSON.parse(await read("deno.json")).tasks as Record<string, string>;
  const readme = await read("README.md");
  for (const job of Object.values(w.jobs)) {
    const text = runs(job);
    for (const m of text.matchAll(/deno task (\w+)/g)) {
      assert.ok(m[1] in tasks, `deno task ${m[1]} is not in deno.json`);
    }
    for (const m of text.matchAll(/deno@([\d.]+)/g)) {
      assert.ok(readme.includes(`deno@${m[1]}`), `deno@${m[1]} is not the README's Deno`);
    }
  }
}

Deno.test("workflows: ci.yml runs .ci/run on pushes and pull requests", async () => {
  const w = await workflow("ci.yml");
  assert.ok("push" in w.on && "pull_request" in w.on);
  assert.ok(Object.values(w.jobs).some((j) => /^bash \.ci\/run$/m.test(runs(j))));
  const ci = await read(".ci/run");
  assert.match(ci, /^npx -y deno@2\.9\.6 task test --no-skips$/m, ".ci/run: the README's test");
  await checkCommands(w);
});

Deno.test("workflows: release.yml tests, compiles both targets stamped, attaches SHA256SUMS", async () => {
  const w = await workflow("release.yml");
  assert.deepEqual((w.on.push as { tags: string[] }).tags, ["v*"]);
  const test = Object.entries(w.jobs).find(([, j]) => /^bash \.ci\/run$/m.test(runs(j)));
  assert.ok(test, "a job runs the test suite (.ci/run)");
  const compile = Object.values(w.jobs).find((j) => /deno task compile/.test(runs(j)));
  assert.ok(compile, "a job runs deno task compile");
  assert.ok([compile.needs].flat().includes(test[0]), "compile waits for the tests");
  assert.deepEqual(compile.strategy?.matrix.target, [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
  ]);
  const step = compile.steps.find((s) => /deno task compile/.test(s.run ?? ""))!;
  assert.match(step.run!, /deno task compile --target \$\{\{ matrix\.target \}\}/);
  assert.equal(step.env?.SLIRPD_VERSION, "${{ github.ref_name }}");
  assert.equal(step.env?.SLIRPD_COMMIT, "${{ github.sha }}");
  assert.match(step.run!, /SLIRPD_BUILD_TIME="\$\(date -u /, "build time in UTC");
  const release = Object.values(w.jobs).map(runs).join("\n");
  assert.match(release, /sha256sum slirpd-\* > SHA256SUMS/);
  assert.match(release, /gh release create .* dist\/\*/);
  // The compile script stamps what daemon/version.ts reads.
  const compileTs = await read("scripts/compile.ts");
  for (const v of ["SLIRPD_VERSION", "SLIRPD_COMMIT", "SLIRPD_BUILD_TIME"]) {
    assert.match(compileTs, new RegExp(`${v}:`), v);
  }
  await checkCommands(w);
});

Deno.test("workflows: README explains every permission of the compiled binary", async () => {
  const readme = await read("README.md");
  for (const p of PERMISSIONS) {
    assert.ok(readme.includes(`\`${p.flag}\``), `README does not explain ${p.flag}`);
  }
  assert.match(readme, /SHA256SUMS/);
  assert.match(readme, /deno task install/);
});
