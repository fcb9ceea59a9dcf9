// End to end with the real clients: podman 4.3 (`--network slirp4netns:port_handler=slirp4netns`,
// slirpd as `[engine] network_cmd_path` in a CONTAINERS_CONF file) and rootlesskit 1.1
// (`--net=slirp4netns --slirp4netns-binary=... --port-driver=slirp4netns -p ...`), each rootful
// and rootless. Per run: a published port reaches the container's httpd, the container reaches
// the host's loopback through 10.0.2.2 and a service on a test address (192.0.2.2 behind the
// isolated host, no flag needed), and slirpd goes away with the container.
//
// Everything runs inside makeHostNet's isolated host namespace (podman and rootlesskit start
// slirpd from their own netns). No image can be pulled: a busybox-static rootfs is imported.
// Rootless runs need an unprivileged user with /etc/subuid and /etc/subgid ranges
// (SLIRPD_TEST_USER, default slirpd-test, else sdtuser; .ci/run makes slirpd-test); they run in
// a private mount namespace whose /dev/net/tun is a 0666 node (many machines ship 0600).
// Known machine quirks: runc, cgroupfs, and --ulimit nofile/nproc 4096 (podman's defaults fail
// under some sandboxes).

import assert from "node:assert/strict";
import {
  Background,
  HostNet,
  makeHostNet,
  needs,
  run,
  skip,
  slirpdCommand,
} from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const BUSYBOX = "/bin/busybox";
const TOOLS = needs("podman", "runc", "rootlesskit", "curl", "runuser", "unshare", "nsenter");

function staticBusybox(): string | null {
  try {
    const head = Deno.readFileSync(BUSYBOX).subarray(0, 1 << 16);
    // A static binary has no PT_INTERP ("/lib64/ld-linux" string in the first pages).
    return new TextDecoder().decode(head).includes("ld-linux")
      ? "skipped: /bin/busybox is not static (install busybox-static)"
      : null;
  } catch {
    return "skipped: needs /bin/busybox (busybox-static)";
  }
}

function subidRange(user: string): boolean {
  try {
    return ["/etc/subuid", "/etc/subgid"].every((f) =>
      Deno.readTextFileSync(f).split("\n").some((l) => l.startsWith(`${user}:`))
    );
  } catch {
    return false;
  }
}

async function testUser(): Promise<{ name: string; uid: number } | null> {
  for (const name of [Deno.env.get("SLIRPD_TEST_USER"), "slirpd-test", "sdtuser"]) {
    if (!name) continue;
    const r = await run(["id", "-u", name]);
    if (r.code === 0 && subidRange(name)) return { name, uid: Number(r.stdout.trim()) };
  }
  return null;
}

const SKIP = TOOLS ?? staticBusybox() ??
  (Deno.uid() !== 0 ? "skipped: needs root" : null);

/** A world-readable copy of slirpd (sources, deno) and a wrapper that logs its PID, then execs. */
async function stage(dir: string, owner: number | null): Promise<string> {
  const wrap = `${dir}/slirpd-wrap.sh`;
  const bin = Deno.env.get("SLIRPD_BIN");
  let exec: string;
  if (bin) exec = `exec '${bin}' "$@"`;
  else {
    const src = `${dir}/src`;
    await run(["mkdir", "-p", src, `${dir}/deno-dir`]);
    for (const p of ["main.ts", "deno.json", "daemon", "ffi", "stack", "firewall"]) {
      await run(["cp", "-r", `${REPO}${p}`, src]);
    }
    await run(["cp", slirpdCommand()[0], `${dir}/deno`]);
    exec = `DENO_DIR='${dir}/deno-dir' exec '${dir}/deno' run --allow-all '${src}/main.ts' "$@"`;
  }
  await Deno.writeTextFile(wrap, `#!/bin/sh\necho $$ >> '${dir}/pids'\n${exec}\n`);
  await Deno.chmod(wrap, 0o755);
  if (owner !== null) await run(["chown", "-R", `${owner}:${owner}`, dir]);
  await run(["chmod", "-R", "a+rX", dir]);
  return wrap;
}

/** The PIDs slirpd ran as, and whether all of them have exited (or are zombies). */
function slirpdPids(dir: string): number[] {
  try {
    return Deno.readTextFileSync(`${dir}/pids`).trim().split("\n").filter((l) => l !== "")
      .map(Number);
  } catch {
    return [];
  }
}

