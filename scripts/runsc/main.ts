// gVisor: run a runsc sandbox whose network namespace slirpd serves.
//
//   deno task runsc -- --bundle DIR [OPTIONS]                your OCI bundle (DIR/config.json)
//   deno task runsc -- --rootfs DIR [OPTIONS] [CMD [ARGS...]]   a root filesystem; CMD (default
//                                                            /bin/sh) with our stdin/stdout
//   OPTIONS: --slirpd FLAG (repeatable: slirpd's flags besides --configure, e.g.
//            --slirpd=--enable-routing), --runsc FLAG (repeatable: runsc's global flags, e.g.
//            --runsc=--platform=ptrace), --id NAME (container id)
//   deno task runsc                                          the self-test below
//
// Your bundle is not modified: its config.json is copied with root.path made absolute and the
// network namespace pointed at the one slirpd serves (scripts/runsc/sandbox.ts). The exit code
// is the container's. As root (runsc --network=sandbox needs it).
//
// The self-test (no arguments) goes through the same code:
// It builds, all by itself and all torn down at the end (as scripts/demo.ts does):
//   - an isolated "host" namespace with the test address 192.0.2.1 and a small HTTP service,
//   - a guest namespace, and slirpd in the host namespace serving it (--configure --enable-host),
//   - an OCI bundle (busybox and its libraries) whose network namespace is the guest namespace,
//   - `runsc --platform=ptrace --network=sandbox run`: gVisor's own netstack takes the tap's
//     addresses and speaks Ethernet over it, so every frame of the sandbox goes through slirpd.
// Inside the sandbox busybox pings the gateway 10.0.2.2 (answered by slirpd) and fetches
// http://192.0.2.1:8080/. Exit code 0 when the fetch works; the ping is reported, not required.
// Why runsc needs `unshare -m` and a tmpfs over /proc/sys/net/core: see scripts/runsc/runsc.ts.

import { HostNet, makeHostNet, needs } from "../../tests/support/harness.ts";
import { makeBundle, ociConfig } from "./bundle.ts";
import { explain } from "./runsc.ts";
import { runSandbox } from "./sandbox.ts";

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

interface Cli {
  bundle?: string;
  rootfs?: string;
  id?: string;
  slirpd: string[];
  runsc: string[];
  cmd: string[];
}

const USAGE = "usage: deno task runsc -- --bundle DIR | --rootfs DIR [CMD...] " +
  "[--slirpd FLAG]... [--runsc FLAG]... [--id NAME]";

function parseCli(argv: string[]): Cli {
  const a = argv[0] === "--" ? argv.slice(1) : argv;
  const o: Cli = { slirpd: [], runsc: [], cmd: [] };
  for (let i = 0; i < a.length; i++) {
    const m = a[i].match(/^--(bundle|rootfs|id|slirpd|runsc)(?:=(.*))?$/s);
    if (!m) {
      if (a[i] === "--") o.cmd = a.slice(i + 1);
      else if (a[i].startsWith("-")) fail(`unknown option ${a[i]}; ${USAGE}`);
      else o.cmd = a.slice(i);
      break;
    }
    const v = m[2] ?? a[++i];
    if (v === undefined) fail(`--${m[1]} needs a value; ${USAGE}`);
    if (m[1] === "slirpd" || m[1] === "runsc") o[m[1]].push(v);
    else o[m[1] as "bundle" | "rootfs" | "id"] = v;
  }
  if (o.bundle !== undefined && o.rootfs !== undefined) fail("--bundle or --rootfs, not both");
  if (o.bundle !== undefined && o.cmd.length > 0) {
    fail(`--bundle runs the bundle's own process; unexpected ${o.cmd[0]}`);
  }
  if (o.bundle === undefined && o.rootfs === undefined && a.length > 0) fail(USAGE);
  return o;
}

const abs = (p: string) => p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;

