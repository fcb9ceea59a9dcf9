// slirpnetstack's forward kinds and target syntax (issue 11): -L udprpc:// (one answer ends the
// flow), -L udpspp:// (Cloudflare's 38-byte Simple Proxy Protocol header, both ways), SRV
// targets in -R (name@srv-PORT and [name@srv-HOST:PORT], re-resolved with --dns-ttl 0), an SRV
// server that does not answer (exit 246), and a PROXY header error that says what was wrong.
//
// slirpd runs in the test's namespace: its host side is the test's loopback, where the test
// holds the listeners, the mock DNS server and the UDP clients itself.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { makeNetns, needs, type Netns, startSlirpd } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";
import { mockDns, type Zone } from "../support/srv_dns.ts";

const SKIP = needs("python3");

/** A UDP client in the test process: send, await one answer (bounded). */
async function udpClient() {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  const queue: Uint8Array[] = [];
  let wake: (() => void) | null = null;
  sock.on("message", (m: Uint8Array) => {
    queue.push(new Uint8Array(m));
    wake?.();
  });
  return {
    async ask(port: number, data: Uint8Array, timeoutMs = 5_000): Promise<Uint8Array | null> {
      sock.send(data, port, "127.0.0.1");
      const end = Date.now() + timeoutMs;
      while (queue.length === 0 && Date.now() < end) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
      return queue.shift() ?? null;
    },
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function sppHeader(magic = 0x56ec): Uint8Array {
  const h = new Uint8Array(38);
  h[0] = magic >> 8, h[1] = magic & 255;
  h.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4], 2); // client ::ffff:1.2.3.4
  h.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 5, 6, 7, 8], 18); // proxy ::ffff:5.6.7.8
  h.set([0x04, 0x57, 0x00, 0x07], 34); // client port 1111, proxy port 7
  return h;
}

const cat = (...p: Uint8Array[]) => {
  const out = new Uint8Array(p.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of p) out.set(x, o), o += x.length;
  return out;
};

async function guestServers(guest: Netns) {
  const srv = guest.spawn(["python3", await fwdPeer(), "serve"]);
  await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
  return srv;
}

Deno.test({
  name: "fwd -L udprpc:// ends each flow after its answer; udpspp:// carries the SPP header",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("rpc");
    await using _srv = await guestServers(guest);
    await using s = await startSlirpd({
      guest,
      args: [
        "--configure",
        "-L",
        "udprpc://127.0.0.1:0:10.0.2.100:7",
        "-L",
        "udpspp://127.0.0.1:0:10.0.2.100:0", // target port 0: the SPP header's proxy port (7)
        "-L",
        "tcppp://127.0.0.1:0:10.0.2.100:7",
      ],
    });
    const ports = [...s.stdout.matchAll(/Local (?:PP )?listen (udp|tcp):\/\/127\.0\.0\.1:(\d+)/g)]
      .map((m) => Number(m[2]));
    assert.equal(ports.length, 3, s.stdout);
    const [rpcPort, sppPort, ppPort] = ports;
    assert.match(s.stdout, new RegExp(`Local PP listen udp://127\\.0\\.0\\.1:${sppPort}\\n`));

    // udprpc: three requests from one client socket, three answers, three flows opened and done.
    const c = await udpClient();
    try {
      for (const q of ["one", "two", "three"]) {
        const a = await c.ask(rpcPort, enc(q));
        assert.ok(a !== null, `no answer to ${q}`);
        // (127.0.0.1 is on the sanity list: the guest sees the gateway instead)
        assert.equal(dec(a), `FROM 10.0.2.2 ${q}`);
      }
      await s.waitFor(
        (b) => (b.stdout.match(/local-fwd done: .*\(replied\)/g) ?? []).length === 3,
        10_000,
        "three rpc flows done",
      );
      assert.equal(
        (s.stdout.match(new RegExp(`-127\\.0\\.0\\.1:${rpcPort}/.* local-fwd conn\\n`, "g")) ?? [])
          .length,
        3,
      );
    } finally {
      await c.close();
    }

    // udpspp: the guest sees the header's client; replies carry the first header unchanged.
    const p = await udpClient();
    try {
      const h = sppHeader();
      const a1 = await p.ask(sppPort, cat(h, enc("hello")));
      assert.ok(a1 !== null, "no SPP answer");
      assert.deepEqual(a1.subarray(0, 38), h);
      assert.equal(dec(a1.subarray(38)), "FROM 1.2.3.4 hello");
      // Later datagrams: 38 bytes stripped unchecked; the reply still gets the first header.
      const a2 = await p.ask(sppPort, cat(new Uint8Array(38), enc("again")));
      assert.ok(a2 !== null, "no answer to the second datagram");
      assert.deepEqual(a2.subarray(0, 38), h);
      assert.equal(dec(a2.subarray(38)), "FROM 1.2.3.4 again");
    } finally {
      await p.close();
    }
    const bad = await udpClient();
    try {
      assert.equal(await bad.ask(sppPort, cat(sppHeader(0x1234), enc("x")), 1_000), null);
      await s.waitFor((b) => b.stdout.includes("local-fwd PP error: spp: bad magic 0x1234"));
    } finally {
      await bad.close();
    }

    // A PROXY header that fails says why (not "bad magic" for a good magic).
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: ppPort });
    await conn.write(enc("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"));
    await s.waitFor((b) =>
      /local-fwd PP error: v1 header has 3 fields after TCP4, not 4\n/.test(b.stdout)
    );
    conn.close();
  },
});

