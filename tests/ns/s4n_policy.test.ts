// What the slirp4netns form does beyond its command line (issue 10):
//  - `-v` / `--version`: slirp4netns' three lines on stdout, SLIRP_CONFIG_VERSION_MAX: 4;
//  - the policy: open as slirp4netns (a test address and the host's own address are reached
//    with no flag), narrowed by --deny, closed again by --locked (then --enable-routing opens);
//  - --disable-dns: TCP and UDP to 10.0.2.3:53 get no answer at all (the guest times out);
//  - --outbound-addr binds the host-loopback flows too (the host sees that source);
//  - /dev/net/tun the user may not open: the error names it (EACCES) and the remedy.
//
// slirpd runs in makeHostNet's isolated host namespace; the guest is a namespace with a sleep.

import assert from "node:assert/strict";
import {
  Background,
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  run,
  Slirpd,
  slirpdCommand,
} from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3", "nsenter", "unshare", "ip");

Deno.test("s4n: -v and --version print slirp4netns' lines on stdout, exit 0", async () => {
  for (const flag of ["-v", "--version"]) {
    const r = await run([...slirpdCommand(), flag]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 3, r.stdout);
    assert.match(lines[0], /^slirpd version \d+\.\d+\.\d+/);
    assert.match(lines[1], /^commit: \S+$/);
    assert.equal(lines[2], "SLIRP_CONFIG_VERSION_MAX: 4");
  }
});

/** slirpd in the host namespace, slirp4netns form, for the guest netns at `path`. */
async function s4n(net: HostNet, args: string[], path: string): Promise<Slirpd> {
  const s = new Slirpd([...net.host.prefix(), ...slirpdCommand(), ...args, path, "tap0"]);
  try {
    await s.ready();
  } catch (e) {
    await s.stop("SIGKILL");
    throw e;
  }
  return s;
}

Deno.test({
  name: "s4n: open policy by default; --deny narrows it; --locked closes it",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("s4npol");
    const py = await fwdPeer();
    await using remote = net.remote.spawn(["python3", py, "serve"]);
    await remote.waitFor((b) => b.stdout.includes("ready"), 15_000, "remote server");
    const tcp = async (host: string) => {
      const r = await guest.exec(["python3", py, "tcp", host, "7"], { timeoutMs: 20_000 });
      return r.code === 0 ? r.stdout.trim() : "failed";
    };
    const cases: [string[], string][] = [
      [[], `OK FROM ${HostNet.HOST4}`],
      [["--deny", `tcp://${HostNet.REMOTE4}:7`], "failed"],
      [["--locked"], "failed"],
      [["--locked", "--allow", `tcp://${HostNet.REMOTE4}:7`], `OK FROM ${HostNet.HOST4}`],
    ];
    for (const [flags, want] of cases) {
      await using s = await s4n(net, ["-c", ...flags], guest.path);
      assert.equal(await tcp(HostNet.REMOTE4), want, `${flags.join(" ")}: ${s.stderr}`);
      assert.equal((await s.stop()).code, 0);
    }
  },
});

const DNS_PROBE = String.raw`
import socket, sys
out = []
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.connect(("10.0.2.3", 53))
try:
    u.send(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")
    u.recv(512)
    out.append("udp answered")
except socket.timeout:
    out.append("udp timeout")
except OSError as e:
    out.append("udp error " + str(e.errno))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.settimeout(2)
try:
    t.connect(("10.0.2.3", 53))
    out.append("tcp connected")
except socket.timeout:
    out.append("tcp timeout")
except OSError as e:
    out.append("tcp error " + str(e.errno))
print(", ".join(out))
`;

Deno.test({
  name: "s4n: --disable-dns: TCP and UDP to 10.0.2.3:53 are dropped silently (no RST)",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("s4ndns");
    await using s = await s4n(net, ["-c", "--disable-dns"], guest.path);
    const r = await guest.exec(["python3", "-c", DNS_PROBE], { timeoutMs: 20_000 });
    assert.equal(r.stdout.trim(), "udp timeout, tcp timeout", r.stderr + s.stderr);
    assert.equal((await s.stop()).code, 0);
  },
});

const LOOPBACK_SERVER = String.raw`
import socket, threading
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 7))
t.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 7))
def tcp():
    while True:
        c, a = t.accept()
        c.sendall(("FROM %s\n" % a[0]).encode())
        c.close()
def udp():
    while True:
        d, a = u.recvfrom(2048)
        u.sendto(("FROM %s" % a[0]).encode(), a)
for f in (tcp, udp):
    threading.Thread(target=f, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

const LOOPBACK_PROBE = String.raw`
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(10)
s.connect(("10.0.2.2", 7))
if kind == socket.SOCK_DGRAM:
    s.send(b"x")
