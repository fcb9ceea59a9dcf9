// UDP through slirpd end to end: the guest kernel's UDP (python3 in the guest netns, MTU 1500)
// talks to a real UDP server in the isolated "remote" namespace; slirpd runs in the isolated
// "host" namespace with --enable-routing. Nothing is faked: the guest kernel fragments large
// datagrams and slirpd reassembles them, the replies are fragmented by slirpd and reassembled
// by the guest kernel, ICMP errors come from the remote kernel.
//
// Covered: echo over IPv4 and IPv6 at 1 .. 65507 bytes (65527 over IPv6) both ways; three
// back-to-back datagrams stay three; an idle flow expires and its host socket goes
// (--udp-timeout); 50k flows stay within --max-udp-flows host sockets; a stream of datagrams goes out in
// UDP_SEGMENT batches, each datagram intact; port unreachable from the host
// becomes ECONNREFUSED on the guest's connected socket; a blocked destination gets nothing.

import assert from "node:assert/strict";
import {
  eventually,
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";

const SKIP = needs("python3", "ss");

const UDP_PY = String.raw`
import os, selectors, socket, sys, time

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def serve():
    sink = [0]  # datagrams on port 9
    seen = {}  # port 11: sequence number -> length, and the bad ones
    bad = [0]
    sel = selectors.DefaultSelector()
    for port in (7, 9, 11, 13):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("::", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, port)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            while True:
                try:
                    d, a = key.fileobj.recvfrom(65535)
                except BlockingIOError:
                    break
                if key.data == 7:
                    key.fileobj.sendto(d, a)
                elif key.data == 11:
                    if d == b"report?":
                        key.fileobj.sendto(("%d %d" % (len(seen), bad[0])).encode(), a)
                        seen.clear()
                        bad[0] = 0
                    elif len(d) >= 4 and d == stream_datagram(int.from_bytes(d[:4], "big")):
                        seen[int.from_bytes(d[:4], "big")] = len(d)
                    else:
                        bad[0] += 1
                elif key.data == 13:
                    send_stream(key.fileobj, a, int(d.split()[1]))
                elif d == b"count?":
                    key.fileobj.sendto(str(sink[0]).encode(), a)
                else:
                    sink[0] += 1

def stream_datagram(i):
    # 1200 bytes, every 50th one 300 (a short one ends a batch), numbered, a fixed pattern.
    n = 300 if i % 50 == 49 else 1200
    return i.to_bytes(4, "big") + bytes((i * 7 + k) & 255 for k in range(n - 4))

def h2g_datagram(i):
    # Runs of 7 of one size (recvmmsg batches and USO frames), some cut short by a smaller one:
    # from 4 bytes to above the guest MTU (fragmented, alone).
    n = (1200, 1472, 4, 700, 1452, 3000, 333, 20000)[(i // 7) % 8]
    if i % 11 == 10:
        n = 100 + i % 500
    return i.to_bytes(4, "big") + bytes((i * 13 + k) & 255 for k in range(n - 4))

def send_stream(s, a, n):
    # In bursts of ~60 KB the socket of slirpd holds (so they queue and are read in batches).
    queued = 0
    for i in range(n):
        d = h2g_datagram(i)
        s.sendto(d, a)
        queued += len(d)
        if queued > 60000:
            time.sleep(0.01)
            queued = 0

def h2g(host, n):
    s = connected(host, 13, 1.5)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: hold the whole stream
    s.send(b"send %d" % n)
    seen, bad = set(), 0
    try:
        while True:
            d = s.recv(65535)
            i = int.from_bytes(d[:4], "big") if len(d) >= 4 else -1
            if 0 <= i < n and d == h2g_datagram(i):
                seen.add(i)
            else:
                bad += 1
    except socket.timeout:
        pass
    print("h2g %s: %d of %d intact, %d mangled" % (host, len(seen), n, bad))
    assert bad == 0 and len(seen) >= n * 0.95, (len(seen), bad)

def stream(host, n):
    # Back to back, as one burst per 200 (the server's buffer holds them), then the report.
    s = connected(host, 11)
    for i in range(n):
        s.send(stream_datagram(i))
        if i % 200 == 199:
            time.sleep(0.02)
    time.sleep(0.5)
    s.send(b"report?")
    got, bad = map(int, s.recv(100).split())
    print("stream %s: %d of %d intact, %d mangled" % (host, got, n, bad))
    assert bad == 0 and got >= n * 0.98, (got, bad)

def connected(host, port, timeout=5):
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s

def echo(host, sizes):
    s = connected(host, 7)
    for n in sizes:
        d = os.urandom(n)
        t = time.monotonic()
        s.send(d)
        r = s.recv(65535)
        ms = (time.monotonic() - t) * 1000
        assert r == d, "size %d: got %d bytes back, %s" % (n, len(r), "equal" if r == d else "different")
        print("echo %s %d bytes %.2f ms" % (host, n, ms))

def burst(host):
    s = connected(host, 7)
    sent = [b"one", b"two-two", b"three-three-three"]
    for d in sent:
        s.send(d)
    got = [s.recv(65535) for _ in sent]
    assert sorted(got) == sorted(sent), got

def refused(host, port):
    s = connected(host, port, 2)
    for _ in range(3):
        s.send(b"anyone?")
        try:
            s.recv(100)
        except ConnectionRefusedError:
            return
        except socket.timeout:
            continue
        raise AssertionError("got an answer")
    raise AssertionError("no ECONNREFUSED")

def silent(host, port):
    s = connected(host, port, 1.5)
    s.send(b"hello?")
    try:
        s.recv(100)
    except socket.timeout:
        return
    raise AssertionError("a blocked destination answered")

def count(host):
    s = connected(host, 9)
    s.send(b"count?")
    print("received", s.recv(100).decode())

def flood(host, port, n):
    for i in range(n):
        s = socket.socket(fam(host), socket.SOCK_DGRAM)
        s.bind(("", 10000 + i % 50000))  # a port of its own for each of up to 50k flows
        s.sendto(b"x", (host, port))
        s.close()
        if i % 64 == 63:
            time.sleep(0.002)  # a real guest is slower than a loop; keep the tap queue sane

mode, args = sys.argv[1], sys.argv[2:]
if mode == "serve":
    serve()
elif mode == "echo":
    echo(args[0], [int(x) for x in args[1:]])
elif mode == "burst":
    burst(args[0])
elif mode == "refused":
    refused(args[0], int(args[1]))
elif mode == "silent":
    silent(args[0], int(args[1]))
elif mode == "h2g":
    h2g(args[0], int(args[1]))
elif mode == "stream":
    stream(args[0], int(args[1]))
elif mode == "count":
    count(args[0])
elif mode == "flood":
    flood(args[0], int(args[1]), int(args[2]))
print("OK")
`;

let pyPath: string | null = null;
async function script(): Promise<string> {
  if (pyPath === null) {
    const p = await Deno.makeTempFile({ prefix: "slirpd-udp-", suffix: ".py" });
    await Deno.writeTextFile(p, UDP_PY);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(p);
      } catch { /* gone */ }
    });
    pyPath = p;
  }
  return pyPath;
}

interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
  client(args: string[], timeoutMs?: number): Promise<string>;
}

async function makeWorld(args: string[]): Promise<World> {
  const py = await script();
  const net = await makeHostNet();
  const owned: AsyncDisposable[] = [net];
  const dispose = async () => {
    for (const d of owned.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
  };
  try {
    const guest = await makeNetns("guest");
    owned.push(guest);
    const srv = net.remote.spawn(["python3", py, "serve"]);
    owned.push(srv);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "udp server");
    // A fresh veth pair resolves its first IPv6 neighbour only after ~1 s (link-local DAD);
    // do it now so the tests' timings are slirpd's.
    // (Without ping the first IPv6 test just waits for it.)
    if (needs("ping") === null) await net.host.exec(["ping", "-6", "-c1", "-W3", HostNet.REMOTE6]);
    const slirpd = await startSlirpd({ guest, hostNs: net.host, args: ["--configure", ...args] });
    owned.push(slirpd);
    return {
      net,
      guest,
      slirpd,
      async client(a: string[], timeoutMs = 30_000): Promise<string> {
        const r = await guest.exec(["python3", py, ...a], { timeoutMs });
        assert.ok(
          r.code === 0 && r.stdout.includes("OK"),
          `${a.join(" ")} → exit ${r.code}\n${r.stdout}${r.stderr}\nslirpd:\n${
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

Deno.test({
  name: "udp routing: a stream of datagrams leaves in UDP_SEGMENT batches, each datagram intact",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"]);
    const out = await w.client(["stream", HostNet.REMOTE4, "4000"], 60_000).catch(async (e) => {
      await w.slirpd.stop();
      throw new Error(`${e}\n${w.slirpd.stderr}`);
    });
    const out6 = await w.client(["stream", HostNet.REMOTE6, "4000"], 60_000);
    console.log((out + out6).split("\n").filter((l) => l.startsWith("stream")).join("\n"));
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
    const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
    // Several datagrams per sendmsg (batch.ts): far fewer sends than datagrams.
    assert.ok(stats.udp.segmentedSends > 0, `no UDP_SEGMENT send: ${JSON.stringify(stats.udp)}`);
    console.log(`${stats.udp.fromGuest} datagrams in ${stats.udp.segmentedSends} segmented sends`);
  },
});

Deno.test({
  name: "udp routing: host → guest datagrams of many sizes arrive intact through recvmmsg and USO",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"]);
    const out = await w.client(["h2g", HostNet.REMOTE4, "3000"], 60_000);
    const out6 = await w.client(["h2g", HostNet.REMOTE6, "3000"], 60_000);
    console.log((out + out6).split("\n").filter((l) => l.startsWith("h2g")).join("\n"));
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
    const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
    assert.equal(stats.udp.truncated ?? 0, 0, "a datagram was cut");
    console.log(
      `${stats.udp.toGuest} datagrams to the guest, ${stats.udp.segmentedToGuest} USO frames`,
    );
    // Runs of one size share frames where the tap takes USO (Linux 6.2+).
    const [major, minor] = Deno.osRelease().split(".").map((x) => parseInt(x));
    if (major > 6 || (major === 6 && minor >= 2)) {
      assert.ok(stats.udp.segmentedToGuest > 0, `no USO frame: ${JSON.stringify(stats.udp)}`);
    }
  },
});

/** UDP sockets in the host namespace whose peer is `peer` ("192.0.2.2:7", "[2001:db8::2]:7"). */
async function hostSockets(w: World, peer: string): Promise<number> {
  const out = await w.net.host.must(["ss", "-uanH"]);
  return out.split("\n").filter((l) => l.trim().split(/\s+/).at(-1) === peer).length;
}

Deno.test({
  name: "udp routing: echo IPv4/IPv6 from 1 to 65507 bytes both ways, datagrams stay datagrams",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"]);
    const sizes = ["1", "512", "1472", "1473", "16385", "65507"];
    const out4 = await w.client(["echo", HostNet.REMOTE4, ...sizes]);
    const out6 = await w.client(["echo", HostNet.REMOTE6, ...sizes, "65527"]);
    console.log((out4 + out6).split("\n").filter((l) => l.startsWith("echo")).join("\n"));
    await w.client(["burst", HostNet.REMOTE4]);
    await w.client(["burst", HostNet.REMOTE6]);
    const log = w.slirpd.stdout;
    assert.match(
      log,
      /\[\+\] udp:\/\/10\.0\.2\.100:\d+\/192\.0\.2\.1:\d+-192\.0\.2\.2:7 Routing conn new/,
    );
    assert.match(log, /\[\+\] udp:\/\/\[fd00::100\]:\d+\/\[2001:db8::1\]:\d+-\[2001:db8::2\]:7/);
    // Fragments were really used both ways, and nothing was dropped on the way.
    const st = await w.slirpd.stop();
    assert.equal(st.code, 0);
    const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
    assert.ok(stats.reasmDone >= 6, `guest fragments reassembled: ${JSON.stringify(stats)}`);
    assert.ok(stats.fragsOut >= 6 * 11, `replies fragmented: ${JSON.stringify(stats)}`);
    assert.equal(stats.udp.sendDrops ?? 0, 0);
    assert.equal(stats.dropReasmTimeout ?? 0, 0);
  },
});

Deno.test({
  name: "udp routing: an idle flow expires (--udp-timeout) and its host socket is closed",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host", "--udp-timeout", "1"]);
    await w.client(["echo", HostNet.REMOTE4, "100"]);
    await w.client(["echo", HostNet.REMOTE6, "100"]);
    const t0 = Date.now();
    assert.equal(await hostSockets(w, "192.0.2.2:7"), 1, "the flow's socket is open");
    assert.equal(await hostSockets(w, "[2001:db8::2]:7"), 1);
    await eventually(
      async () =>
        await hostSockets(w, "192.0.2.2:7") === 0 && await hostSockets(w, "[2001:db8::2]:7") === 0,
      5_000,
      "the idle flows' sockets to close",
    );
    const waited = Date.now() - t0;
    assert.ok(waited < 4_000, `closed ${waited} ms after the last datagram`);
    assert.match(w.slirpd.stdout, /192\.0\.2\.2:7 Routing conn done: l=100 r=100 \(idle\)/);
  },
});

/** Socket descriptors a process holds (/proc/PID/fd entries that link to "socket:[…]"). */
async function socketFds(pid: number): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(`/proc/${pid}/fd`)) {
    try {
      if ((await Deno.readLink(`/proc/${pid}/fd/${e.name}`)).startsWith("socket:")) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

Deno.test({
  name: "udp routing: 50k flows from the guest stay within --max-udp-flows host sockets",
  ignore: SKIP !== null,
  fn: async () => {
    const MAX = 64;
    const N = 50_000;
    // --quiet: 100k log lines would make slirpd, not the table, the bottleneck.
    await using w = await makeWorld([
      "--enable-routing",
      "--enable-host",
      "--quiet",
      "--max-udp-flows",
      `${MAX}`,
    ]);
    const pid = w.slirpd.pid;
    const base = await socketFds(pid);
    const t0 = performance.now();
    const flood = w.client(["flood", HostNet.REMOTE4, "9", `${N}`], 60_000);
    let most = 0;
    let done = false;
    flood.finally(() => done = true).catch(() => {});
    while (!done) {
      most = Math.max(most, await socketFds(pid));
      await new Promise((r) => setTimeout(r, 10));
    }
    await flood;
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    const after = await socketFds(pid);
    const flows = await hostSockets(w, "192.0.2.2:9");
    console.log(
      `${N} flows in ${s} s: slirpd socket fds ${base} → at most ${most} → ${after} ` +
        `(${flows} to the remote's port 9)`,
    );
    // /proc/PID/fd is read one entry at a time, so a sample is exact up to the churn during it.
    assert.ok(most - base <= MAX, `at most ${MAX} flow sockets (saw ${most - base})`);
    assert.ok(after - base <= MAX, `${after - base} flow sockets left, at most ${MAX}`);
    assert.ok(flows <= MAX && flows >= MAX / 2, `${flows} flows left, at most ${MAX}`);
    // New flows still work after the flood evicted tens of thousands.
    await w.client(["echo", HostNet.REMOTE4, "1000"]);
    await w.client(["echo", HostNet.REMOTE6, "1000"]);
    // Every datagram the guest's tap queue did not drop reached the remote (each through its
    // own host socket: the guest sent each from another port).
    const link = JSON.parse(await w.guest.must(["ip", "-s", "-j", "link", "show", "tun0"]));
    const guestDrops: number = link[0].stats64.tx.dropped;
    const got = Number((await w.client(["count", HostNet.REMOTE4])).match(/received (\d+)/)![1]);
    console.log(`the remote received ${got}; the guest's tap dropped ${guestDrops}`);
    assert.ok(got + guestDrops >= N, `${N} flows: ${got} received + ${guestDrops} dropped`);
    assert.ok(got >= N / 2, "most of them reached the remote");
  },
});

Deno.test({
  name: "udp routing: host port unreachable → ECONNREFUSED on the guest's connected socket",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-routing", "--enable-host"]);
    await w.client(["refused", HostNet.REMOTE4, "5"]);
    await w.client(["refused", HostNet.REMOTE6, "5"]);
  },
});

Deno.test({
  name: "udp routing: without --enable-routing/--enable-host a destination gets nothing",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld([]);
    await w.client(["silent", HostNet.REMOTE4, "7"]);
    await w.client(["silent", HostNet.REMOTE6, "7"]);
    assert.equal(await hostSockets(w, "192.0.2.2:7"), 0, "no host socket was opened");
    assert.ok(!/Routing conn new/.test(w.slirpd.stdout), "no flow was opened");
    await w.slirpd.stop();
    const stats = JSON.parse(w.slirpd.stderr.match(/stopped: (\{.*\})/)![1]);
    assert.ok(stats.udp.policyRefused >= 2, JSON.stringify(stats));
  },
});
