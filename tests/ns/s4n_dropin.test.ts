// slirpd as a drop-in slirp4netns for its main users: the exact command lines podman 4.3 and
// rootlesskit 1.1 pass to slirp4netns, run rootful and from inside a user namespace that owns
// the guest netns while slirpd's own netns belongs to the parent one (`unshare -Ur`, then
// `unshare -n` for the guest: how rootless podman runs slirp4netns, and where a setns window
// could never come back). Each run: the ready fd says "1", the guest reaches a TCP service on
// a test address (192.0.2.2, behind the isolated host: slirp4netns' open policy, nothing
// enabled by flags), add_hostfwd on the API socket reaches a service in the guest, and
// closing the exit fd (podman) or SIGTERM (rootlesskit kills it) ends slirpd with 0.
//
//   podman:      --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp
//                --enable-ipv6 -c -e 3 -r 4 --api-socket S --netns-type=path PATH tap0
//   rootlesskit: --mtu 65520 -r 3 --disable-host-loopback --api-socket S PID tap0
//                (rootlesskit made and configured tap0 itself; no -c)

import assert from "node:assert/strict";
import { Background, HostNet, makeHostNet, needs, run, slirpdCommand } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3", "unshare", "nsenter", "ip", "bash", "mkfifo");

const quote = (args: string[]) => args.map((a) => `'${a}'`).join(" ");

/** One request on the API socket, answered without our shutting down the write side. */
async function api(path: string, req: object): Promise<Record<string, unknown>> {
  const c = await Deno.connect({ transport: "unix", path });
  try {
    await c.write(new TextEncoder().encode(JSON.stringify(req)));
    return JSON.parse(await new Response(c.readable).text());
  } finally {
    try {
      c.close();
    } catch { /* closed by the response stream */ }
  }
}

/**
 * The script run in the isolated host netns (under `unshare -Ur` for the userns runs): makes
 * the guest netns (`unshare -n`), for rootlesskit makes and configures tap0 in it, prints
 * GUEST=PID, then execs slirpd with fds 3/4 as the client would pass them.
 */
const SCRIPT = String.raw`
set -eu
unshare -n sleep 120 </dev/null >/dev/null 2>&1 &
g=$!
for i in $(seq 200); do
  [ "$(readlink /proc/$g/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
  sleep 0.02
done
if [ "$CLIENT" != podman ]; then
  nsenter --net=/proc/$g/ns/net sh -ec '
    ip link set lo up
    ip tuntap add tap0 mode tap
    ip link set tap0 mtu 65520
    ip addr add 10.0.2.100/24 dev tap0
    ip link set tap0 up
    ip route add default via 10.0.2.2'
fi
echo "GUEST=$g userns=$(readlink /proc/self/ns/user)"
if [ "$CLIENT" = podman ]; then
  exec 3<"$FIFO" 4>"$READY"
  eval exec "$SLIRPD" --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp \
    --enable-ipv6 -c -e 3 -r 4 --api-socket "$API" --netns-type=path /proc/$g/ns/net tap0
elif [ "$CLIENT" = rootlesskit ]; then
  exec 3>"$READY"
  eval exec "$SLIRPD" --mtu 65520 -r 3 --disable-host-loopback --api-socket "$API" $g tap0
else # rootlesskit's argv with the namespaces named by path (its --userns-path form)
  exec 3>"$READY"
  eval exec "$SLIRPD" --mtu 65520 -r 3 --disable-host-loopback --api-socket "$API" \
    --userns-path=/proc/$g/ns/user --netns-type=path /proc/$g/ns/net tap0
fi
`;

type Client = "podman" | "rootlesskit" | "rootlesskit-paths";

