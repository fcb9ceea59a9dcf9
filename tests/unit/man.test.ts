// slirpd.1 is generated from the flag table (scripts/man.ts) and renders with man.

import assert from "node:assert/strict";
import { manPage } from "../../scripts/man.ts";
import { FLAGS } from "../../daemon/options.ts";
import { needs, run, skip } from "../support/harness.ts";

const PAGE = new URL("../../slirpd.1", import.meta.url).pathname;

Deno.test("man: slirpd.1 is up to date (deno run -A scripts/man.ts writes it)", async () => {
  const have = await Deno.readTextFile(PAGE).catch(() => "(missing)");
  assert.ok(have === manPage(), "slirpd.1 is out of date: run `deno run -A scripts/man.ts`");
  for (const name of Object.keys(FLAGS)) {
    assert.ok(have.includes(`\\-\\-${name.replaceAll("-", "\\-")}`), name);
  }
});

Deno.test({
  name: "man: `man ./slirpd.1` renders every section without warnings",
  ignore: skip(needs("man"), "man page rendering"),
  fn: async () => {
    const repo = new URL("../..", import.meta.url).pathname;
    const r = await run(["sh", "-c", 'cd "$1" && exec man --warnings ./slirpd.1', "sh", repo], {
      env: { MANPAGER: "cat", PAGER: "cat", MANWIDTH: "100", LC_ALL: "C.UTF-8" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "", "no roff warnings");
    for (
      const s of [
        "NAME",
        "SYNOPSIS",
        "COMMAND-LINE FORMS",
        "OPTIONS",
        "API SOCKET",
        "FIREWALL",
        "FILES",
        "EXIT STATUS",
      ]
    ) assert.match(r.stdout, new RegExp(`^${s}$`, "m"), s);
    assert.match(r.stdout, /--enable-routing/);
    assert.match(r.stdout, /slirpd \[OPTIONS\] -- CMD \[ARGS\.\.\.\]/);
  },
});
