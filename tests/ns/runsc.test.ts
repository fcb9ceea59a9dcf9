// gVisor: scripts/runsc/main.ts runs a runsc sandbox (ptrace platform, --network=sandbox) in a network
// namespace slirpd serves; gVisor's own netstack talks Ethernet over slirpd's tap. The sandbox
// pings slirpd's gateway, fetches a service in the isolated host namespace, and moves 4 MiB each
// way. The script owns all setup and cleanup; this test checks what it reports, that the
// container really ran under gVisor, and that it left no runsc state or sandbox behind.

import assert from "node:assert/strict";
import { needs, run, skip } from "../support/harness.ts";

const SCRIPT = new URL("../../scripts/runsc/main.ts", import.meta.url).pathname;

const reason = Deno.uid() !== 0
  ? "skipped: needs root"
  : needs("runsc", "busybox", "unshare", "nsenter", "ldd");

Deno.test({
  name:
    "runsc: a gVisor sandbox in a slirpd-served netns pings the gateway and fetches a host service",
  ignore: skip(reason, "runsc: gVisor sandbox through slirpd"),
  async fn() {
    const r = await run([Deno.execPath(), "run", "--allow-all", SCRIPT], { timeoutMs: 150_000 });
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    // The fetch went through gVisor's netstack and slirpd to the host namespace's service.
    assert.match(r.stdout, /hello from the host service, you came from busybox-wget-in-gvisor/);
    assert.match(r.stdout, /ping 10\.0\.2\.2 from gVisor: ok/, out);
    assert.match(r.stdout, /bulk 4194304 bytes each way: ok/, out);
    // Under gVisor uname reports gVisor's kernel, not the machine's.
    const kernel = /^kernel: Linux (\S+)/m.exec(r.stdout);
    assert.ok(kernel, out);
    assert.notEqual(kernel[1], Deno.osRelease(), "the container did not run under gVisor");
    // runsc took the tap's addresses into the sandbox (--network=sandbox, not host networking).
    assert.match(r.stdout, /^\s+inet 10\.0\.2\.100\/24/m, out);
    // Nothing left: the bundle/--root directory is gone and no sandbox process remains.
    const tmp = /bundle and --root in (\S+?)\)/.exec(r.stdout);
    assert.ok(tmp, out);
    await assert.rejects(Deno.stat(tmp[1]), Deno.errors.NotFound);
    const ps = await run(["ps", "-eo", "args"]);
    assert.equal(ps.stdout.includes(tmp[1]), false, `runsc processes remain:\n${ps.stdout}`);
  },
});
