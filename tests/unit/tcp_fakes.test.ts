// The TCP fakes behave like the kernel where the engine relies on it.

import assert from "node:assert/strict";
import { FakeSocket } from "../support/tcp_fakes.ts";

Deno.test("tcp fakes: FakeSocket keeps peek offset across discard like the kernel", () => {
  const s = new FakeSocket();
  s.hostSends([1, 2, 3, 4, 5]);
  const b = new Uint8Array(8);
  assert.equal(s.peek(b, 0, 2), 2);
  assert.equal(s.peek(b, 2, 8), 3);
  assert.deepEqual(Array.from(b.subarray(0, 5)), [1, 2, 3, 4, 5]);
  assert.equal(s.discard(2), 2);
  assert.equal(s.peekOff, 3);
  assert.equal(s.peek(b, 0, 8), -11);
});
