// `deno task compile [--target TRIPLE] [--output PATH]`: one self-contained `slirpd` binary
// with the narrowest permissions (scripts/permissions.ts) and a version stamp.
//
// The stamp: SLIRPD_VERSION (default `git describe --tags --always`, else "dev"),
// SLIRPD_COMMIT (default `git rev-parse HEAD`) and SLIRPD_BUILD_TIME (default now, UTC) are
// written to an env file that `deno compile --env-file` embeds; daemon/version.ts reads them
// (--version). The release workflow sets SLIRPD_VERSION to the tag.
//
// `deno compile` needs the `denort` runtime of the target: it downloads it, or uses the file
// DENORT_BIN names. Offline without DENORT_BIN this says so in one line instead of deno's
// multi-line download error.

import { parseArgs } from "node:util";
import { PERMISSION_FLAGS } from "./permissions.ts";

const REPO = new URL("..", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: { target: { type: "string" }, output: { type: "string", default: "slirpd" } },
});

async function git(args: string[]): Promise<string | null> {
  try {
    const r = await new Deno.Command("git", { args, cwd: REPO, stderr: "null" }).output();
    return r.code === 0 ? new TextDecoder().decode(r.stdout).trim() : null;
  } catch {
    return null; // no git
  }
}

const env = Deno.env.toObject();
const stamp = {
  SLIRPD_VERSION: env.SLIRPD_VERSION || (await git(["describe", "--tags", "--always"])) || "dev",
  SLIRPD_COMMIT: env.SLIRPD_COMMIT || (await git(["rev-parse", "HEAD"])) || "unknown",
  SLIRPD_BUILD_TIME: env.SLIRPD_BUILD_TIME || new Date().toISOString().replace(/\.\d+Z$/, "Z"),
};
const envFile = await Deno.makeTempFile({ prefix: "slirpd-stamp-", suffix: ".env" });
await Deno.writeTextFile(
  envFile,
  Object.entries(stamp).map(([k, v]) => `${k}=${JSON.stringify(v)}\n`).join(""),
);
let code = 1;
try {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      ...PERMISSION_FLAGS,
      `--env-file=${envFile}`,
      ...(values.target ? ["--target", values.target] : []),
      "--output",
      values.output!,
      `${REPO}main.ts`,
    ],
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(r.stderr);
  if (r.code !== 0 && !env.DENORT_BIN && /denort|dl\.deno\.land|error sending request/.test(err)) {
    console.error(
      "compile: deno compile could not download the denort runtime (no network?): set " +
        "DENORT_BIN=/path/to/denort (from Deno 2.9.6's denort-<target>.zip) and run it again",
    );
  } else {
    await Deno.stderr.write(r.stderr);
    if (r.code === 0) console.log(`compile: ${values.output} ${JSON.stringify(stamp)}`);
    code = r.code;
  }
} finally {
  await Deno.remove(envFile);
}
Deno.exit(code);