/** userns: slirpd runs under this unshare (a user namespace that owns the guest netns). */
async function dropIn(client: Client, userns: string[] | null): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "slirpd-dropin-" });
  const fifo = `${dir}/exit`, ready = `${dir}/ready`, apiPath = `${dir}/api.sock`;
  try {
    await using net = await makeHostNet();
    const py = await fwdPeer();
    // The "internet" service on a test address, and one on the host's own address.
    await using remote = net.remote.spawn(["python3", py, "serve"]);
    await remote.waitFor((b) => b.stdout.includes("ready"), 15_000, "remote server");
    await Deno.writeTextFile(ready, "");
    await run(["mkfifo", fifo]);
    const writer = client === "podman" ? Deno.open(fifo, { write: true }) : null;
    const argv = [
      ...net.host.prefix(),
      ...(userns ?? []),
      "bash",
      "-c",
      SCRIPT,
    ];
    await using sh = new Background(argv, {
      CLIENT: client,
      FIFO: fifo,
      READY: ready,
      API: apiPath,
      SLIRPD: quote(slirpdCommand()),
    });
    const exitW = writer ? await writer : null;
    try {
      await sh.waitFor((b) => /GUEST=\d+/.test(b.stdout), 20_000, "the guest netns");
      const guestPid = sh.stdout.match(/GUEST=(\d+)/)![1];
      if (userns) {
        const mine = await Deno.readLink("/proc/self/ns/user");
        assert.ok(!sh.stdout.includes(mine), "slirpd runs in a child user namespace");
      }
      // Readiness through the fd alone (what the clients wait for).
      let exited = false;
      sh.done.then(() => exited = true);
      for (let i = 0; i < 300 && !exited && (await Deno.readTextFile(ready)) === ""; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await Deno.readTextFile(ready), "1", `ready fd: ${sh.stderr}`);
      const inGuest = ["nsenter", `--net=/proc/${guestPid}/ns/net`, "--"];
      const probe = async (ns: string[], host: string, port: number) => {
        const r = await run([...ns, "python3", py, "tcp", host, String(port)], {
          timeoutMs: 20_000,
        });
        return r.code === 0 ? r.stdout.trim() : `exit ${r.code}: ${r.stderr.trim()}`;
      };
      // Routed to a test address and to the host's own address: no flag enabled it.
      assert.equal(await probe(inGuest, HostNet.REMOTE4, 7), `OK FROM ${HostNet.HOST4}`);
      await using hostSrv = net.host.spawn(["python3", py, "serve"]);
      await hostSrv.waitFor((b) => b.stdout.includes("ready"), 15_000, "host server");
      assert.equal(await probe(inGuest, HostNet.HOST4, 7), `OK FROM ${HostNet.HOST4}`);
      // add_hostfwd reaches a service in the guest.
      await using guestSrv = new Background([...inGuest, "python3", py, "serve"]);
      await guestSrv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest server");
      const added = await api(apiPath, {
        execute: "add_hostfwd",
        arguments: { proto: "tcp", host_addr: "127.0.0.1", host_port: 5017, guest_port: 7 },
      });
      assert.deepEqual(added, { return: { id: 1 } });
      assert.deepEqual(
        (await api(apiPath, { execute: "list_hostfwd" })).entries,
        [{
          id: 1,
          proto: "tcp",
          host_addr: "127.0.0.1",
          host_port: 5017,
          guest_addr: "10.0.2.100",
          guest_port: 7,
        }],
      );
      // A loopback client: rootful and unconfined, the connection is spliced (--forward-splice
      // auto) and the guest sees it from its own address; otherwise from the gateway, as
      // slirp4netns shows it (podman's argv confines slirpd; in a user namespace there is no
      // setns window).
      const spliced = userns === null && client !== "podman";
      assert.equal(
        await probe(net.host.prefix(), "127.0.0.1", 5017),
        spliced ? "OK FROM 10.0.2.100" : "OK FROM 10.0.2.2",
      );
      // The end: podman closes the exit fd, rootlesskit kills slirp4netns.
      if (exitW) exitW.close();
      else sh.child.kill("SIGTERM");
      const timer = setTimeout(() => sh.child.kill("SIGKILL"), 10_000);
      const status = await sh.done;
      clearTimeout(timer);
      assert.equal(status.code, 0, sh.stderr);
      assert.match(sh.stderr, /Slirpnetstack stopped/);
    } finally {
      try {
        exitW?.close();
      } catch { /* closed */ }
      const g = sh.stdout.match(/GUEST=(\d+)/)?.[1];
      if (g) {
        try {
          Deno.kill(Number(g), "SIGKILL");
        } catch { /* gone */ }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CASES: [Client, string[] | null][] = [
  ["podman", null],
  ["podman", ["unshare", "-Ur"]],
  ["rootlesskit", null],
  ["rootlesskit", ["unshare", "-Ur"]],
  // A slirpd whose mount namespace differs too (unshare -rm), the namespaces given by path.
  ["rootlesskit-paths", ["unshare", "-rm"]],
];
for (const [client, userns] of CASES) {
  Deno.test({
    name: `s4n drop-in: ${client}'s argv, ${userns ? `inside ${userns.join(" ")}` : "rootful"}`,
    ignore: SKIP !== null,
    fn: () => dropIn(client, userns),
  });
}
