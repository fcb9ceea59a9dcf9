// The hashed timing wheel against a brute-force model: every armed timer fires exactly once,
// never before its deadline and at the first advance() at or after it; cancel and re-arm
// (move) work from inside callbacks; nextTimeout never oversleeps a deadline.

import assert from "node:assert/strict";

const assertEquals = <T>(a: T, b: T, msg?: string) => assert.deepStrictEqual(a, b, msg);
import { Timer, TimerWheel } from "../../stack/flow/timers.ts";

/** Small deterministic PRNG (xorshift32) so a failure is reproducible. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

Deno.test("timers: fire once, on time, with moves, cancels and overflow", () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    const r = rng(seed);
    let now = 1_000_000;
    const wheel = new TimerWheel(now, { tickMs: 1, slots: 256 });
    const N = 200;
    const deadline = new Float64Array(N).fill(-1); // model: -1 not armed
    const firedAt = new Float64Array(N).fill(-1);
    const timers: Timer[] = [];
    for (let i = 0; i < N; i++) {
      timers.push(
        new Timer(() => {
          assert(deadline[i] >= 0, `timer ${i} fired while not armed`);
          assert(now >= deadline[i], `timer ${i} early: now ${now} < ${deadline[i]}`);
          firedAt[i] = now;
          deadline[i] = -1;
          // Callbacks sometimes re-arm themselves or cancel/move others.
          const x = r();
          if (x < 0.2) {
            const d = Math.floor(r() * 600);
            deadline[i] = now + d;
            wheel.arm(timers[i], d);
          } else if (x < 0.3) {
            const j = Math.floor(r() * N);
            wheel.cancel(timers[j]);
            deadline[j] = -1;
          }
        }),
      );
    }
    for (let step = 0; step < 3000; step++) {
      const x = r();
      const i = Math.floor(r() * N);
      if (x < 0.4) {
        // arm or move: mostly near, some beyond one rotation (overflow), some due now.
        const y = r();
        const d = y < 0.1 ? 0 : y < 0.8 ? Math.floor(r() * 300) : Math.floor(r() * 5000);
        deadline[i] = now + d;
        wheel.arm(timers[i], d);
      } else if (x < 0.5) {
        wheel.cancel(timers[i]);
        deadline[i] = -1;
      } else {
        // Check the sleep hint first: no armed timer may be due before it says.
        const hint = wheel.nextTimeout(now);
        let min = Infinity;
        for (let k = 0; k < N; k++) if (deadline[k] >= 0) min = Math.min(min, deadline[k]);
        if (min === Infinity) assertEquals(hint, -1);
        else assert(hint >= 0 && now + hint <= Math.max(min, now), `hint ${hint} oversleeps`);
        const jump = r() < 0.05 ? Math.floor(r() * 20000) : Math.floor(r() * 40);
        now += jump;
        wheel.advance(now);
        for (let k = 0; k < N; k++) {
          assert(!(deadline[k] >= 0 && deadline[k] <= now), `timer ${k} late`);
        }
      }
      let armed = 0;
      for (let k = 0; k < N; k++) if (deadline[k] >= 0) armed++;
      assertEquals(wheel.size, armed);
      for (let k = 0; k < N; k++) assertEquals(timers[k].armed, deadline[k] >= 0);
    }
  }
});

Deno.test("timers: nextTimeout is exact for wheel timers and -1 when idle", () => {
  const wheel = new TimerWheel(0, { tickMs: 1, slots: 1024 });
  assertEquals(wheel.nextTimeout(0), -1);
  let fired = 0;
  const a = new Timer(() => fired++);
  const b = new Timer(() => fired++);
  wheel.arm(a, 700);
  wheel.arm(b, 50);
  assertEquals(wheel.nextTimeout(0), 50);
  wheel.cancel(b);
  assertEquals(wheel.nextTimeout(0), 700);
  wheel.advance(699);
  assertEquals(fired, 0);
  assertEquals(wheel.nextTimeout(699), 1);
  wheel.advance(700);
  assertEquals(fired, 1);
  assertEquals(wheel.nextTimeout(700), -1);
  // Far timers: the hint may be early (an overflow sweep) but never late.
  wheel.arm(a, 100_000);
  const h = wheel.nextTimeout(700);
  assert(h > 0 && h <= 100_000);
  wheel.advance(700 + 100_000);
  assertEquals(fired, 2);
});

Deno.test("timers: a long idle jump is cheap and fires everything due", () => {
  const wheel = new TimerWheel(0, { tickMs: 1, slots: 4096 });
  let fired = 0;
  const ts: Timer[] = [];
  for (let i = 0; i < 10_000; i++) {
    const t = new Timer(() => fired++);
    ts.push(t);
    wheel.arm(t, 1 + i * 700); // up to 7e6 ms: mostly overflow
  }
  const t0 = performance.now();
  wheel.advance(7_200_000); // two hours later
  const ms = performance.now() - t0;
  assertEquals(fired, 10_000);
  assertEquals(wheel.size, 0);
  assert(ms < 500, `advance took ${ms} ms`);
});
