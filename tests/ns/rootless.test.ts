// Rootless: an unprivileged user makes a namespace with `unshare -Urn` and runs slirpd for it
// from the host, as with slirp4netns. The guest then pings the gateway.
//
// The test drops to uid/gid 65534 with setpriv inside a private mount namespace in which
// /dev/net/tun is a 0666 node (here it is 0600 root, as on some distributions), and gives
// that user its own copy of deno, the sources and a DENO_DIR, since the test's own may live
// under /root.

import assert from "node:assert/strict";
import { Background, needs, run, skip, slirpdCommand } from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const SKIP = needs("setpriv", "unshare", "nsenter", "ping", "python3") ??
  (Deno.uid() !== 0 ? "skipped: needs root to set up the unprivileged user" : null) ??
  (Deno.env.get("SLIRPD_BIN") ? "skipped: runs the sources, not SLIRPD_BIN" : null);

const SCRIPT = String.raw`
set -eu
d=$(mktemp -d /tmp/sdt-rootless.XXXXXX)
mount -t tmpfs -o mode=0755 tmpfs "$d"
mknod -m 0666 "$d/tun" c 10 200
mount --bind "$d/tun" /dev/net/tun
cp "$DENO" "$d/deno"
mkdir "$d/src" "$d/deno-dir"
cp -r "$REPO"/*.ts "$REPO"/deno.json "$REPO"/daemon "$REPO"/ffi "$REPO"/stack "$REPO"/firewall "$d/src/"
chown -R 65534:65534 "$d/deno-dir"
export DENO_DIR="$d/deno-dir" HOME="$d/deno-dir" D="$d"
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all bash -c '
  set -eu
  unshare -Urn sleep 120 </dev/null >/dev/null 2>&1 &
  pid=$!
  for i in $(seq 100); do
    [ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.05
  done
  echo "GUESTPID=$pid uid=$(id -u)"
  exec "$D/deno" run --allow-all "$D/src/main.ts" --netns /proc/$pid/ns/net --configure \
    --forward-splice always -L "127.0.0.1:$FWDPORT:10.0.2.100:7"
'
`;

/** A free-looking port on the test's own loopback for the rootless slirpd's -L forward. */
const FWD_PORT = 20000 + Math.floor(Math.random() * 20000);

// Guest side of the forward: answers "FROM <peer address>" and closes.
const ECHO_FROM = String.raw`
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7))
s.listen(4)
print("ready", flush=True)
c, a = s.accept()
c.sendall(("FROM %s\n" % a[0]).encode())
c.close()
`;

Deno.test({
  name: "rootless: an unprivileged user runs slirpd for its `unshare -Urn` namespace",
  ignore: skip(SKIP, "rootless"),
  fn: async () => {
    const deno = slirpdCommand()[0];
    await using sh = new Background(
      ["unshare", "-m", "--propagation", "private", "bash", "-c", SCRIPT],
      {
        DENO: deno,
        REPO,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        FWDPORT: String(FWD_PORT),
      },
    );
    await sh.waitFor((b) => b.stderr.includes("Slirpnetstack started"), 60_000, "readiness");
    const m = sh.stdout.match(/GUESTPID=(\d+) uid=(\d+)/);
    if (!m) throw new Error(`no guest pid: ${sh.stdout}`);
    assert.deepEqual(m[2], "65534", "slirpd ran as an unprivileged user");
    const guestPid = m[1];
    // slirpd kept its PID through the re-exec into the user namespace.
    assert.match(sh.stderr, new RegExp(`\\[\\+\\] #${sh.pid} Slirpnetstack started`));
    const status = await Deno.readTextFile(`/proc/${sh.pid}/status`);
    assert.match(status, /Uid:\s+65534\b/);

    const inGuest = ["nsenter", `--net=/proc/${guestPid}/ns/net`, "--"];
    for (const [v, addr] of [["-4", "10.0.2.2"], ["-6", "fd00::2"]]) {
      const r = await run([...inGuest, "ping", v, "-c", "2", "-i", "0.1", "-W", "2", addr]);
      assert.deepEqual(r.code, 0, `ping ${addr}: ${r.stdout}${r.stderr}\n${sh.stderr}`);
    }
    // A -L forward works rootless, but is never spliced: slirpd cannot make a socket in the
    // guest netns cheaply, so the connection takes the tap and the guest sees the gateway.
    assert.match(sh.stderr, /--forward-splice=always: rootless, forwards go through the tap/);
    await using echo = new Background([...inGuest, "python3", "-c", ECHO_FROM]);
    await echo.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest echo server");
    const c = await Deno.connect({ hostname: "127.0.0.1", port: FWD_PORT });
    try {
      const line = await new Response(c.readable).text();
      assert.equal(line.trim(), "FROM 10.0.2.2", sh.stdout);
    } finally {
      try {
        c.close();
      } catch { /* closed by the response stream */ }
    }
    const st = await sh.stop("SIGTERM");
    assert.deepEqual(st.code, 0, sh.stderr);
    try {
      Deno.kill(Number(guestPid), "SIGKILL");
    } catch { /* gone with its parent */ }
    // The mount point was made in the real /tmp; the tmpfs on it died with the mount namespace.
    for (const e of Deno.readDirSync("/tmp")) {
      if (e.name.startsWith("sdt-rootless.")) {
        await Deno.remove(`/tmp/${e.name}`, { recursive: true });
      }
    }
  },
});
