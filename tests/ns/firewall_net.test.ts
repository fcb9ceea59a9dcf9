// The firewall end to end: slirpd in an isolated host namespace, a guest's kernel TCP connecting
// through it, real servers behind. "blocked" is told apart from "refused by the server" by the
// server listening (a block never reaches connect()) and by slirpd's block log line (stderr).
//
//   host ns:   192.0.2.1/24, 2001:db8::1/64 (veth), route 198.51.100.0/24 and 2001:db8:1::/48
//              via the remote; echo servers on :7 and on 127.0.0.1:8080/8081
//   remote ns: 192.0.2.2, 2001:db8::2 and, on lo, 198.51.100.1 and 2001:db8:1::1 (a
//              destination that is *not* on the host: reached through a gateway route);
//              servers on :7 and :9
//
// UDP and ICMP go through the same policy function; their integration waits for those engines
// (the unit matrix in firewall_decide.test.ts covers them).

import assert from "node:assert/strict";
import {
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";

const SKIP = needs("python3", "sysctl");

const PY = String.raw`
import socket, sys, threading, time

def serve(name, specs):
    for spec in specs:
        host, port = spec.split("/")
        fam = socket.AF_INET6 if host == "::" else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((host, int(port)))
        s.listen(64)
        def loop(s=s, tag=name + " " + port):
            while True:
                c, _ = s.accept()
                try:
                    c.sendall(("hello " + tag + "\n").encode())
                finally:
                    c.close()
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)

def probe(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        print("open " + s.recv(100).decode().strip())
    except ConnectionRefusedError:
        print("refused")
    except OSError as e:
        print("error " + repr(e))

if sys.argv[1] == "serve":
    serve(sys.argv[2], sys.argv[3:])
else:
    probe(sys.argv[2], sys.argv[3])
`;

interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
  /** "open hello NAME PORT" (NAME: host or remote), "refused" or "error ..." from the guest. */
  probe(host: string, port: number): Promise<string>;
}

