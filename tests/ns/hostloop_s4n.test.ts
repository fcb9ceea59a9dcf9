// The host loopback, end to end, in both command-line forms. slirpd runs in an isolated "host"
// namespace whose loopback has a TCP and a UDP echo server (127.0.0.1 and ::1); the guest is a
// namespace with a `sleep` in it, named by PID as slirp4netns takes it.
//
//  - slirp4netns form (`slirpd -c --mtu 1500 PID tun0`): 10.0.2.2 and fd00::2 are the host's
//    127.0.0.1 and ::1 on every port, TCP and UDP; replies come from the gateway address, and a
//    closed port is refused as it would be on the host;
//  - with --disable-host-loopback: connect() and a UDP exchange to the gateway fail with
//    ENETUNREACH (ICMP network unreachable, as slirp4netns does), while ping still works;
//  - slirpnetstack form (`--netns`): the gateway is not the host: TCP gets RST (the sanity list
//    blocks the guest network), UDP gets nothing.

import assert from "node:assert/strict";
import {
  makeHostNet,
  makeNetns,
  needs,
  type Netns,
  Slirpd,
  slirpdCommand,
  startSlirpd,
} from "../support/harness.ts";

const SKIP = needs("python3", "ping");

const PY = String.raw`
import errno, socket, sys, threading, time

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def serve(specs):
    for spec in specs:
        proto, host, port = spec.split("/")
        if proto == "tcp":
            s = socket.socket(fam(host), socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port)))
            s.listen(16)
            def loop(s=s, tag=host + " " + port):
                while True:
                    c, _ = s.accept()
                    try:
                        c.sendall(("hello tcp " + tag + "\n").encode())
                    finally:
                        c.close()
        else:
            s = socket.socket(fam(host), socket.SOCK_DGRAM)
            s.bind((host, int(port)))
            def loop(s=s, tag=host + " " + port):
                while True:
                    d, peer = s.recvfrom(2048)
                    s.sendto(("echo " + tag + " " + d.decode()).encode(), peer)
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)

def err(e):
    return "error " + errno.errorcode.get(e.errno, str(e.errno))

def probe(spec):
    proto, host, port, wait = spec.split("/")
    f = fam(host)
    try:
        if proto == "tcp":
            s = socket.socket(f, socket.SOCK_STREAM)
            s.settimeout(float(wait))
            s.connect((host, int(port)))
            return "open " + s.recv(100).decode().strip()
        s = socket.socket(f, socket.SOCK_DGRAM)
        # ICMP errors (also the "soft" network unreachable) are reported on the socket.
        if f == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
        else:
            s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR
        s.settimeout(float(wait))
        s.connect((host, int(port)))
        s.send(b"ping")
        d, peer = s.recvfrom(2048)
        return "reply " + d.decode() + " from " + peer[0] + " " + str(peer[1])
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return err(e)

if sys.argv[1] == "serve":
    serve(sys.argv[2:])
else:
    for spec in sys.argv[2:]:
        print(probe(spec), flush=True)
`;

interface World extends AsyncDisposable {
  guest: Netns;
  slirpd: Slirpd;
  /** One line per spec "tcp|udp/HOST/PORT/TIMEOUT_S", in order. */
  probe(...specs: string[]): Promise<string[]>;
}

/** `form`: the slirp4netns command line (PID TAPNAME) or slirpnetstack's (--netns). */
async function makeWorld(form: "s4n" | "sns", args: string[]): Promise<World> {
  const py = await Deno.makeTempFile({ prefix: "slirpd-hostloop-", suffix: ".py" });
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
    const servers = net.host.spawn([
      "python3",
      py,
      "serve",
      "tcp/127.0.0.1/8080",
      "udp/127.0.0.1/5353",
      "tcp/::1/8080",
      "udp/::1/5353",
    ]);
    undo.push(servers);
    const guest = await makeNetns("hlguest");
    undo.push(guest);
    let slirpd: Slirpd;
    if (form === "s4n") {
      const holder = guest.spawn(["sleep", "60"]);
      undo.push(holder);
      // nsenter execs sleep: the PID is the guest's process, as slirp4netns users pass it.
      slirpd = new Slirpd([
        ...net.host.prefix(),
        ...slirpdCommand(),
        ...args,
        String(holder.pid),
        "tun0",
      ]);
      undo.push(slirpd);
      await slirpd.ready();
    } else {
      slirpd = await startSlirpd({ guest, hostNs: net.host, args });
      undo.push(slirpd);
    }
    await servers.waitFor((b) => b.stdout.includes("ready"), 10_000, "host loopback servers");
    return {
      guest,
      slirpd,
      async probe(...specs) {
        const r = await guest.exec(["python3", py, "probe", ...specs], { timeoutMs: 20_000 });
        const lines = r.stdout.trim().split("\n");
        assert.equal(lines.length, specs.length, `probe output: ${r.stdout}${r.stderr}`);
        return lines;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

Deno.test({
  name: "host loopback: slirp4netns form reaches the host's 127.0.0.1 and ::1 via the gateway",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld("s4n", ["--configure", "--mtu", "1500"]);
    const got = await w.probe(
      "tcp/10.0.2.2/8080/5",
      "udp/10.0.2.2/5353/5",
      "tcp/fd00::2/8080/5",
      "udp/fd00::2/5353/5",
      "tcp/10.0.2.2/8081/5", // nothing listens on the host: refused, as on the host
      "udp/10.0.2.2/5354/5", // port unreachable relayed: ECONNREFUSED on the guest socket
    );
    assert.deepEqual(got, [
      "open hello tcp 127.0.0.1 8080",
      // The guest hears from the address and port it used, not from the host's loopback.
      "reply echo 127.0.0.1 5353 ping from 10.0.2.2 5353",
      "open hello tcp ::1 8080",
      "reply echo ::1 5353 ping from fd00::2 5353",
      "error ECONNREFUSED",
      "error ECONNREFUSED",
    ]);
  },
});

Deno.test({
  name: "host loopback: --disable-host-loopback → ENETUNREACH for TCP and UDP, ping still works",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld("s4n", ["--configure", "--disable-host-loopback"]);
    const got = await w.probe(
      "tcp/10.0.2.2/8080/5",
      "tcp/fd00::2/8080/5",
      "udp/10.0.2.2/5353/5",
      "udp/fd00::2/5353/5",
    );
    assert.deepEqual(got, [
      "error ENETUNREACH",
      "error ENETUNREACH",
      "error ENETUNREACH",
      "error ENETUNREACH",
    ]);
    for (const gw of ["10.0.2.2", "fd00::2"]) {
      const r = await w.guest.exec(["ping", "-c1", "-W2", gw]);
      assert.equal(r.code, 0, `ping ${gw}: ${r.stdout}${r.stderr}`);
    }
  },
});

Deno.test({
  name: "host loopback: slirpnetstack form: the gateway is not the host (RST, UDP dropped)",
  ignore: SKIP !== null,
  fn: async () => {
    await using w = await makeWorld("sns", ["--configure"]);
    const got = await w.probe("tcp/10.0.2.2/8080/5", "tcp/fd00::2/8080/5", "udp/10.0.2.2/5353/1");
    assert.deepEqual(got, ["error ECONNREFUSED", "error ECONNREFUSED", "timeout"]);
    assert.match(w.slirpd.stderr, /tcp:\/\/10\.0\.2\.2:8080 blocked: sanity block list/);
  },
});
