// The long frame fuzz run (the suite runs 120k frames per mode, tests/unit/fuzz_frames.test.ts):
//
//   deno task fuzz [--frames N] [--seed S]      (default 1,000,000 frames per vnet mode)
//
// Seeded random and mutated frames through a whole Stack (tests/support/fuzz.ts). Fails (exit
// 1) when a frame hit an internal error, the heap grew by 64 MiB or more, or a well-formed
// frame is no longer answered afterwards. Prints the drop counters and RSS before/after.

import { fuzzStack } from "../tests/support/fuzz.ts";

function arg(name: string, def: number): number {
  const i = Deno.args.indexOf(name);
  if (i < 0) return def;
  const v = Number(Deno.args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`fuzz: invalid value "${Deno.args[i + 1]}" for flag ${name}`);
    Deno.exit(2);
  }
  return v;
}

const frames = arg("--frames", 1_000_000);
const seed = arg("--seed", 0x5eed);
const rssMb = () => (Deno.memoryUsage().rss / 2 ** 20).toFixed(0);
let failed = false;
for (const vnetLen of [10, 0] as const) {
  const rss0 = rssMb();
  const t0 = performance.now();
  const r = fuzzStack(frames, vnetLen, seed + vnetLen, (i) => {
    if (i > 0) Deno.stderr.writeSync(new TextEncoder().encode(`\r${i} frames`));
  });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.error(
    `\rfuzz vnet=${vnetLen}: ${frames} frames in ${s} s, RSS ${rss0} → ${rssMb()} MiB, heap ` +
      `+${(r.heapGrowth / 2 ** 20).toFixed(1)} MiB, answers after: ${r.answersAfter}`,
  );
  console.log(JSON.stringify(r.counters.snapshot()));
  if (r.counters.dropInternalError > 0 || r.heapGrowth >= 64 * 2 ** 20 || !r.answersAfter) {
    console.error(`fuzz vnet=${vnetLen}: FAILED`);
    failed = true;
  }
}
Deno.exit(failed ? 1 : 0);
