// gVisor check: a runsc sandbox whose network namespace is served by slirpd reaches a service
// on the "host" through slirpd.
//
//   deno run -A scripts/runsc.ts
//
// It builds, all by itself and all torn down at the end (as scripts/demo.ts does):
//   - an isolated "host" namespace with the test address 192.0.2.1 and a small HTTP service,
//   - a guest namespace, and slirpd in the host namespace serving it (--configure --enable-host),
//   - an OCI bundle (busybox and its libraries) whose network namespace is the guest namespace,
//   - `runsc --platform=ptrace --network=sandbox run`: gVisor's own netstack takes the tap's
//     addresses and speaks Ethernet over it, so every frame of the sandbox goes through slirpd.
// Inside the sandbox busybox pings the gateway 10.0.2.2 (answered by slirpd) and fetches
// http://192.0.2.1:8080/. Exit code 0 when the fetch works; the ping is reported, not required.
// Why runsc needs `unshare -m` and a tmpfs over /proc/sys/net/core: see scripts/runsc/runsc.ts.

import { HostNet, makeHostNet, makeNetns, needs, startSlirpd } from "../tests/harness.ts";
import { makeBundle } from "./runsc/bundle.ts";
import { Runsc, runscVersion } from "./runsc/runsc.ts";

/** The service's greeting; its presence in the container's output is the success test. */
export const GREETING = "hello from the host service";
const URL = `http://${HostNet.HOST4}:8080/`;
const CONTAINER_TIMEOUT_MS = 60_000;

// The container's process (busybox sh -c). The fetch's status is the container's exit code.
const SCRIPT = `
echo "kernel: $(busybox uname -sr) (gVisor reports its own)"
echo "--- ip addr (gVisor's netstack, copied from slirpd's tap)"
busybox ip addr 2>&1
echo "--- ip route"
busybox ip route 2>&1
echo "--- ping 10.0.2.2"
busybox ping -c 3 -W 2 10.0.2.2 2>&1
echo "ping exit $?"
echo "--- wget ${URL}"
busybox wget -q -T 10 -U busybox-wget-in-gvisor -O - ${URL} 2>&1
rc=$?
echo "wget exit $rc"
exit $rc
`;

function fail(msg: string): never {
  console.error(`runsc: ${msg}`);
  Deno.exit(1);
}

const say = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

if (Deno.uid() !== 0) fail("needs root (network namespaces, runsc)");
const missing = needs("unshare", "ldd", "busybox");
if (missing) fail(missing.replace("skipped: ", ""));
const version = await runscVersion();
if (version === null) fail("needs gVisor's runsc on PATH (Debian package runsc)");

await using net = await makeHostNet();
await using guest = await makeNetns("runsc");
say(`${version}; guest namespace ${guest.name}; host namespace ${net.host.name}`);

await using server = net.host.spawn([
  Deno.execPath(),
  "eval",
  `Deno.serve({ hostname: "${HostNet.HOST4}", port: 8080, onListen() { console.log("listening") } },
     (req) => new Response("${GREETING}, you came from " + req.headers.get("user-agent") + "\\n"));`,
]);
await server.waitFor((b) => b.stdout.includes("listening"), 20_000, "the host service");

// runsc copies the netns's routes into gVisor and refuses a link with two default routes of one
// family. slirpd --configure adds `default via fd00::2`, and its router advertisements would
// make the kernel add a second one via the gateway's link-local address, so the guest ignores
// RAs (set on `default` before slirpd makes the tap, which inherits it).
await guest.must(["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_ra=0"]);

say("start slirpd --configure --enable-host in the host namespace");
await using slirpd = await startSlirpd({
  guest,
  hostNs: net.host,
  args: ["--configure", "--enable-host"],
});
console.log(await guest.must(["ip", "-br", "addr"]));

const tmp = await Deno.makeTempDir({ prefix: "slirpd-runsc-" });
let ok = false;
try {
  const bundle = `${tmp}/bundle`;
  await makeBundle({ dir: bundle, netnsPath: guest.path, script: SCRIPT });
  const runsc = new Runsc(`${tmp}/state`, [
    "--platform=ptrace",
    "--network=sandbox",
    "--net-raw", // let the container's CAP_NET_RAW open raw sockets (busybox ping)
  ]);
  const id = `slirpd-${guest.name}`;
  say(`runsc ${runsc.flags.join(" ")} run (network namespace ${guest.path})`);
  let r;
  try {
    r = await runsc.runContainer(bundle, id, guest.path, CONTAINER_TIMEOUT_MS);
  } finally {
    await runsc.remove(id);
  }
  console.log(r.stdout.trimEnd());
  if (r.stderr.trim()) console.log(`runsc stderr:\n${r.stderr.trimEnd()}`);
  if (r.timedOut) console.log(`runsc: killed after ${CONTAINER_TIMEOUT_MS / 1000} s`);
  say("tap in the guest namespace while gVisor had it (addresses moved into the sandbox)");
  console.log(await guest.must(["ip", "-br", "addr"]));

  const pinged = /ping exit 0/.test(r.stdout);
  ok = r.code === 0 && r.stdout.includes(GREETING);
  say("result");
  console.log(`ping 10.0.2.2 from gVisor: ${pinged ? "ok" : "failed (not required)"}`);
  console.log(`fetch ${URL} from gVisor: ${ok ? "ok" : `FAILED (runsc exit ${r.code})`}`);
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

say("stop slirpd (SIGTERM)");
const status = await slirpd.stop("SIGTERM");
console.log(slirpd.stderr.trim().split("\n").slice(1).join("\n"));
console.log(`slirpd exited with ${status.code}`);
Deno.exitCode = ok && status.code === 0 ? 0 : 1;
