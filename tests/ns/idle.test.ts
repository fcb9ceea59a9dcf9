// An idle slirpd takes no wake-ups: after its start-up (router advertisements at ~0, 4 and 8 s)
// and some traffic, none of its threads is switched in for 6 s. Its own periodic timers (the
// memory check every 5 s, the store-pool trim every 10 s, the host-prefix rescan every 30 s)
// used to wake it; they are now armed only when there is work (daemon/memory.ts,
// stack/tcp/mod.ts, firewall/hostprefixes.ts).

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, skip, startSlirpd } from "../support/harness.ts";

/** Context switches of each thread of `pid` so far (each one a wake-up), by thread id. */
function switches(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const s = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`);
      let n = 0;
      for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) n += Number(m[1]);
      out.set(t.name, n);
    } catch { /* the thread ended */ }
  }
  return out;
}

/** Switches between two snapshots (a thread that ended meanwhile counts as one wake-up). */
function woken(a: Map<string, number>, b: Map<string, number>): number {
  let n = 0;
  for (const [tid, c] of b) n += c - (a.get(tid) ?? 0);
  for (const tid of a.keys()) if (!b.has(tid)) n++;
  return n;
}

Deno.test({
  name: "idle: an idle slirpd is not woken for 6 s, after traffic too",
  ignore: skip(needs("python3", "ip", "nsenter"), "idle wake-ups"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using net = await makeHostNet();
    await using guest = await makeNetns("idle");
    await using slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-host", "--quiet"],
    });
    // Some traffic: UDP datagrams and TCP connections (refused: nothing listens).
    await guest.exec([
      "python3",
      "-c",
      `
import socket
for i in range(20):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x" * 100, ("192.0.2.1", 9))
    try:
        socket.create_connection(("192.0.2.1", 9), timeout=1)
    except OSError:
        pass
`,
    ]);
    // Past the start-up advertisements (RA at 0, ~4 and ~8 s) and the refused connections.
    await new Promise((r) => setTimeout(r, 10_000));
    const before = switches(slirpd.pid);
    await new Promise((r) => setTimeout(r, 6_000));
    const n = woken(before, switches(slirpd.pid));
    console.log(`slirpd threads switched in ${n} times in 6 s idle`);
    // A thread of Deno's blocking pool ending (10 s after its last use) counts; the timers
    // this test is about made 8 here.
    assert.ok(n <= 3, `an idle slirpd was woken ${n} times in 6 s`);
  },
});
