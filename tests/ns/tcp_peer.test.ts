// The Python TCP peer used by the routing tests is valid Python.

import { peerScript } from "../support/tcp_peer.ts";
import { needs, skip } from "../support/harness.ts";

Deno.test("tcp peer script: is valid Python", {
  ignore: skip(needs("python3"), "tcp peer script"),
}, async () => {
  const p = await peerScript();
  const r = await new Deno.Command("python3", { args: ["-m", "py_compile", p] }).output();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
});
