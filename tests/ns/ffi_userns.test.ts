// Rootless ffi path: an unprivileged user (uid 65534) makes a namespace with `unshare -Urn`
// and tests/support/ffi_userns_prog.ts, run as that user from the host namespaces, opens taps in it.
//
// /dev/net/tun here is 0600 root, so the whole test runs in a private mount namespace in which a
// 0666 tun node (on a tmpfs) is bind-mounted over /dev/net/tun; the user gets its own DENO_DIR.

import { skip } from "../support/harness.ts";
import { needs, run } from "../support/harness.ts";
import { assert, assertEquals } from "../support/ffi_helpers.ts";

const SKIP = Deno.uid() !== 0 ? "skipped: needs root to set up the unprivileged user" : null;
const PROG = new URL("../support/ffi_userns_prog.ts", import.meta.url).pathname;

const SCRIPT = String.raw`
set -eu
d=$(mktemp -d /tmp/sdt-ffiuserns.XXXXXX)
trap 'umount -l /dev/net/tun "$d" 2>/dev/null; rm -rf "$d"' EXIT
mount -t tmpfs -o mode=0755 tmpfs "$d"
mknod -m 0666 "$d/tun" c 10 200
mount --bind "$d/tun" /dev/net/tun
mkdir "$d/deno-dir" && chown 65534:65534 "$d/deno-dir"
export DENO_DIR="$d/deno-dir" HOME="$d/deno-dir"
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all sh -c '
  set -eu
  # The guest: a user+net namespace of its own, with one persistent tap made inside it.
  unshare -Urn sh -c "ip tuntap add dev $EXISTING mode tap && exec sleep 60" &
  pid=$!
  for i in $(seq 100); do
    [ "$(cat /proc/$pid/comm)" = sleep ] && break # the tap exists once sh runs sleep
    sleep 0.05
  done
  echo "{\"step\":\"guest\",\"pid\":$pid,\"hostUserns\":\"$(stat -L -c %i /proc/self/ns/user)\"}"
  nsenter --user=/proc/$pid/ns/user --preserve-credentials deno run --allow-all --no-lock "$PROG" --stranded /proc/$pid/ns/net
  deno run --allow-all --no-lock "$PROG" /proc/$pid/ns/net "$EXISTING" "$FRESH" || echo "{\"step\":\"failed\"}"
  kill $pid
'
`;

Deno.test({
  name:
    "userns: an unprivileged user opens, attaches and configures taps in its unshare -Urn netns",
  ignore: skip(SKIP ?? needs("ping", "setpriv", "unshare"), "ffi_userns"),
  fn: async () => {
    const sfx = Math.random().toString(36).slice(2, 7);
    const existing = `sdtex${sfx}`, fresh = `sdtnw${sfx}`;
    const child = new Deno.Command("unshare", {
      args: ["-m", "--propagation", "private", "sh", "-c", SCRIPT],
      env: {
        PROG,
        EXISTING: existing,
        FRESH: fresh,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const stderr = new Response(child.stderr).text();
    const steps: Record<string, Record<string, unknown>> = {};
    let guestPid = 0;
    try {
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      while (!steps.read && !steps.failed) {
        const { value, done } = await lines.read();
        if (done) break;
        buf += value;
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line.startsWith("{")) continue;
          const o = JSON.parse(line);
          steps[o.step] = o;
          if (o.step === "guest") guestPid = o.pid;
          if (o.step === "ready") {
            // Checked from outside while the program holds the tap: the device, its addresses
            // and routes are in the guest netns. Then make the guest send a frame.
            const inGuest = ["nsenter", "-t", String(guestPid), "-n", "--"];
            const addr = await run([...inGuest, "ip", "-j", "addr", "show", "dev", fresh]);
            steps.addr = JSON.parse(addr.stdout || "[{}]")[0];
            const route = await run([...inGuest, "ip", "-j", "route"]);
            steps.route = { routes: JSON.parse(route.stdout || "[]") };
            const status = await Deno.readTextFile(`/proc/${o.pid}/status`);
            steps.status = { uid: /^Uid:\s+(\d+)/m.exec(status)?.[1] };
            await run([...inGuest, "ping", "-c1", "-W1", "10.0.2.2"], { timeoutMs: 5000 });
          }
        }
      }
      await lines.cancel();
    } finally {
      clearTimeout(kill);
      await child.status;
    }
    const err = await stderr;
    assert(steps.ready, `the program did not get ready: ${JSON.stringify(steps)}\n${err}`);
    const r = steps.ready as {
      uid: number;
      userns: string;
      foreign: boolean;
      viaHelper: boolean;
      missing: string;
      attached: { name: string; created: boolean; vnetLen: number };
      tap: { name: string; created: boolean; vnetLen: number; offloaded: boolean; ifindex: number };
    };
    // Unprivileged, still in the initial user namespace (no re-exec into the guest's).
    assertEquals(r.uid, 65534);
    assertEquals(steps.status.uid, "65534");
    assertEquals(r.userns, steps.guest.hostUserns);
    assertEquals([r.foreign, r.viaHelper], [true, true]);
    assertEquals(r.attached, { name: existing, created: false, vnetLen: 10 });
    assert(
      r.missing.startsWith("--interface nope0: no such tap in the namespace /proc/"),
      r.missing,
    );
    assertEquals([r.tap.name, r.tap.created, r.tap.vnetLen, r.tap.offloaded], [
      fresh,
      true,
      10,
      true,
    ]);

    const addr = steps.addr as {
      ifindex: number;
      mtu: number;
      flags: string[];
      addr_info: { local: string }[];
    };
    assertEquals(addr.ifindex, r.tap.ifindex);
    assertEquals(addr.mtu, 1500);
    assert(addr.flags.includes("UP"));
    const locals = addr.addr_info.map((a) => a.local);
    assert(locals.includes("10.0.2.100") && locals.includes("fd00::100"), locals.join());
    const routes = steps.route.routes as { dst: string; gateway?: string }[];
    assert(
      routes.some((x) => x.dst === "default" && x.gateway === "10.0.2.2"),
      JSON.stringify(routes),
    );
    assertEquals(steps.read, { step: "read", arp: true });
    // Why not re-exec into the owner user namespace: the guest netns can be entered from there,
    // but the thread can never return to the host netns (owned by the initial user namespace).
    assertEquals(steps.stranded, {
      step: "stranded",
      inside: true,
      message: "setns(/proc/thread-self/ns/net (back home)): EPERM",
    });
    console.log(`rootless: guest fds via the helper in ${steps.ready.helperMs} ms`);
  },
});
