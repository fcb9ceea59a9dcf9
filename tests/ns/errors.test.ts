// First-run errors name their remedy, in one line: what a new user meets trying slirpd.

import assert from "node:assert/strict";
import { makeNetns, needs, run, skip, slirpdCommand } from "../support/harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const ROOT = Deno.uid() !== 0 ? "skipped: needs root" : null;

/** stderr without slirpnetstack's progress lines ("[.] Joininig netns ..."): the error lines. */
function errorLines(stderr: string): string[] {
  return stderr.trim().split("\n").filter((l) => !l.startsWith("[.] "));
}

async function fails(args: string[], re: RegExp, code = 1, wrap: string[] = []): Promise<void> {
  const r = await run([...wrap, ...slirpdCommand(), ...args], { timeoutMs: 60_000 });
  assert.equal(r.code, code, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
  const lines = errorLines(r.stderr);
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0], re);
}

Deno.test({
  name: "errors: a missing target, tap or namespace says what to do",
  ignore: skip(ROOT, "errors"),
  fn: async () => {
    await fails([], /missing --netns PATH.*-- CMD/, 2);
    await using ns = await makeNetns("err");
    await fails(
      ["--netns", ns.path],
      /--interface tun0: no such tap in the namespace .*: -c \(--configure\) creates it/,
    );
    await fails(
      ["--netns", "/run/netns/sdt-no-such-ns", "-c"],
      /--netns \/run\/netns\/sdt-no-such-ns: no such network namespace .*ip netns add/,
    );
    await fails(["--netns", "/tmp", "-c"], /--netns \/tmp: not a network namespace/);
    await fails(["999999999"], /PID 999999999: no such process/);
  },
});

Deno.test({
  name: "errors: no /dev/net/tun says modprobe tun",
  ignore: skip(ROOT ?? needs("unshare"), "errors"),
  fn: async () => {
    await using ns = await makeNetns("err");
    const hide = [
      "unshare",
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount -t tmpfs tmpfs /dev/net && exec "$@"',
      "sh",
    ];
    await fails(["--netns", ns.path, "-c"], /\/dev\/net\/tun.*modprobe tun/, 1, hide);
  },
});

Deno.test({
  name: "errors: an unprivileged user and a root-owned namespace: run as root or use -- CMD",
  ignore: skip(ROOT ?? needs("setpriv"), "errors"),
  fn: async () => {
    await using ns = await makeNetns("err");
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o755);
      const src = `${dir}/src`;
      await Deno.mkdir(src);
      for (const d of ["main.ts", "deno.json", "daemon", "ffi", "stack", "firewall"]) {
        const r = await run(["cp", "-r", `${REPO}${d}`, `${src}/`]);
        assert.equal(r.code, 0, r.stderr);
      }
      await run(["chmod", "-R", "a+rX", dir]);
      const dd = `${dir}/deno-dir`;
      await Deno.mkdir(dd);
      await Deno.chown(dd, 65534, 65534);
      const r = await run([
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "env",
        `DENO_DIR=${dd}`,
        `HOME=${dd}`,
        Deno.execPath(),
        "run",
        "--allow-all",
        `${src}/main.ts`,
        "--netns",
        ns.path,
        "-c",
      ], { timeoutMs: 60_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        errorLines(r.stderr).join("\n"),
        /^slirpd: --netns \S+: not permitted .*run slirpd as root.*-- CMD/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "errors: an unprivileged user without access to /dev/net/tun is told how to get it",
  ignore: skip(ROOT ?? needs("setpriv", "unshare", "nsenter"), "errors"),
  fn: async () => {
    const script = String.raw`
set -eu
d=$(mktemp -d /tmp/sdt-errtun.XXXXXX)
mount -t tmpfs -o mode=0755 tmpfs "$d"
mknod -m 0600 "$d/tun" c 10 200
mount --bind "$d/tun" /dev/net/tun
mkdir "$d/src" "$d/deno-dir"
cp -r "$REPO"/main.ts "$REPO"/deno.json "$REPO"/daemon "$REPO"/ffi "$REPO"/stack "$REPO"/firewall "$d/src/"
cp "$DENO" "$d/deno"
chown -R 65534:65534 "$d/deno-dir"
export DENO_DIR="$d/deno-dir" HOME="$d/deno-dir"
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
  "$d/deno" run --allow-all "$d/src/main.ts" -- true
`;
    const r = await run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], {
      env: { DENO: Deno.execPath(), REPO, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      timeoutMs: 60_000,
    });
    try {
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const lines = errorLines(r.stderr);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /\/dev\/net\/tun.*chmod 0666 \/dev\/net\/tun/);
    } finally {
      for (const e of Deno.readDirSync("/tmp")) {
        if (e.name.startsWith("sdt-errtun.")) {
          await Deno.remove(`/tmp/${e.name}`, { recursive: true });
        }
      }
    }
  },
});