function gone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return true;
  }
}

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 30_000) {
  const end = Date.now() + ms;
  for (let i = 0; i < 1000; i++) {
    if (await fn()) return;
    if (Date.now() > end) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const HOST_LO_PORT = 18199, PUBLISHED = 18190, REMOTE_PORT = 8080;

/** The test world: isolated host, httpd on its loopback and on the remote test address. */
async function world(dir: string) {
  const net = await makeHostNet();
  for (const [d, text] of [["hs", "hello-host-loopback"], ["rs", "hello-remote"]]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${d}/index.html`, text + "\n");
  }
  await run(["chmod", "-R", "a+rX", dir]);
  const hs = net.host.spawn([
    BUSYBOX,
    "httpd",
    "-f",
    "-p",
    `127.0.0.1:${HOST_LO_PORT}`,
    "-h",
    `${dir}/hs`,
  ]);
  const rs = net.remote.spawn([
    BUSYBOX,
    "httpd",
    "-f",
    "-p",
    `${HostNet.REMOTE4}:${REMOTE_PORT}`,
    "-h",
    `${dir}/rs`,
  ]);
  return {
    net,
    async [Symbol.asyncDispose]() {
      await hs[Symbol.asyncDispose]();
      await rs[Symbol.asyncDispose]();
      await net[Symbol.asyncDispose]();
    },
  };
}

/** `cmd` as `user` (login-like environment), in the isolated host netns and a private mount ns. */
function asUser(hostNetns: string, user: { name: string; uid: number } | null, runtime: string) {
  return (cmd: string[]): string[] => {
    if (user === null) return ["nsenter", `--net=${hostNetns}`, "--", ...cmd];
    const env = [
      `HOME=${runtime}`,
      `USER=${user.name}`,
      "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
      `XDG_RUNTIME_DIR=${runtime}`,
    ];
    const inner = ["runuser", "-u", user.name, "--", "env", "-i", ...env, ...cmd];
    // A 0666 /dev/net/tun for this mount namespace only.
    const tun = `t=$(mktemp -d /tmp/sdt-e2etun.XXXXXX) && mount -t tmpfs tmpfs "$t" && ` +
      `mknod -m 0666 "$t/tun" c 10 200 && mount --bind "$t/tun" /dev/net/tun && exec "$@"`;
    return [
      "nsenter",
      `--net=${hostNetns}`,
      "--",
      "unshare",
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      tun,
      "sh",
      ...inner,
    ];
  };
}

async function podmanCase(rootless: boolean): Promise<void> {
  const user = rootless ? await testUser() : null;
  if (rootless && user === null) {
    console.log("skipped: no test user with /etc/subuid and /etc/subgid ranges");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "sdt-p" });
  const runtime = `${dir}/runtime`;
  await Deno.mkdir(runtime, { mode: 0o700 });
  const wrap = await stage(dir, user?.uid ?? null);
  await using w = await world(dir);
  const wrapAs = asUser(w.net.host.path, user, runtime);
  const conf = `${dir}/containers.conf`;
  await Deno.writeTextFile(
    conf,
    `[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n` +
      `network_cmd_path = "${wrap}"\n`,
  );
  // The image: a busybox-static rootfs.
  const rootfs = `${dir}/rootfs`;
  for (const d of ["bin", "etc", "proc", "sys", "dev", "tmp", "www"]) {
    await Deno.mkdir(`${rootfs}/${d}`, { recursive: true });
  }
  await run(["cp", BUSYBOX, `${rootfs}/bin/busybox`]);
  for (const a of ["sh", "httpd", "wget", "timeout", "ip", "cat"]) {
    await Deno.symlink("busybox", `${rootfs}/bin/${a}`);
  }
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, "root:x:0:0:root:/:/bin/sh\n");
  await Deno.writeTextFile(`${rootfs}/www/index.html`, "hello-from-container\n");
  await run([
    "tar",
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "-C",
    rootfs,
    "-cf",
    `${dir}/bb.tar`,
    ".",
  ]);
  if (user) await run(["chown", "-R", `${user.uid}:${user.uid}`, dir]);
  await run(["chmod", "a+rX", dir]);
  const podman = (args: string[]) =>
    wrapAs([
      "env",
      `CONTAINERS_CONF=${conf}`,
      "podman",
      "--root",
      `${dir}/root`,
      "--runroot",
      `${dir}/run`,
      "--tmpdir",
      `${dir}/tmp`,
      "--runtime",
      "runc",
      "--cgroup-manager=cgroupfs",
      "--events-backend=file",
      ...args,
    ]);
  const must = async (args: string[], ms = 60_000) => {
    const r = await run(podman(args), { timeoutMs: ms });
    assert.equal(r.code, 0, `podman ${args.join(" ")}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  try {
    await must(["import", "--change", 'CMD ["/bin/sh"]', `${dir}/bb.tar`, "localhost/bbox:latest"]);
    await must([
      "run",
      "-d",
      "--name",
      "sdt-e2e",
      "--ulimit",
      "nofile=4096:4096",
      "--ulimit",
      "nproc=4096:4096",
      "--network",
      "slirp4netns:port_handler=slirp4netns,allow_host_loopback=true",
      "-p",
      `127.0.0.1:${PUBLISHED}:80`,
      "localhost/bbox",
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/www",
    ]);
    assert.ok(slirpdPids(dir).length > 0, "podman ran slirpd");
    let page = "";
    await until("the published port", async () => {
      const r = await w.net.host.exec([
        "curl",
        "-s",
        "--max-time",
        "2",
        `http://127.0.0.1:${PUBLISHED}/`,
      ]);
      page = r.stdout.trim();
      return page === "hello-from-container";
    });
    const wget = (url: string) =>
      must(["exec", "sdt-e2e", "timeout", "10", "wget", "-q", "-O", "-", url]);
    assert.equal((await wget(`http://10.0.2.2:${HOST_LO_PORT}/`)).trim(), "hello-host-loopback");
    assert.equal((await wget(`http://${HostNet.REMOTE4}:${REMOTE_PORT}/`)).trim(), "hello-remote");
    await must(["rm", "-f", "-t", "0", "sdt-e2e"]);
    await until("slirpd's exit with the container", () => slirpdPids(dir).every(gone), 15_000);
  } finally {
    await run(podman(["rm", "-a", "-f", "-t", "0"]), { timeoutMs: 60_000 });
    await run(podman(["system", "reset", "-f"]), { timeoutMs: 60_000 });
    // The rootless pause process (its pid file is in --tmpdir).
    try {
      Deno.kill(Number(Deno.readTextFileSync(`${dir}/tmp/pause.pid`).trim()), "SIGKILL");
    } catch { /* none */ }
    for (const pid of slirpdPids(dir)) {
      try {
        if (!gone(pid)) Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await run(["rm", "-rf", dir]);
    await run(["sh", "-c", "rmdir /tmp/sdt-e2etun.* 2>/dev/null; true"]);
  }
}

async function rootlesskitCase(rootless: boolean): Promise<void> {
  const user = rootless ? await testUser() : null;
  if (rootless && user === null) {
    console.log("skipped: no test user with /etc/subuid and /etc/subgid ranges");
    return;
  }
  if (!rootless && !subidRange("root")) {
    console.log("skipped: rootlesskit as root needs /etc/subuid and /etc/subgid ranges for root");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "sdt-rk" });
  const runtime = `${dir}/runtime`;
  await Deno.mkdir(runtime, { mode: 0o700 });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "hello-from-rootlesskit-child\n");
  const wrap = await stage(dir, user?.uid ?? null);
  await using w = await world(dir);
  const child = `${BUSYBOX} httpd -f -p 80 -h ${dir}/www & ` +
    `echo "hostlo: $(timeout 10 ${BUSYBOX} wget -q -O - http://10.0.2.2:${HOST_LO_PORT}/ 2>&1)"; ` +
    `echo "remote: $(timeout 10 ${BUSYBOX} wget -q -O - http://${HostNet.REMOTE4}:${REMOTE_PORT}/ 2>&1)"; ` +
    `echo child-ready; sleep 60`;
  const cmd = asUser(w.net.host.path, user, runtime)([
    "rootlesskit",
    `--state-dir=${dir}/state`,
    "--net=slirp4netns",
    `--slirp4netns-binary=${wrap}`,
    "--port-driver=slirp4netns",
    "--pidns", // the child's httpd and sleep end with it
    "-p",
    `127.0.0.1:${PUBLISHED + 1}:80/tcp`,
    "sh",
    "-c",
    child,
  ]);
  await using rk = new Background(cmd);
  try {
    await rk.waitFor((b) => b.stdout.includes("child-ready"), 60_000, "the rootlesskit child");
    assert.match(rk.stdout, /hostlo: hello-host-loopback/, rk.stderr);
    assert.match(rk.stdout, /remote: hello-remote/, rk.stderr);
    await until("the published port", async () => {
      const r = await w.net.host.exec([
        "curl",
        "-s",
        "--max-time",
        "2",
        `http://127.0.0.1:${PUBLISHED + 1}/`,
      ]);
      return r.stdout.trim() === "hello-from-rootlesskit-child";
    });
    assert.ok(slirpdPids(dir).length > 0, "rootlesskit ran slirpd");
    await rk.stop("SIGTERM");
    await until("slirpd's exit with rootlesskit", () => slirpdPids(dir).every(gone), 15_000);
  } finally {
    for (const pid of slirpdPids(dir)) {
      try {
        if (!gone(pid)) Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await run(["rm", "-rf", dir]);
    await run(["sh", "-c", "rmdir /tmp/sdt-e2etun.* 2>/dev/null; true"]);
  }
}

for (const rootless of [false, true]) {
  const mode = rootless ? "rootless" : "rootful";
  Deno.test({
    name: `e2e: podman --network slirp4netns with slirpd as network_cmd_path, ${mode}`,
    ignore: skip(SKIP, `e2e podman ${mode}`),
    fn: () => podmanCase(rootless),
  });
  Deno.test({
    name: `e2e: rootlesskit --net=slirp4netns --slirp4netns-binary=slirpd, ${mode}`,
    ignore: skip(SKIP, `e2e rootlesskit ${mode}`),
    fn: () => rootlesskitCase(rootless),
  });
}