print(s.recv(100).decode().strip())
`;

Deno.test({
  name: "s4n: --outbound-addr is the source of host-loopback flows (10.0.2.2), TCP and UDP",
  ignore: SKIP !== null,
  fn: async () => {
    await using net = await makeHostNet();
    await using guest = await makeNetns("s4nobl");
    const line = await net.host.must(["ip", "-o", "-4", "addr", "show", "to", "192.0.2.1/32"]);
    await net.host.must(["ip", "addr", "add", "192.0.2.11/24", "dev", line.trim().split(/\s+/)[1]]);
    // On 127.0.0.1:7, TCP and UDP, saying the peer address they saw (bound to 127.0.0.1: a
    // wildcard UDP socket would answer from another source than the one slirpd connected to).
    await using srv = net.host.spawn(["python3", "-c", LOOPBACK_SERVER]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "host loopback server");
    await using s = await s4n(net, ["-c", "--outbound-addr", "192.0.2.11"], guest.path);
    for (const proto of ["tcp", "udp"]) {
      const r = await guest.exec(["python3", "-c", LOOPBACK_PROBE, proto], { timeoutMs: 20_000 });
      assert.equal(r.stdout.trim(), "FROM 192.0.2.11", `${proto}: ${r.stderr}${s.stderr}`);
    }
    assert.equal((await s.stop()).code, 0);
  },
});

// /dev/net/tun as many machines have it (0600, owned by someone the user namespaces do not map),
// in a private mount namespace. Two ways to get there:
//  - podman: slirpd inside `unshare -Ur`, as rootless podman runs slirp4netns (its helper enters
//    the netns only);
//  - user: an unprivileged user (65534) runs slirpd for its `unshare -Urn` namespace (the helper
//    enters the owner user namespace too; this is where slirpd used to say only "Child process
//    has already terminated"). That user gets its own copy of deno and the sources.
const REPO = new URL("../..", import.meta.url).pathname;
const TUN_SCRIPT = String.raw`
set -eu
d=$(mktemp -d /tmp/sdt-tun.XXXXXX)
mount -t tmpfs -o mode=0755 tmpfs "$d"
mknod -m 0600 "$d/tun" c 10 200
chown 12345:12345 "$d/tun"
mount --bind "$d/tun" /dev/net/tun
export D="$d"
if [ "$MODE" = podman ]; then
  exec unshare -Ur bash -c '
    unshare -n sleep 60 </dev/null >/dev/null 2>&1 &
    g=$!
    for i in $(seq 200); do
      [ "$(readlink /proc/$g/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
      sleep 0.02
    done
    eval "$SLIRPD" -c --netns-type=path /proc/$g/ns/net tap0 && echo rc=0 || echo "rc=$?"
    kill $g'
fi
cp "$DENO" "$d/deno"
mkdir "$d/src" "$d/deno-dir"
cp -r "$REPO"/*.ts "$REPO"/deno.json "$REPO"/daemon "$REPO"/ffi "$REPO"/stack "$REPO"/firewall "$d/src/"
chown -R 65534:65534 "$d/deno-dir"
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all bash -c '
  unshare -Urn sleep 60 </dev/null >/dev/null 2>&1 &
  g=$!
  for i in $(seq 200); do
    [ "$(readlink /proc/$g/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.02
  done
  DENO_DIR="$D/deno-dir" HOME="$D/deno-dir" "$D/deno" run --allow-all "$D/src/main.ts" \
    --netns /proc/$g/ns/net --configure && echo rc=0 || echo "rc=$?"
  kill $g'
`;

for (const mode of ["podman", "user"]) {
  Deno.test({
    name: `s4n: /dev/net/tun not openable (0600): the error names EACCES and the remedy (${mode})`,
    ignore: SKIP !== null || (mode === "user" && Deno.env.get("SLIRPD_BIN") !== undefined),
    fn: async () => {
      const quote = (args: string[]) => args.map((a) => `'${a}'`).join(" ");
      await using sh = new Background(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", TUN_SCRIPT],
        { SLIRPD: quote(slirpdCommand()), MODE: mode, DENO: Deno.execPath(), REPO },
      );
      try {
        const timer = setTimeout(() => sh.child.kill("SIGKILL"), 60_000);
        await sh.done;
        clearTimeout(timer);
        assert.match(sh.stdout, /rc=1/, sh.stderr);
        const lines = sh.stderr.trim().split("\n").filter((l) => l.startsWith("slirpd:"));
        assert.equal(lines.length, 1, sh.stderr);
        assert.match(
          lines[0],
          /^slirpd: --netns \/proc\/\d+\/ns\/net: open \/dev\/net\/tun in the namespace: EACCES \(.*chmod 0666 \/dev\/net\/tun/,
        );
      } finally {
        // The mount point was made in the real /tmp; its tmpfs died with the mount namespace.
        for (const e of Deno.readDirSync("/tmp")) {
          if (e.name.startsWith("sdt-tun.")) {
            await Deno.remove(`/tmp/${e.name}`, { recursive: true });
          }
        }
      }
    },
  });
}

Deno.test("s4n: --help names what podman and rootlesskit look for before they start slirp4netns", async () => {
  // podman 4.3 and rootlesskit 1.1 run `BIN --help` and grep it; rootlesskit refuses a binary
  // whose help lacks --netns-type.
  const r = await run([...slirpdCommand(), "--help"]);
  assert.equal(r.code, 0);
  for (
    const s of [
      "--netns-type",
      "--disable-host-loopback",
      "--mtu",
      "--enable-sandbox",
      "--enable-seccomp",
      "--cidr",
      "--outbound-addr",
      "--enable-ipv6",
      "--api-socket",
    ]
  ) assert.ok(r.stdout.includes(s), s);
});

Deno.test("s4n: README documents IPv6 under -c (static fd00::100, via fd00::2) against slirp4netns'", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const flat = readme.replace(/\s+/g, " ");
  assert.match(flat, /under `-c` the guest's IPv6 address is static \(fd00::100\/64/);
  assert.match(flat, /default route via fd00::2, where slirp4netns lets the kernel take a SLAAC/);
  assert.match(flat, /routes via fe80::2/);
});
