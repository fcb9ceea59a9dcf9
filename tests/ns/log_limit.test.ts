// Logs under attack: 2,000 connections from the guest to a closed host port are 2,000
// "Routing conn ... error: ECONNREFUSED" lines without a limit; with it, at most LINE_BUDGET per
// window and one "N more ... suppressed" summary (stack/flow/linelimit.ts).

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, skip, startSlirpd } from "../support/harness.ts";
import { LINE_BUDGET } from "../../stack/flow/linelimit.ts";

const CHURN = String.raw`
import socket
refused = 0
for i in range(2000):
    s = socket.socket(); s.settimeout(5)
    if s.connect_ex(("192.0.2.2", 7999)) == 111: refused += 1
    s.close()
print("refused", refused, flush=True)
`;

Deno.test({
  name: "log limit: 2,000 refused connections write a bounded number of error lines",
  ignore: skip(needs("python3", "ip", "nsenter"), "log limit"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using net = await makeHostNet();
    await using guest = await makeNetns("logguest");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", "--enable-host"],
    });
    const r = await guest.exec(["python3", "-c", CHURN], { timeoutMs: 120_000 });
    assert.equal(r.stdout.trim(), "refused 2000", r.stdout + r.stderr);
    assert.equal((await slirpd.stop()).code, 0);
    const out = slirpd.stdout.split("\n");
    const errors = out.filter((l) => l.includes(" error: ")).length;
    const summary = out.filter((l) => /\d+ more connection error lines suppressed/.test(l));
    console.log(`${errors} error lines, summary: ${summary.join(" | ")}`);
    // Under a slow machine the churn can span a few windows: a handful of budgets at most.
    assert.ok(errors <= 4 * LINE_BUDGET, `${errors} error lines`);
    assert.ok(summary.length >= 1 && summary.length <= 4, summary.join("\n"));
    const left = summary.reduce((n, l) => n + Number(/\] (\d+) more/.exec(l)![1]), 0);
    assert.equal(errors + left, 2000);
  },
});