async function makeWorld(args: string[], guestSetup: string[][] = []): Promise<World> {
  const py = await Deno.makeTempFile({ prefix: "slirpd-fw-", suffix: ".py" });
  await Deno.writeTextFile(py, PY);
  const undo: AsyncDisposable[] = [];
  const dispose = async () => {
    for (const d of undo.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
    await Deno.remove(py).catch(() => {});
  };
  try {
    const net = await makeHostNet();
    undo.push(net);
    await net.remote.must(["ip", "addr", "add", "198.51.100.1/32", "dev", "lo"]);
    await net.remote.must(["ip", "addr", "add", "2001:db8:1::1/128", "dev", "lo"]);
    await net.host.must(["ip", "route", "add", "198.51.100.0/24", "via", HostNet.REMOTE4]);
    await net.host.must(["ip", "-6", "route", "add", "2001:db8:1::/48", "via", HostNet.REMOTE6]);
    const remote = net.remote.spawn(["python3", py, "serve", "remote", "::/7", "::/9"]);
    undo.push(remote);
    const local = net.host.spawn([
      "python3",
      py,
      "serve",
      "host",
      "::/7",
      "127.0.0.1/8080",
      "127.0.0.1/8081",
    ]);
    undo.push(local);
    await remote.waitFor((b) => b.stdout.includes("ready"), 10_000, "remote servers");
    await local.waitFor((b) => b.stdout.includes("ready"), 10_000, "host servers");
    const guest = await makeNetns("fwguest");
    undo.push(guest);
    const slirpd = await startSlirpd({ guest, hostNs: net.host, args: ["--configure", ...args] });
    undo.push(slirpd);
    for (const cmd of guestSetup) await guest.must(cmd);
    return {
      net,
      guest,
      slirpd,
      async probe(host, port) {
        const r = await guest.exec(["python3", py, "probe", host, String(port)], {
          timeoutMs: 15_000,
        });
        return r.stdout.trim() || `no output: ${r.stderr.trim()}`;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Each [address, port, who answers: the "host" or "remote" server, or "blocked"]. */
async function expect(
  w: World,
  cases: [string, number, "host" | "remote" | "blocked"][],
): Promise<void> {
  for (const [host, port, want] of cases) {
    const got = await w.probe(host, port);
    const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    if (want !== "blocked") {
      assert.equal(got, `open hello ${want} ${port}`, `${where} should be open`);
    } else {
      assert.equal(got, "refused", `${where} should be blocked`);
      await w.slirpd.waitFor(
        (b) => b.stderr.includes(`tcp://${where} blocked: `),
        3_000,
        `the block line for ${where}`,
      );
    }
  }
}

Deno.test({
  name: "firewall net: --allow of one port opens exactly that port",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--allow=tcp://192.0.2.2:7"]);
    await expect(w, [
      ["192.0.2.2", 7, "remote"],
      ["192.0.2.2", 9, "blocked"], // a server listens there: refused only by the firewall
      ["2001:db8::2", 7, "blocked"],
      ["198.51.100.1", 7, "blocked"],
      ["192.0.2.1", 7, "blocked"],
    ]);
    assert.match(w.slirpd.stderr, /tcp:\/\/192\.0\.2\.2:9 blocked: no --allow rule/);
    // Block lines go to stderr: stdout keeps only slirpnetstack's connection lines.
    assert.ok(!w.slirpd.stdout.includes("blocked"), w.slirpd.stdout);
  },
});

Deno.test({
  name: "firewall net: --deny beats --enable-routing and --allow",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld([
      "--enable-routing",
      "--deny=tcp://198.51.100.1:7,tcp://[2001:db8:1::]/48:9",
      "--allow=198.51.100.1:7",
    ]);
    await expect(w, [
      ["198.51.100.1", 7, "blocked"],
      ["198.51.100.1", 9, "remote"],
      ["2001:db8:1::1", 7, "remote"],
      ["2001:db8:1::1", 9, "blocked"],
      ["192.0.2.2", 7, "blocked"], // on the host's connected prefix: needs --enable-host
    ]);
    assert.match(w.slirpd.stderr, /tcp:\/\/198\.51\.100\.1:7 blocked: --deny rule/);
    assert.match(
      w.slirpd.stderr,
      /tcp:\/\/192\.0\.2\.2:7 blocked: host prefix, needs --enable-host/,
    );
  },
});

Deno.test({
  name:
    "firewall net: --allow=tcp://127.0.0.1:PORT reaches the host's loopback, nothing else there",
  ignore: SKIP !== null,
  fn: async () => {
    // The guest sends to 127.0.0.1 through the tap: its own 127.0.0.1 goes away (else the
    // kernel keeps 127/8 local) and route_localnet lets 127/8 leave and come back.
    await using w = await makeWorld(["--allow=tcp://127.0.0.1:8080"], [
      ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
      ["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"],
      ["ip", "route", "add", "127.0.0.0/8", "via", "10.0.2.2", "dev", "tun0"],
    ]);
    assert.equal(await w.probe("127.0.0.1", 8080), "open hello host 8080");
    await expect(w, [["127.0.0.1", 8081, "blocked"]]); // the sanity list; a server listens
    assert.match(w.slirpd.stderr, /tcp:\/\/127\.0\.0\.1:8081 blocked: sanity block list/);
  },
});

Deno.test({
  name:
    "firewall net: --enable-host opens host prefixes only; an address added later is host at once",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld(["--enable-host"]);
    await expect(w, [
      ["192.0.2.1", 7, "host"], // the host's address
      ["2001:db8::1", 7, "host"],
      ["192.0.2.2", 7, "remote"], // 192.0.2.0/24 is a connected route of the host
      ["2001:db8::2", 9, "remote"],
      ["198.51.100.1", 7, "blocked"], // behind a gateway: routing, not host
      ["2001:db8:1::1", 7, "blocked"],
      ["203.0.113.9", 7, "blocked"],
    ]);
    assert.match(
      w.slirpd.stderr,
      /198\.51\.100\.1:7 blocked: not on this host, needs --enable-routing/,
    );
    // Now 203.0.113.9 becomes an address of the host: the netlink event makes it "host"
    // without waiting for the 30 s rescan (the server on the host ns listens on ::7).
    const t0 = performance.now();
    await w.net.host.must(["ip", "addr", "add", "203.0.113.9/32", "dev", "lo"]);
    let got = "";
    for (let i = 0; i < 40; i++) {
      got = await w.probe("203.0.113.9", 7);
      if (got.startsWith("open")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ms = performance.now() - t0;
    assert.equal(got, "open hello host 7", `203.0.113.9:7 after the address was added`);
    assert.ok(ms < 10_000, `took ${ms} ms`);
    console.log(`new host address usable after ${ms.toFixed(0)} ms`);
  },
});
