// daemon/flags.ts: the subset of node:util's parseArgs that daemon/config.ts uses, with node's
// error wording (config.ts turns it into Go's). Checked against node's own parseArgs.

import assert from "node:assert/strict";
import { parseArgs as nodeParseArgs } from "node:util";
import { type FlagOption, parseArgs } from "../../daemon/flags.ts";

const OPTIONS: Record<string, FlagOption> = {
  mtu: { type: "string", short: "m" },
  configure: { type: "boolean", short: "c" },
  "enable-ipv6": { type: "boolean", short: "6" },
  allow: { type: "string", multiple: true },
  quiet: { type: "boolean", short: "q" },
};

function both(args: string[]) {
  const mine = (() => {
    try {
      return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
    } catch (e) {
      return (e as Error).message.split("\n")[0];
    }
  })();
  const node = (() => {
    try {
      const r = nodeParseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
      return { values: { ...r.values }, positionals: r.positionals };
    } catch (e) {
      return (e as Error).message.split("\n")[0];
    }
  })();
  return { mine, node };
}

Deno.test("flags: the same values, positionals and errors as node's parseArgs", () => {
  const cases = [
    ["--mtu", "1500", "-c", "123", "tap0"],
    ["--mtu=9000", "-c6", "--allow", "a", "--allow=b", "/run/netns/x"],
    ["-m1500", "-q", "--", "--not-a-flag"],
    ["-", "x"],
    ["--bogus"],
    ["-z"],
    ["--mtu"],
    ["-m"],
    ["--quiet=1"],
  ];
  for (const args of cases) {
    const { mine, node } = both(args);
    if (typeof node === "string") {
      assert.equal(typeof mine, "string", `${args.join(" ")}: node fails (${node})`);
      // The part config.ts reads: Unknown option '-x' / Option '...' argument missing / ...
      const key = (s: string) => s.replace(/\. To specify.*$/, "");
      assert.equal(key(mine as string), key(node), args.join(" "));
    } else assert.deepEqual(mine, node, args.join(" "));
  }
});
