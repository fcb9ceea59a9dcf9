// `slirpd [OPTIONS] -- CMD [ARGS...]` (pasta's form): slirpd makes the namespace itself,
// configures it, runs CMD inside with stdio and exit status passed through, and exits with it.
//
// slirpd runs in an isolated "host" namespace (makeHostNet), so CMD's traffic reaches only the
// test's "remote" peer (192.0.2.2). The rootless case runs as uid 65534 (as rootless.test.ts).

import assert from "node:assert/strict";
import {
  Background,
  HostNet,
  makeHostNet,
  needs,
  run,
  skip,
  slirpdCommand,
  TAG_VAR,
  taggedProcesses,
} from "../support/harness.ts";

import { PERMISSION_FLAGS } from "../../scripts/permissions.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const SKIP = needs("unshare", "nsenter", "curl");

/** A one-line HTTP server in the remote namespace, answering "remote-body". */
function serve(net: HostNet): Background {
  return net.remote.spawn([
    Deno.execPath(),
    "eval",
    `Deno.serve({ hostname: "${HostNet.REMOTE4}", port: 8080, onListen() { console.log("up") } },
       () => new Response("remote-body\\n"));`,
  ]);
}

Deno.test({
  name: "command: -- CMD runs in a configured namespace; stdio and exit status pass through",
  ignore: skip(SKIP, "-- CMD"),
  fn: async () => {
    await using net = await makeHostNet();
    await using srv = serve(net);
    await srv.waitFor((b) => b.stdout.includes("up"), 20_000, "the remote service");
    const tag = `cmd-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
    const script = "cat; ip -4 -br addr show tun0; " +
      `curl -sS --max-time 10 http://${HostNet.REMOTE4}:8080/; echo to-stderr >&2; exit 42`;
    const r = await run(
      [
        ...net.host.prefix(),
        ...slirpdCommand(),
        "--enable-host", // 192.0.2.2 is on the host namespace's connected route
        "--",
        "sh",
        "-c",
        script,
      ],
      { stdin: "from-stdin\n", timeoutMs: 60_000, env: { [TAG_VAR]: tag } },
    );
    assert.equal(r.code, 42, `exit status passes through:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /^from-stdin\n/, "stdin reaches CMD, its stdout is slirpd's");
    assert.match(r.stdout, /tun0\s+UNKNOWN\s+10\.0\.2\.100\/24/);
    assert.match(r.stdout, /remote-body/, `--enable-host applies: ${r.stderr}`);
    assert.match(r.stderr, /to-stderr/);
    assert.doesNotMatch(r.stdout, /Slirpnetstack|Routing conn/, "slirpd keeps CMD's stdout");
    assert.deepEqual(taggedProcesses(tag), [], "nothing left running");
    const tmp = Deno.env.get("TMPDIR") || "/tmp";
    const dirs = [...Deno.readDirSync(tmp)].filter((e) => e.name.startsWith("slirpd-cmd-"));
    assert.deepEqual(dirs, [], "the FIFO's directory is removed");

    // Without --enable-host the firewall applies: the connection is refused (curl exit 7).
    const blocked = await run(
      [
        ...net.host.prefix(),
        ...slirpdCommand(),
        "--",
        "curl",
        "-sS",
        `http://${HostNet.REMOTE4}:8080/`,
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(blocked.code, 7, blocked.stderr);
  },
});

Deno.test({
  name: "command: CMD resolves names through slirpd's DNS at 10.0.2.3 (host resolver on loopback)",
  ignore: skip(SKIP, "-- CMD"),
  fn: async () => {
    await using net = await makeHostNet();
    await using srv = serve(net);
    await srv.waitFor((b) => b.stdout.includes("up"), 20_000, "the remote service");
    // The host's resolver listens on loopback, as systemd-resolved does: unreachable from
    // CMD's namespace, so CMD must ask slirpd's forwarder instead.
    await using resolver = net.host.spawn([
      Deno.execPath(),
      "run",
      "-A",
      `${REPO}tests/support/dns_server.ts`,
      JSON.stringify([{ addr: "127.0.0.53", mode: "answer", a: HostNet.REMOTE4 }]),
    ]);
    await resolver.waitFor((b) => b.stdout.includes("READY"), 20_000, "test resolver");
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/resolv.conf`, "nameserver 127.0.0.53\n");
      const r = await run([
        ...net.host.prefix(),
        ...slirpdCommand(),
        "--enable-host",
        "--resolv-conf",
        `${dir}/resolv.conf`,
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; curl -sS --max-time 10 http://service.test:8080/",
      ], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^nameserver 10\.0\.2\.3$/m);
      assert.match(r.stdout, /remote-body/);
      // The host's file is untouched (CMD's view is a bind mount in its own mount namespace).
      assert.doesNotMatch(await Deno.readTextFile("/etc/resolv.conf"), /10\.0\.2\.3/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "command: SIGTERM to slirpd reaches CMD; slirpd exits with CMD's status, nothing left",
  ignore: skip(SKIP, "-- CMD"),
  fn: async () => {
    await using net = await makeHostNet();
    await using s = new Background([
      ...net.host.prefix(),
      ...slirpdCommand(),
      "--",
      "sh",
      "-c",
      "trap 'echo got-term; exit 3' TERM; echo started; while :; do sleep 0.1; done",
    ]);
    await s.waitFor((b) => b.stdout.includes("started"), 30_000, "CMD's start");
    const st = await s.stop("SIGTERM", 10_000);
    assert.equal(st.code, 3, s.stdout + s.stderr);
    assert.match(s.stdout, /got-term/);
  },
});

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

Deno.test({
  name: "command: a terminal's Ctrl-C reaches CMD once (not again from slirpd); CMD's status",
  ignore: skip(SKIP ?? needs("script"), "-- CMD under a terminal"),
  fn: async () => {
    await using net = await makeHostNet();
    const dir = await Deno.makeTempDir();
    try {
      const started = `${dir}/started`;
      // CMD counts SIGINTs; `sleep & wait` so the trap runs at once.
      const cmd = `trap 'echo got-INT' INT; touch ${started}; sleep 3 & wait; sleep 1; exit 4`;
      // `exec`: script(1) runs this with $SHELL -c, and a dash there (CI has no SHELL) would
      // wait for slirpd in the same process group and itself die of the ^C (exit 130).
      const inner = "exec " +
        [...net.host.prefix(), ...slirpdCommand(), "--", "sh", "-c", cmd].map(q).join(" ");
      // script(1) runs it on a pty; the ^C byte we type becomes SIGINT to the foreground group.
      const typist = `for i in $(seq 300); do [ -e ${started} ] && break; sleep 0.05; done; ` +
        `sleep 0.3; printf '\\003'; sleep 6`;
      const r = await run(
        ["bash", "-c", `(${typist}) | script -qfec "$0" /dev/null`, inner],
        { timeoutMs: 60_000 },
      );
      assert.equal(r.code, 4, r.stdout + r.stderr);
      assert.equal(r.stdout.match(/got-INT/g)?.length, 1, r.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "command: usage errors name the fix",
  ignore: skip(SKIP, "-- CMD"),
  fn: async () => {
    const bad = [
      [["--netns", "/proc/1/ns/net", "--", "true"], /--netns.*-- CMD/],
      [["123", "--", "true"], /PID\|PATH.*-- CMD/],
      [["--"], /-- needs a command/],
    ] as const;
    for (const [args, re] of bad) {
      const r = await run([...slirpdCommand(), ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr.trim(), re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const nf = await run([...slirpdCommand(), "--", "no-such-command-sdt"], { timeoutMs: 60_000 });
    assert.equal(nf.code, 127, nf.stderr);
  },
});

// Rootless: uid 65534 runs `slirpd -- CMD`; slirpd makes a user namespace too.
const ROOTLESS_SKIP = needs("setpriv", "unshare", "nsenter", "ping") ??
  (Deno.uid() !== 0 ? "skipped: needs root to set up the unprivileged user" : null) ??
  (Deno.env.get("SLIRPD_BIN") ? "skipped: runs the sources, not SLIRPD_BIN" : null);

const ROOTLESS = String.raw`
set -eu
d=$(mktemp -d /tmp/sdt-rootless.XXXXXX)
mount -t tmpfs -o mode=0755 tmpfs "$d"
mknod -m 0666 "$d/tun" c 10 200
mount --bind "$d/tun" /dev/net/tun
cp "$DENO" "$d/deno"
mkdir "$d/src" "$d/deno-dir" "$d/tmp"
cp -r "$REPO"/*.ts "$REPO"/deno.json "$REPO"/daemon "$REPO"/ffi "$REPO"/stack "$REPO"/firewall "$d/src/"
chown -R 65534:65534 "$d/deno-dir" "$d/tmp"
export DENO_DIR="$d/deno-dir" HOME="$d/deno-dir" TMPDIR="$d/tmp"
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
  "$d/deno" run $PERMS "$d/src/main.ts" -- sh -c "$CMD"
`;

/** What the rootless CMD runs: who it is, its tap, the gateway, its resolv.conf. */
const ROOTLESS_CMD = 'echo "uid=$(id -u)"; ip -4 -br addr show tun0; ' +
  "ping -c 2 -i 0.2 -W 2 10.0.2.2 >/dev/null && echo ping-ok; " +
  'grep -q "^nameserver 10.0.2.3" /etc/resolv.conf && echo resolv-ok; exit 5';

Deno.test({
  name: "command: rootless -- CMD gets a user and network namespace of its own",
  ignore: skip(ROOTLESS_SKIP, "rootless -- CMD"),
  fn: async () => {
    const r = await run(
      ["unshare", "-m", "--propagation", "private", "bash", "-c", ROOTLESS],
      {
        env: {
          DENO: slirpdCommand()[0],
          REPO,
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          PERMS: PERMISSION_FLAGS.join(" "), // the compiled binary's: they suffice rootless too
          CMD: ROOTLESS_CMD,
        },
        timeoutMs: 90_000,
      },
    );
    try {
      assert.equal(r.code, 5, r.stdout + r.stderr);
      assert.match(r.stdout, /uid=0\n/, "CMD is root in its own user namespace");
      assert.match(r.stdout, /10\.0\.2\.100\/24/);
      assert.match(r.stdout, /ping-ok/);
      assert.match(r.stdout, /resolv-ok/, "CMD's resolv.conf names slirpd's DNS");
    } finally {
      for (const e of Deno.readDirSync("/tmp")) {
        if (e.name.startsWith("sdt-rootless.")) {
          await Deno.remove(`/tmp/${e.name}`, { recursive: true });
        }
      }
    }
  },
});
