// Poller on the real kernel: stop() wakes a sleeping wait, tap readiness reaches handlers,
// tick timeouts are honoured without spinning, a throwing handler does not end the loop, and
// Deno timers still run while the loop is busy.

import { skip } from "../support/harness.ts";
import { makeNetns, needs } from "../support/harness.ts";
import { openGuestNetnsDirect } from "../../ffi/netns.ts";
import { openTap, Tap } from "../../ffi/tap.ts";
import { configureGuest } from "../../ffi/netlink.ts";
import { EPOLLIN, EPOLLOUT, Poller } from "../../ffi/poller.ts";
import { openLibc } from "../../ffi/libc.ts";
import { assert, assertEquals, GUEST4, GW4, isArpRequest } from "../support/ffi_helpers.ts";

const SKIP = Deno.uid() !== 0 ? "skipped: needs root" : null;

const libc = openLibc({
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});

/** A nonblocking eventfd: readable once signalled, always writable. */
class EventFd {
  readonly fd = libc.eventfd(0, 0o4000 | 0o2000000);
  #b = new Uint8Array(8);
  signal(): void {
    this.#b.fill(0);
    this.#b[0] = 1;
    libc.write(this.fd, this.#b, 8);
  }
  drain(): void {
    libc.read(this.fd, this.#b, 8);
  }
  close(): void {
    libc.close(this.fd);
  }
}

Deno.test("Poller: stop() wakes a pending wait promptly and run() resolves", async () => {
  const p = new Poller();
  try {
    let stoppedAt = 0;
    setTimeout(() => {
      stoppedAt = performance.now();
      p.stop();
    }, 100);
    const t0 = performance.now();
    await p.run(() => -1); // no timer: only the eventfd can end this wait
    const t1 = performance.now();
    assert(stoppedAt > 0 && t1 - t0 >= 90, `returned before stop (${t1 - t0} ms)`);
    assert(t1 - stoppedAt < 1000, `stop took ${t1 - stoppedAt} ms`);
    assertEquals(p.idleWaits, 1);

    // A stop() before run() ends that run at once; the poller can run again afterwards.
    p.stop();
    await p.run(() => -1);
    setTimeout(() => p.stop(), 20);
    await p.run(() => 5);
  } finally {
    p.close();
  }
});

Deno.test("Poller: tick timeouts are honoured without spinning", async () => {
  const p = new Poller();
  try {
    const ticks: number[] = [];
    setTimeout(() => p.stop(), 500);
    await p.run(() => {
      ticks.push(performance.now());
      return 50;
    });
    // ~10 ticks in 500 ms (one per timeout), not thousands (spinning) nor 1 (timeout ignored).
    assert(ticks.length >= 6 && ticks.length <= 14, `${ticks.length} ticks`);
    const gaps = ticks.slice(1).map((t, i) => t - ticks[i]).slice(1, -1);
    assert(gaps.every((g) => g >= 45 && g < 200), `gaps ${gaps.map((g) => g.toFixed(1))}`);
  } finally {
    p.close();
  }
});

Deno.test("Poller: a throwing handler is counted and the loop goes on; modify/remove work", async () => {
  const p = new Poller();
  const ev = new EventFd();
  const origError = console.error;
  let logged = 0;
  console.error = () => logged++;
  try {
    const seen: number[] = [];
    let calls = 0;
    p.add(ev, EPOLLIN, (mask) => {
      seen.push(mask);
      if (++calls === 1) throw new Error("first call fails"); // level-triggered: called again
      ev.drain();
      p.modify(ev, EPOLLOUT); // an eventfd is always writable
      if (calls >= 4) {
        p.remove(ev);
        setTimeout(() => p.stop(), 30); // after removal no more calls
      }
    });
    ev.signal();
    const bound = setTimeout(() => p.stop(), 3000);
    await p.run(() => -1);
    clearTimeout(bound);
    assertEquals(p.handlerErrors, 1);
    assertEquals(logged, 1);
    assertEquals(calls, 4);
    assertEquals(seen, [EPOLLIN, EPOLLIN, EPOLLOUT, EPOLLOUT]);
  } finally {
    console.error = origError;
    ev.close();
    p.close();
  }
});

Deno.test("Poller: Deno timers run while the loop is busy (it yields to the event loop)", async () => {
  const p = new Poller();
  try {
    let rounds = 0;
    const t0 = performance.now();
    setTimeout(() => p.stop(), 50);
    await p.run(() => {
      if (++rounds > 5_000_000) p.stop(); // bound, in case yielding were broken
      return 0; // always busy
    });
    const ms = performance.now() - t0;
    assert(rounds < 5_000_000 && ms < 1000, `timer starved: ${rounds} rounds, ${ms} ms`);
    assertEquals(p.idleWaits, 0);
  } finally {
    p.close();
  }
});

Deno.test({
  name: "Poller: a readable tap reaches its handler with EPOLLIN",
  ignore: skip(SKIP ?? needs("ping"), "ffi_poller"),
  fn: async () => {
    await using ns = await makeNetns("poll");
    const name = `sdtap${Math.random().toString(36).slice(2, 8)}`;
    const g = openGuestNetnsDirect(ns.path);
    let tap: Tap;
    try {
      tap = openTap({ name, create: true, vnetHdr: true, offload: true }, g);
      configureGuest({
        ifname: name,
        mtu: 1500,
        addrs: [{ addr: GUEST4, prefixLen: 24 }],
        gateways: [GW4],
      }, g);
    } finally {
      g.close();
    }
    const p = new Poller();
    try {
      const rx = new Uint8Array(128 * 1024);
      let masks = 0, frames = 0, arp = false;
      p.add(tap, EPOLLIN, (mask) => {
        masks |= mask;
        for (let n = tap.read(rx); n > 0; n = tap.read(rx)) {
          frames++;
          if (isArpRequest(rx, tap.vnetLen, GW4)) {
            arp = true;
            p.stop();
          }
        }
      });
      const ping = ns.exec(["ping", "-c1", "-W1", "10.0.2.2"], { timeoutMs: 5000 });
      const bound = setTimeout(() => p.stop(), 5000);
      await p.run(() => -1);
      clearTimeout(bound);
      await ping;
      assert(arp, `no ARP request among ${frames} frames`);
      assertEquals(masks & EPOLLIN, EPOLLIN);
      p.remove(tap);
    } finally {
      p.close();
      tap.close();
    }
  },
});
