// Malformed input: hundreds of thousands of random and mutated frames go through the frame
// handler. Nothing may throw out of it, no frame may hit an internal error, memory must not
// grow without bound, and the drop counters must say what was dropped.
//
// Seeds are real kernel frames (tests/fixtures/frames.ts). Mutations: truncation, bit flips,
// length fields set to random values, random option bytes, random vnet headers, pure noise.
// The generator is seeded, so a failure names a reproducible case. The seeds are re-addressed
// from the guest's own addresses to slirpd's, so they pass the source check and reach the
// transports (bad sources are still made by the mutations).

import assert from "node:assert/strict";
import { fuzzStack } from "../support/fuzz.ts";

for (const vnetLen of [10, 0] as const) {
  Deno.test(`fuzz: 120k mutated frames (vnet header ${vnetLen}) never break the stack`, () => {
    const N = 120_000;
    const { counters: c, written, heapGrowth, answersAfter } = fuzzStack(
      N,
      vnetLen,
      0x5eed + vnetLen,
    );
    assert.deepEqual(c.framesIn, N + 1);
    assert.deepEqual(c.dropInternalError, 0, "a frame hit an internal error");
    // Every reason of dropping is exercised and counted.
    assert.ok(c.dropMalformedLink + c.dropNotForUs + c.dropUnknownEthertype > 0);
    assert.ok(c.dropMalformedIp > 0, "malformed IP counted");
    assert.ok(c.dropBadIpChecksum > 0, "bad IPv4 header checksums counted");
    assert.ok(c.dropBadL4Checksum > 0, "bad L4 checksums counted");
    assert.ok(c.dropMalformedL4 > 0 || c.dropMalformedArp > 0, "malformed L4/ARP counted");
    assert.ok(
      c.drops() > N / 4,
      `most mutated frames are dropped: ${JSON.stringify(c.snapshot())}`,
    );
    // The seeds reach the transports (a source check or a retarget gone wrong would stop
    // them at the IP layer and leave the rest of the stack unfuzzed).
    assert.ok(c.echoReplies > 0 && c.dropPolicy > 0 && c.reasmDone > 0, "seeds reach L4");
    // Answers still go out (the unmodified seeds: ARP, NS, echo), also after the run.
    assert.ok(written > 0 && answersAfter, "the stack still answered well-formed frames");
    // Nothing grows without bound: heap growth stays small after 120k frames.
    assert.ok(heapGrowth < 64 * 1024 * 1024, `heap grew by ${heapGrowth} bytes`);
    console.log(`fuzz vnet=${vnetLen}:`, JSON.stringify(c.snapshot()));
  });
}