/** A user's bundle or rootfs: the container's stdio is ours, its exit code ours. */
async function userRun(o: Cli): Promise<number> {
  let config: Record<string, unknown>;
  let bundleDir: string;
  if (o.bundle !== undefined) {
    bundleDir = abs(o.bundle);
    try {
      config = JSON.parse(await Deno.readTextFile(`${bundleDir}/config.json`));
    } catch (e) {
      fail(`--bundle ${o.bundle}: no readable config.json (${(e as Error).message})`);
    }
  } else {
    bundleDir = abs(o.rootfs!);
    if (!(await Deno.stat(bundleDir).catch(() => null))?.isDirectory) {
      fail(`--rootfs ${o.rootfs}: not a directory`);
    }
    config = ociConfig({
      rootPath: bundleDir,
      args: o.cmd.length > 0 ? o.cmd : ["/bin/sh"],
      netnsPath: "",
      readonly: false,
    });
  }
  const r = await runSandbox({
    config,
    bundleDir,
    id: o.id,
    slirpdArgs: o.slirpd,
    runscFlags: o.runsc,
    stdio: "inherit",
    timeoutMs: 24 * 3600_000,
    log: (l) => console.error(`runsc: ${l}`),
  });
  if (r.slirpdCode !== 0) console.error(`runsc: slirpd exited with ${r.slirpdCode}`);
  return r.code;
}

async function selfTest(): Promise<boolean> {
  const missing = needs("unshare", "nsenter", "ldd", "busybox");
  if (missing) fail(missing.replace("skipped: ", ""));
  await using net = await makeHostNet();
  say(`host namespace ${net.host.name} (${HostNet.HOST4}) with a service`);
  await using server = net.host.spawn([Deno.execPath(), "eval", SERVICE]);
  await server.waitFor((b) => b.stdout.includes("listening"), 20_000, "the host service");

  // runsc copies the netns's routes into gVisor and refuses a link with two default routes of
  // one family; slirpd's RAs under --configure do not make the guest add a second one (router
  // lifetime 0), so the guest needs no extra setting here.
  const busybox = await Deno.makeTempDir({ prefix: "slirpd-runsc-busybox-" });
  try {
    await makeBundle({ dir: busybox, netnsPath: "", script: SCRIPT });
    const config = JSON.parse(await Deno.readTextFile(`${busybox}/config.json`));
    say("slirpd --configure --enable-host in the host namespace; runsc in a fresh guest netns");
    const r = await runSandbox({
      config,
      bundleDir: busybox,
      slirpdArgs: ["--enable-host"],
      hostNs: net.host,
      // --net-raw: let the container's CAP_NET_RAW open raw sockets (busybox ping)
      runscFlags: ["--platform=ptrace", "--net-raw"],
      stdio: "piped",
      timeoutMs: CONTAINER_TIMEOUT_MS,
      log: (l) => console.log(l),
      beforeRun: async (guest) => console.log(await guest.must(["ip", "-br", "addr"])),
      afterRun: async (guest) => {
        say("guest namespace afterwards: runsc moved the tap's addresses into gVisor");
        console.log(await guest.must(["ip", "-br", "addr"]));
      },
    });
    console.log(r.stdout.trimEnd());
    if (r.stderr.trim()) console.log(`runsc stderr:\n${r.stderr.trimEnd()}`);
    if (r.timedOut) console.log(`runsc: killed after ${CONTAINER_TIMEOUT_MS / 1000} s`);
    const hint = explain(r.stderr);
    if (hint) console.log(`why: ${hint}`);

    const pinged = /ping exit 0/.test(r.stdout);
    const fetched = r.code === 0 && r.stdout.includes(GREETING);
    const bulk = r.stdout.includes(`down ${BULK} bytes`) && r.stdout.includes(`received ${BULK}`);
    say("result");
    console.log(`ping 10.0.2.2 from gVisor: ${pinged ? "ok" : "failed (not required)"}`);
    console.log(`fetch ${URL} from gVisor: ${fetched ? "ok" : `FAILED (runsc exit ${r.code})`}`);
    console.log(`bulk ${BULK} bytes each way: ${bulk ? "ok" : "FAILED"}`);
    if (server.stdout.includes("broke")) console.log(server.stdout.trimEnd());
    console.log(r.slirpdStderr.trim().split("\n").slice(1).join("\n"));
    console.log(`slirpd exited with ${r.slirpdCode}`);
    return fetched && bulk && r.slirpdCode === 0;
  } finally {
    await Deno.remove(busybox, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const cli = parseCli(Deno.args);
  if (Deno.uid() !== 0) fail("needs root (runsc --network=sandbox and network namespaces)");
  if (cli.bundle !== undefined || cli.rootfs !== undefined) Deno.exit(await userRun(cli));
  Deno.exitCode = (await selfTest()) ? 0 : 1;
}
