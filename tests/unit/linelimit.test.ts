// The per-flow error line limit (stack/flow/linelimit.ts): budget per window, the summary from
// the wheel once the window is over (no further line needed), other lines untouched.

import assert from "node:assert/strict";
import { ErrorLineLimiter, LINE_BUDGET, LINE_WINDOW_MS } from "../../stack/flow/linelimit.ts";
import { TimerWheel } from "../../stack/flow/timers.ts";

Deno.test("linelimit: budget, then one summary when the window ends", () => {
  let now = 1000;
  const wheel = new TimerWheel(now);
  const out: string[] = [];
  const l = new ErrorLineLimiter((s) => out.push(s), wheel, () => now);
  for (let i = 0; i < 500; i++) l.log(`[!] Routing conn 10.0.2.100:${i} error: ECONNREFUSED`);
  l.log("[+] Routing conn new");
  assert.equal(out.length, LINE_BUDGET + 1);
  now += LINE_WINDOW_MS + 50;
  wheel.advance(now);
  assert.equal(out.length, LINE_BUDGET + 2);
  assert.match(out.at(-1)!, new RegExp(`^\\[!\\] ${500 - LINE_BUDGET} more connection error`));
  l.log("[!] Routing conn x error: ECONNREFUSED"); // a new window: written
  assert.equal(out.length, LINE_BUDGET + 3);
  l.flush();
  assert.equal(out.length, LINE_BUDGET + 3); // nothing suppressed: no summary
  assert.deepEqual([l.written, l.suppressed], [LINE_BUDGET + 1, 500 - LINE_BUDGET]);
});