/** A host TCP listener that counts its connections. */
function counter() {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const st = { n: 0, port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
  (async () => {
    try {
      for await (const c of l) {
        st.n++;
        c.close();
      }
    } catch { /* closed */ }
  })();
  return st;
}

async function guestConnect(guest: Netns, port: number): Promise<void> {
  const py =
    `import socket; s=socket.create_connection(("10.0.2.2",${port}),timeout=5); s.recv(1); s.close()`;
  const r = await guest.exec(["python3", "-c", py], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
}

Deno.test({
  name: "fwd -R SRV targets: name@srv-PORT, [name@srv-IP:PORT], re-resolved with -dns-ttl=0",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("srv");
    const a = counter(), b = counter();
    const zones: Record<string, Zone> = {
      "tcp.echo.server": { srv: [[1, 1, a.port, "localhost."]] },
    };
    const dns = await mockDns(zones);
    try {
      await using s = await startSlirpd({
        guest,
        args: [
          "--configure",
          "-dns-ttl=0",
          `-R=tcp://:2222:tcp.echo.server@srv-${dns.port}:0`,
          "-R",
          `tcp://:2223:[tcp.echo.server@srv-127.0.0.1:${dns.port}]:0`,
        ],
      });
      await guestConnect(guest, 2222);
      await guestConnect(guest, 2223);
      assert.equal(a.n, 2, s.stdout + s.stderr);
      // The record moves to b's port: with -dns-ttl=0 each new connection looks it up again
      // (the one that starts a lookup still uses the answer before it).
      zones["tcp.echo.server"] = { srv: [[1, 1, b.port, "localhost."]] };
      for (let i = 0; i < 5 && b.n === 0; i++) {
        await guestConnect(guest, 2222);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(b.n >= 1, `no connection reached the new SRV port (a=${a.n})`);
    } finally {
      a.close();
      b.close();
      await dns.close();
    }

    // An SRV server that does not answer: the -R target cannot be resolved, exit 246.
    const d = await startSlirpd({
      guest,
      args: ["--configure", "-R", "tcp://:2222:tcp.echo.server@srv-1:0"],
      noWait: true,
    });
    const st = await d.stop("SIGCONT", 60_000); // (just wait)
    assert.equal(st.code, 246, d.stderr);
    assert.match(d.stderr, /failed to lookup SRV "tcp\.echo\.server" on "127\.0\.0\.1:1"/);
    await d[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "fwd -R udprpc:// ends the flow once the answer reached the guest",
  ignore: SKIP !== null,
  fn: async () => {
    await using guest = await makeNetns("rrpc");
    const echo = dgram.createSocket("udp4");
    echo.on("message", (m: Uint8Array, r: { port: number; address: string }) => {
      echo.send(cat(enc("A:"), new Uint8Array(m)), r.port, r.address);
    });
    await new Promise<void>((r) => echo.bind(0, "127.0.0.1", () => r()));
    const port = (echo.address() as { port: number }).port;
    try {
      await using s = await startSlirpd({
        guest,
        args: ["--configure", "-R", `udprpc://3333:127.0.0.1:${port}`],
      });
      const py = `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for q in (b"one", b"two"):
    s.sendto(q, ("10.0.2.2", 3333)); print(s.recvfrom(100)[0].decode(), flush=True)`;
      const r = await guest.exec(["python3", "-c", py], { timeoutMs: 30_000 });
      assert.equal(r.stdout, "A:one\nA:two\n", r.stderr);
      await s.waitFor(
        (b) =>
          (b.stdout.match(/10\.0\.2\.2:3333.* remote-fwd conn done: .*\(replied\)/g) ?? [])
            .length === 2,
        10_000,
        "two flows, each done after its answer",
      );
      assert.equal((s.stdout.match(/10\.0\.2\.2:3333.* remote-fwd conn new/g) ?? []).length, 2);
    } finally {
      await new Promise<void>((r) => echo.close(() => r()));
    }
  },
});
