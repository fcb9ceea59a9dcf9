// TCP through slirpd end to end: the guest's kernel TCP (in a guest netns behind slirpd's tap)
// talks to real sockets in an isolated "remote" namespace; slirpd runs in the isolated "host"
// namespace and connect()s for the guest. Nothing here is faked.
//
// Covered: echo over IPv4 and IPv6 with the slirpnetstack log lines; 256 MB each way with a
// hash compared at both ends (with and without the vnet header); half-close both ways;
// refused and blocked destinations; 200 concurrent connections and no state left after.

import assert from "node:assert/strict";
import {
  HostNet,
  makeHostNet,
  makeNetns,
  type Netns,
  needs,
  type Slirpd,
  startSlirpd,
} from "./harness.ts";
import { peerScript } from "./tcp_peer.test.ts";

const SKIP = needs("python3", "ss");

export interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
  py: string;
  /** Runs a peer client mode in the guest; asserts it printed OK. */
  client(args: string[], timeoutMs?: number): Promise<string>;
}

/** Host + remote namespaces, the peer servers, a guest and slirpd with routing enabled. */
export async function makeWorld(
  extraArgs: string[] = [],
  env?: Record<string, string>,
): Promise<World> {
  const py = await peerScript();
  const net = await makeHostNet();
  const stack: AsyncDisposable[] = [net];
  const dispose = async () => {
    for (const d of stack.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
  };
  try {
    const guest = await makeNetns("guest");
    stack.push(guest);
    const srv = net.remote.spawn(["python3", py, "serve"]);
    stack.push(srv);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "peer servers");
    const slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", ...extraArgs],
      env,
    });
    stack.push(slirpd);
    return {
      net,
      guest,
      slirpd,
      py,
      async client(args: string[], timeoutMs = 60_000): Promise<string> {
        const r = await guest.exec(["python3", py, ...args], { timeoutMs });
        assert.ok(
          r.code === 0 && r.stdout.includes("OK"),
          `${args.join(" ")} → exit ${r.code}\n${r.stdout}${r.stderr}\nslirpd:\n${
            slirpd.stdout.slice(-2000)
          }${slirpd.stderr.slice(-2000)}`,
        );
        return r.stdout;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Open file descriptors of a process (its sockets included). */
export async function fdCount(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident memory of a process, in bytes. */
export async function rss(pid: number): Promise<number> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = s.match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}

function count(s: string, re: RegExp): number {
  return (s.match(re) ?? []).length;
}

Deno.test({
  name: "tcp routing: echo over IPv4 and IPv6, logged like slirpnetstack",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["echo", HostNet.REMOTE4, "200000"]);
    await w.client(["echo", HostNet.REMOTE6, "200000"]);
    await w.slirpd.waitFor((b) => count(b.stdout, /Routing conn done/g) >= 2, 5000, "done lines");
    const out = w.slirpd.stdout;
    assert.match(
      out,
      /\[\+\] tcp:\/\/10\.0\.2\.100:\d+\/192\.0\.2\.1:\d+-192\.0\.2\.2:7 Routing conn new/,
    );
    assert.match(
      out,
      /\[-\] tcp:\/\/10\.0\.2\.100:\d+\/192\.0\.2\.1:\d+-192\.0\.2\.2:7 Routing conn done: l=200000 r=200000/,
    );
    assert.match(
      out,
      /\[\+\] tcp:\/\/\[fd00::100\]:\d+\/\[2001:db8::1\]:\d+-\[2001:db8::2\]:7 Routing conn new/,
    );
    assert.match(out, /\[2001:db8::2\]:7 Routing conn done: l=200000 r=200000/);
  },
});

for (const vnet of [true, false]) {
  Deno.test({
    name: `tcp routing: 256 MB each way, hashes equal at both ends (${
      vnet ? "vnet header, TSO/GSO" : "no vnet header, MTU 1500"
    })`,
    ignore: SKIP !== null,
    fn: async () => {
      await using w = await makeWorld(vnet ? [] : ["--no-vnet-hdr"]);
      const n = String(256 << 20);
      let t0 = performance.now();
      await w.client(["upload", HostNet.REMOTE4, n], 240_000);
      const up = performance.now() - t0;
      t0 = performance.now();
      await w.client(["download", HostNet.REMOTE4, n], 240_000);
      const down = performance.now() - t0;
      console.log(
        `256 MB up ${(256 / (up / 1000)).toFixed(0)} MB/s, down ${
          (256 / (down / 1000)).toFixed(0)
        } MB/s (${vnet ? "vnet" : "plain"})`,
      );
    },
  });
}

Deno.test({
  name: "tcp routing: half-close both ways carries FIN as a half-close",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["halfclose", HostNet.REMOTE4]);
    await w.client(["halfclose", HostNet.REMOTE6]);
  },
});

Deno.test({
  name: "tcp routing: refused → ECONNREFUSED; blocked destination → refused without a connect",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld();
    await w.client(["refused", HostNet.REMOTE4, "5"]);
    await w.client(["refused", HostNet.REMOTE6, "5"]);
    // The guest's own network (here the gateway address) is on the sanity block list.
    await w.client(["refused", "10.0.2.2", "7"]);
    await w.client(["refused", "fd00::2", "7"]);
    assert.match(w.slirpd.stdout, /192\.0\.2\.2:5 Routing conn error: ECONNREFUSED/);
    assert.ok(!/10\.0\.2\.2:7/.test(w.slirpd.stdout), "a blocked flow never reaches connect()");
  },
});

Deno.test({
  name: "tcp routing: 200 concurrent connections open, echo, close; nothing is left after",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--quiet"]);
    const pid = w.slirpd.pid;
    const fds0 = await fdCount(pid);
    await w.client(["many", HostNet.REMOTE4, "200"], 120_000);
    await w.client(["many", HostNet.REMOTE6, "200"], 120_000);
    // Every host socket slirpd opened is closed again (TIME-WAIT entries hold no socket).
    let fds = -1;
    for (let i = 0; i < 50; i++) {
      fds = await fdCount(pid);
      if (fds <= fds0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(fds <= fds0, `slirpd holds ${fds - fds0} more fds than before`);
    // The host namespace has no connection of slirpd's left but the kernel's TIME-WAITs.
    const ss = await w.net.host.must(["ss", "-tanH"]);
    const live = ss.split("\n").filter((l) => l.trim() && !/TIME-WAIT|LISTEN/.test(l));
    assert.deepEqual(live, [], `host sockets still open:\n${live.join("\n")}`);
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
  },
});
