// gVisor check: a runsc sandbox whose network namespace is served by slirpd reaches a service
// on the "host" through slirpd.
//
//   deno run -A scripts/runsc/main.ts
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

import {
  HostNet,
  makeHostNet,
  makeNetns,
  needs,
  startSlirpd,
} from "../../tests/support/harness.ts";
import { makeBundle } from "./bundle.ts";
import { explain, Runsc, type RunscResult, runscVersion } from "./runsc.ts";

/** The service's greeting; its presence in the container's output is the success test. */
export const GREETING = "hello from the host service";
const URL = `http://${HostNet.HOST4}:8080/`;
const CONTAINER_TIMEOUT_MS = 60_000;
/** Bytes moved each way in the bulk check: many TSO/GSO super-frames through slirpd's tap. */
const BULK = 4 << 20;
const SINK_PORT = 8081;

// The container's process (busybox sh -c). The fetch's status is the container's exit code.
// Not `wget -T`: Debian's busybox 1.35 wget segfaults with it; `busybox timeout` bounds it.
// The upload goes through nc (which half-closes at EOF): that wget's --post-file sends nothing.
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
busybox timeout 15 busybox wget -q -U busybox-wget-in-gvisor -O - ${URL} 2>&1
rc=$?
echo "wget exit $rc"
echo "--- bulk: ${BULK} bytes down, ${BULK} bytes up"
echo "down $(busybox timeout 30 busybox wget -q -O - ${URL}bulk | busybox wc -c) bytes"
busybox head -c ${BULK} /dev/zero | busybox timeout 30 busybox nc ${HostNet.HOST4} ${SINK_PORT}
exit $rc
`;

// The host namespace's services: HTTP on :8080 (greeting, and /bulk for the download), and a
// byte counter on :${SINK_PORT} for the upload: it reads to EOF, answers "received N", closes.
// (Not an HTTP POST: Deno's HTTP/1 server can drop a connection whose client half-closes right
// after the body, a race that has nothing to do with the network in between.)
const SERVICE = `
const host = "${HostNet.HOST4}";
Deno.serve({ hostname: host, port: 8080, onListen() { console.log("listening") } }, (req) =>
  new URL(req.url).pathname === "/bulk"
    ? new Response(new Uint8Array(${BULK}).fill(120))
    : new Response("${GREETING}, you came from " + req.headers.get("user-agent") + "\\n"));
for await (const conn of Deno.listen({ hostname: host, port: ${SINK_PORT} })) {
  (async () => {
    const buf = new Uint8Array(1 << 16);
    let n = 0;
    try {
      for (let r; (r = await conn.read(buf)) !== null;) n += r;
      await conn.write(new TextEncoder().encode("received " + n + "\\n"));
    } catch (e) {
      console.log("upload broke after " + n + " bytes: " + e);
    }
    conn.close();
  })();
}
`;

function fail(msg: string): never {
  console.error(`runsc: ${msg}`);
  Deno.exit(1);
}

const say = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

if (Deno.uid() !== 0) fail("needs root (network namespaces, runsc)");
const missing = needs("unshare", "nsenter", "ldd", "busybox");
if (missing) fail(missing.replace("skipped: ", ""));
const version = await runscVersion();
if (version === null) fail("needs gVisor's runsc on PATH (Debian package runsc)");

await using net = await makeHostNet();
await using guest = await makeNetns("runsc");
say(`${version}; guest namespace ${guest.name}; host namespace ${net.host.name}`);

await using server = net.host.spawn([Deno.execPath(), "eval", SERVICE]);
await server.waitFor((b) => b.stdout.includes("listening"), 20_000, "the host service");

// runsc copies the netns's routes into gVisor and refuses a link with two default routes of one
// family; slirpd's RAs under --configure do not make the guest add a second one (router
// lifetime 0), so the guest needs no extra setting here.

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
  say(`runsc ${runsc.flags.join(" ")} run (bundle and --root in ${tmp})`);
  // Ctrl-C while the container runs: kill it through runsc, so the cleanup below still runs
  // (without a listener Deno would exit at once and leave the sandbox and namespaces behind).
  const interrupt = () => {
    console.log("interrupted: removing the container, then cleaning up");
    void runsc.remove(id);
  };
  Deno.addSignalListener("SIGINT", interrupt);
  Deno.addSignalListener("SIGTERM", interrupt);
  let r: RunscResult;
  try {
    r = await runsc.runContainer(bundle, id, guest.path, CONTAINER_TIMEOUT_MS);
  } finally {
    Deno.removeSignalListener("SIGINT", interrupt);
    Deno.removeSignalListener("SIGTERM", interrupt);
    await runsc.remove(id);
  }
  console.log(r.stdout.trimEnd());
  if (r.stderr.trim()) console.log(`runsc stderr:\n${r.stderr.trimEnd()}`);
  if (r.timedOut) console.log(`runsc: killed after ${CONTAINER_TIMEOUT_MS / 1000} s`);
  const hint = explain(r.stderr);
  if (hint) console.log(`why: ${hint}`);
  say("guest namespace afterwards: runsc moved the tap's addresses into gVisor");
  console.log(await guest.must(["ip", "-br", "addr"]));

  const pinged = /ping exit 0/.test(r.stdout);
  const fetched = r.code === 0 && r.stdout.includes(GREETING);
  const bulk = r.stdout.includes(`down ${BULK} bytes`) && r.stdout.includes(`received ${BULK}`);
  ok = fetched && bulk;
  say("result");
  console.log(`ping 10.0.2.2 from gVisor: ${pinged ? "ok" : "failed (not required)"}`);
  console.log(`fetch ${URL} from gVisor: ${fetched ? "ok" : `FAILED (runsc exit ${r.code})`}`);
  console.log(`bulk ${BULK} bytes each way: ${bulk ? "ok" : "FAILED"}`);
  if (server.stdout.includes("broke")) console.log(server.stdout.trimEnd());
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

say("stop slirpd (SIGTERM)");
const status = await slirpd.stop("SIGTERM");
console.log(slirpd.stderr.trim().split("\n").slice(1).join("\n"));
console.log(`slirpd exited with ${status.code}`);
Deno.exitCode = ok && status.code === 0 ? 0 : 1;
