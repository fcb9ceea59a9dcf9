// Spliced local forwards (--forward-splice, default auto): a loopback client's connection to the
// guest is joined by splice(2) to a socket slirpd makes inside the guest netns, never through
// the tap or the TCP engine. Asserted against a real slirpd, guest servers from
// tests/support/fwd_peer.ts and clients on the host's 127.0.0.1: 64 MB each way intact
// (sha256 at both ends); half-close both ways (client shutdown → guest reads EOF and still
// answers; guest shutdown → client reads EOF and still sends); a guest that refuses → the
// client is reset promptly; remove_hostfwd closes a live spliced connection; SIGTERM with one
// live; and that the path really is spliced: the guest sees its own address as the source,
// the log says "splice", and the TCP engine's counters at exit show no connection at all.
// --forward-splice=never keeps today's path (the gateway as the source).

import assert from "node:assert/strict";
import {
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3");

// Guest side of the guest → client half-close: "BYE\n", shutdown(SHUT_WR), then read to EOF
// and report what arrived after its own shutdown.
const HALF_SERVER = String.raw`
import hashlib, socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 23))
s.listen(8)
print("ready", flush=True)
while True:
    c, a = s.accept()
    c.sendall(b"BYE\n")
    c.shutdown(socket.SHUT_WR)
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
        n += len(d)
    print("after shutdown %d %s" % (n, h.hexdigest()), flush=True)
    c.close()
`;

// Client side: read to EOF (the guest's shutdown), then send 1 MB and shut down.
const HALF_CLIENT = String.raw`
import hashlib, socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
got = b""
while True:
    d = c.recv(100)
    if not d:
        break
    got += d
assert got == b"BYE\n", got
data = bytes(range(256)) * 4096
c.sendall(data)
c.shutdown(socket.SHUT_WR)
print("OK", hashlib.sha256(data).hexdigest())
`;

// A client that reports how its connection ended (a reset may come before connect() returns).
const REFUSED_CLIENT = String.raw`
import socket, sys
try:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    c.sendall(b"x")
    print("OK closed", "eof" if not c.recv(1) else "data")
except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
    print("OK closed reset")
`;

// 40 connections one after the other (more than one batch of guest-netns sockets), 10 at once.
const MANY_CLIENT = String.raw`
import socket, sys
for round in range(4):
    conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) for _ in range(10)]
    for c in conns:
        c.sendall(b"ping")
        c.shutdown(socket.SHUT_WR)
    for c in conns:
        got = b""
        while True:
            d = c.recv(100)
            if not d:
                break
            got += d
        assert got == b"FROM 10.0.2.100\nping", got
        c.close()
print("OK 40")
`;

const MB64 = String(64 << 20);

async function py(ns: Netns, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await ns.exec(["python3", ...args], { timeoutMs });
  assert.ok(r.code === 0 && r.stdout.includes("OK"), `${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

/** Bytes the TCP engine counted, from slirpd's stop line. */
function engineStats(s: Slirpd): Record<string, number> {
  const line = s.stderr.split("\n").find((l) => l.includes("Slirpnetstack stopped:"));
  assert.ok(line, `no stop line in ${s.stderr.slice(-500)}`);
  return JSON.parse(line.slice(line.indexOf("{"))).tcp;
}

async function api(path: string, req: object): Promise<Record<string, unknown>> {
  const c = await Deno.connect({ transport: "unix", path });
  try {
    await c.write(new TextEncoder().encode(JSON.stringify(req)));
    await c.closeWrite();
    return JSON.parse(await new Response(c.readable).text());
  } finally {
    try {
      c.close();
    } catch { /* closed by the response stream */ }
  }
}

Deno.test({
  name: "fwd splice: 64 MB each way, half-close both ways, refusal, removal, SIGTERM",
  ignore: SKIP !== null,
  fn: async (t) => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    const peer = await fwdPeer();
    await using srv = guest.spawn(["python3", peer, "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    await using half = guest.spawn(["python3", "-c", HALF_SERVER]);
    await half.waitFor((b) => b.stdout.includes("ready"), 15_000, "half-close server");
    const dir = await Deno.makeTempDir({ prefix: "slirpd-splice-" });
    const sock = `${dir}/api.sock`;
    try {
      await using slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        args: [
          "--configure",
          ...["-L", "4007:10.0.2.100:7", "-L", "4009:10.0.2.100:9", "-L", "4019:10.0.2.100:19"],
          ...["-L", "4023:10.0.2.100:23", "-L", "4050:10.0.2.100:50", "--api-socket", sock],
          ...["-L", "[::1]:4006:[fd00::100]:7"],
        ],
      });
      const h = net.host;
      const doneLine = (port: number) =>
        new RegExp(`:${port}/10\\.0\\.2\\.100:\\d+-10\\.0\\.2\\.100:\\d+ local-fwd splice done`);

      await t.step("the guest sees its own address; the log says splice", async () => {
        assert.equal(await py(h, [peer, "tcp", "127.0.0.1", "4007"]), "OK FROM 10.0.2.100");
        await slirpd.waitFor((b) => doneLine(4007).test(b.stdout), 10_000, "splice done line");
        assert.equal(await py(h, [peer, "tcp", "::1", "4006"]), "OK FROM fd00::100");
      });

      await t.step("40 connections, 10 at once (guest sockets come in batches)", async () => {
        assert.equal(await py(h, ["-c", MANY_CLIENT, "4007"]), "OK 40");
      });

      await t.step("64 MB up and down, sha256 equal at both ends", async () => {
        for (const [mode, port] of [["upload", "4009"], ["download", "4019"]]) {
          const t0 = performance.now();
          await py(h, [peer, mode, "127.0.0.1", port, MB64], 180_000);
          const s = (performance.now() - t0) / 1000;
          console.log(`spliced ${mode} 64 MB: ${(64 / s).toFixed(0)} MB/s`);
        }
        await slirpd.waitFor(
          (b) => doneLine(4009).test(b.stdout) && doneLine(4019).test(b.stdout),
          10_000,
          "done lines",
        );
        assert.match(slirpd.stdout, /:4009\/\S+ local-fwd splice done: l=67108864 r=\d+/);
        assert.match(slirpd.stdout, /:4019\/\S+ local-fwd splice done: l=\d+ r=67108929/);
      });

      await t.step("half-close: client → guest (upload above) and guest → client", async () => {
        const out = await py(h, ["-c", HALF_CLIENT, "4023"]);
        const sum = out.split(" ")[1];
        await half.waitFor((b) => b.stdout.includes("after shutdown"), 10_000, "guest report");
        assert.match(half.stdout, new RegExp(`after shutdown 1048576 ${sum}`));
        await slirpd.waitFor((b) => doneLine(4023).test(b.stdout), 10_000, "splice done line");
      });

      await t.step("a guest that refuses: the client is reset promptly", async () => {
        const t0 = performance.now();
        const out = await py(h, ["-c", REFUSED_CLIENT, "4050"], 20_000);
        assert.match(out, /OK closed (reset|eof)/);
        assert.ok(performance.now() - t0 < 10_000, "took too long");
        // The line follows the client's RST (slirpd logs after aborting); its pipe is read
        // asynchronously here, so it may arrive a moment after the client's exit.
        await slirpd.waitFor(
          (b) => /:4050\/\S+ local-fwd splice done: .*ECONNREFUSED/.test(b.stdout),
          5_000,
          "refused splice's done line",
        );
      });

      await t.step("remove_hostfwd closes a live spliced connection", async () => {
        const add = await api(sock, {
          execute: "add_hostfwd",
          arguments: { proto: "tcp", host_addr: "127.0.0.1", host_port: 4077, guest_port: 7 },
        });
        const id = (add.return as { id: number }).id;
        await using hold = h.spawn(["python3", peer, "hold", "127.0.0.1", "4077", "60"]);
        await hold.waitFor((b) => b.stdout.includes("\n"), 15_000, "hold connected");
        assert.match(hold.stdout, /connected FROM 10\.0\.2\.100/);
        assert.deepEqual(await api(sock, { execute: "remove_hostfwd", arguments: { id } }), {
          return: {},
        });
        await hold.waitFor((b) => b.stdout.includes("OK closed"), 10_000, "hold closed");
        await slirpd.waitFor(
          (b) => /:4077\/\S+ local-fwd splice done: .*forward removed/.test(b.stdout),
          5_000,
          "removed splice's done line",
        );
      });

      await t.step("SIGTERM with a live spliced connection; the engine saw none", async () => {
        await using hold = h.spawn(["python3", peer, "hold", "127.0.0.1", "4007", "60"]);
        await hold.waitFor((b) => b.stdout.includes("\n"), 15_000, "hold connected");
        const st = await slirpd.stop("SIGTERM");
        assert.equal(st.code, 0, slirpd.stderr.slice(-500));
        await hold.waitFor((b) => b.stdout.includes("OK closed"), 10_000, "hold closed");
        const tcp = engineStats(slirpd);
        assert.equal(tcp.opened ?? 0, 0, JSON.stringify(tcp));
        assert.equal(tcp.segsIn ?? 0, 0, JSON.stringify(tcp));
        assert.equal(tcp.connections, 0);
      });
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "fwd splice: never keeps the tap path (the gateway); the API's splice overrides it",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    const peer = await fwdPeer();
    await using srv = guest.spawn(["python3", peer, "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    const dir = await Deno.makeTempDir({ prefix: "slirpd-splice-" });
    const sock = `${dir}/api.sock`;
    try {
      await using slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        args: [
          ...["--configure", "--forward-splice", "never", "-L", "4007:10.0.2.100:7"],
          ...["--api-socket", sock],
        ],
      });
      assert.equal(await py(net.host, [peer, "tcp", "127.0.0.1", "4007"]), "OK FROM 10.0.2.2");
      await slirpd.waitFor((b) => b.stdout.includes("local-fwd done"), 10_000, "done line");
      assert.ok(!slirpd.stdout.includes("splice"), slirpd.stdout);

      const add = (a: object) => api(sock, { execute: "add_hostfwd", arguments: a });
      const a = { proto: "tcp", host_addr: "127.0.0.1", host_port: 4078, guest_port: 7 };
      assert.deepEqual(await add({ ...a, splice: "sometimes" }), {
        error: { desc: "bad request: add_hostfwd: bad arguments.splice" },
      });
      assert.ok("return" in await add({ ...a, splice: "always" }));
      assert.equal(await py(net.host, [peer, "tcp", "127.0.0.1", "4078"]), "OK FROM 10.0.2.100");
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "fwd splice: auto keeps a network client's address; always splices it too",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("guest");
    const peer = await fwdPeer();
    await using srv = guest.spawn(["python3", peer, "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    for (const [mode, want] of [["auto", "192.0.2.2"], ["always", "10.0.2.100"]]) {
      await using slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        args: ["--configure", "--forward-splice", mode, "-L", "192.0.2.1:4007:10.0.2.100:7"],
      });
      const got = await py(net.remote, [peer, "tcp", "192.0.2.1", "4007"]);
      assert.equal(got, `OK FROM ${want}`, `${mode}: ${slirpd.stdout}`);
    }
  },
});
