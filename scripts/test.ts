// `deno task test [ARGS]`: the suite (`deno test --allow-all tests/`, or the files in ARGS),
// ending with two lines: the counts ("tests: N passed, N failed, N skipped") and one line that
// names every tool a skipped test needed with the apt-get line that installs them.
//
// --no-skips (.ci/run): fail the run when a test was skipped for a missing tool, since CI
// installs them all. Skips for other reasons (no DENORT_BIN, ...) are listed but do not fail it.
//
// Tests log their skips through tests/support/harness.ts (needs()/skip()) to the file named by
// SLIRPD_SKIP_LOG: each test file runs in its own isolate, so a file is the one place they meet.

import { TOOL_PACKAGES } from "../tests/support/harness.ts";

const strict = Deno.args.includes("--no-skips");
const args = Deno.args.filter((a) => a !== "--no-skips");
const hasPaths = args.some((a) =>
  !a.startsWith("-") && (a.endsWith(".ts") || a.startsWith("tests"))
);
const log = await Deno.makeTempFile({ prefix: "slirpd-skips-" });

const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", ...args, ...(hasPaths ? [] : ["tests/"])],
  env: { SLIRPD_SKIP_LOG: log },
  stdin: "null",
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Pass the output through, keeping deno test's last "N passed | N failed | N ignored" line.
let counts = { passed: 0, failed: 0, ignored: 0 };
let tail = "";
const dec = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  const lines = (tail + dec.decode(chunk, { stream: true })).split("\n");
  tail = lines.pop() ?? "";
  for (const l of lines) counts = parseCounts(l) ?? counts;
}
counts = parseCounts(tail) ?? counts;
const status = await child.status;

const entries = (await Deno.readTextFile(log)).split("\n").filter((l) => l !== "");
await Deno.remove(log);
const tools = [...new Set(entries.filter((e) => e.startsWith("tool ")).map((e) => e.slice(5)))]
  .sort();
const others = [...new Set(entries.filter((e) => e.startsWith("other ")).map((e) => e.slice(6)))];
console.log(`tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.ignored} skipped`);
console.log(summary(tools, others));

if (status.code !== 0) Deno.exit(status.code);
if (strict && tools.length > 0) {
  console.error(`test: --no-skips: ${tools.length} tool(s) missing, see the line above`);
  Deno.exit(1);
}

function parseCounts(line: string) {
  // deno test: "ok | 12 passed | 0 failed | 2 ignored (3s)" (colours stripped)
  // deno-lint-ignore no-control-regex
  const l = line.replace(/\x1b\[[0-9;]*m/g, "");
  const steps = String.raw`(?: \(\d+ steps?\))?`;
  const m = l.match(
    new RegExp(
      String.raw`^(?:ok|FAILED) \| (\d+) passed${steps} \| (\d+) failed${steps}` +
        String.raw`(?: \| (\d+) ignored)?`,
    ),
  );
  if (!m) return null;
  return { passed: Number(m[1]), failed: Number(m[2]), ignored: Number(m[3] ?? 0) };
}

/** The one line about skips: the tools, the apt-get line, then other reasons. */
function summary(tools: string[], others: string[]): string {
  const parts: string[] = [];
  if (tools.length > 0) {
    const pkgs = [...new Set(tools.map((t) => TOOL_PACKAGES[t] ?? t))].sort();
    parts.push(
      `skipped tests need ${tools.join(", ")}: apt-get install -y ${pkgs.join(" ")}`,
    );
  }
  if (others.length > 0) parts.push(`also skipped: ${others.join("; ")}`);
  return parts.length > 0
    ? parts.join(" — ")
    : "skipped: nothing (every tool the suite uses is here)";
}
