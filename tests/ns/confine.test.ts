// --enable-sandbox and --enable-seccomp confine the whole process, every thread, and every
// feature still works: TCP, UDP and DNS from the guest, an API-socket forward added after
// confinement, a /run/netns target that stays mounted on the host.
//
// slirpd runs in a test-made "host" namespace whose loopback carries the services (socat
// echo servers, the test resolver), in slirp4netns' form as podman runs it.

import assert from "node:assert/strict";
import {
  Background,
  makeNetns,
  needs,
  READY_LINE,
  run,
  skip,
  slirpdCommand,
} from "../support/harness.ts";

const SKIP = needs("socat", "dig", "getpcaps", "nsenter");
const RESOLVER = new URL("../support/dns_server.ts", import.meta.url).pathname;
const PROG = new URL("../support/confine_prog.ts", import.meta.url).pathname;
const NET_BIND_SERVICE = 1n << 10n;

Deno.test({
  name: "confine: a forbidden call fails on every thread; host files are gone",
  ignore: skip(needs("unshare"), "confine program"),
  fn: async () => {
    // Its own mount namespace: nothing it does could touch the test's, even if it failed.
    const r = await run(["unshare", "-m", Deno.execPath(), "run", "-A", PROG], {
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.deepEqual(out, {
      warnings: "none",
      unshare: "EPERM",
      unshareFromTokioThread: "EPERM",
      mount: "EPERM",
      setuid0: "EPERM",
      execve: "EPERM",
      "/root": "NotFound",
      "/home": "NotFound",
      "/usr": "NotFound",
      "/etc/hostname": "visible",
    });
  },
});

Deno.test({
  name: "confine: as root of a user namespace: what can be confined is, the rest is said",
  ignore: skip(needs("unshare"), "confine in a user namespace"),
  fn: async () => {
    const prog = async (flags: string) => {
      const r = await run(["unshare", flags, Deno.execPath(), "run", "-A", PROG], {
        timeoutMs: 30_000,
      });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    };
    // Owns its mount namespace: the tree works; only uid 0 is mapped, so no uid switch.
    const own = await prog("-Urm");
    assert.match(own.warnings, /uid 65534 is not mapped/);
    assert.doesNotMatch(own.warnings, /file system is not confined/);
    assert.equal(own["/root"], "NotFound");
    assert.equal(own.execve, "EPERM");
    // Does not own its mount namespace: no tree, said; seccomp still holds.
    const not = await prog("-Ur");
    assert.match(not.warnings, /file system is not confined: fsopen\(tmpfs\): EPERM/);
    assert.equal(not["/root"], "visible");
    assert.equal(not.execve, "EPERM");
    assert.equal(not.unshareFromTokioThread, "EPERM");
  },
});

Deno.test({
  name: "confine: podman's flags: every thread confined, guest TCP/UDP/DNS and API forwards work",
  ignore: skip(SKIP, "confine"),
  fn: async () => {
    await using host = await makeNetns("cfhost");
    await using guest = await makeNetns("cfguest");
    const dir = await Deno.makeTempDir({ prefix: "slirpd-confine-" });
    try {
      await Deno.writeTextFile(`${dir}/resolv.conf`, "nameserver 127.0.0.53\n");
      const specs = [{ addr: "127.0.0.53", mode: "answer", a: "192.0.2.77" }];
      await using resolver = host.spawn([
        Deno.execPath(),
        "run",
        "-A",
        RESOLVER,
        JSON.stringify(specs),
      ]);
      await resolver.waitFor((b) => b.stdout.includes("READY"), 20_000, "test resolver");
      await using tcpEcho = host.spawn([
        "socat",
        "TCP-LISTEN:7001,bind=127.0.0.1,fork,reuseaddr",
        "PIPE",
      ]);
      await using udpEcho = host.spawn(["socat", "UDP-RECVFROM:7002,bind=127.0.0.1,fork", "PIPE"]);
      await using guestSvc = guest.spawn(["socat", "TCP-LISTEN:8080,fork,reuseaddr", "PIPE"]);
      const api = `${dir}/api.sock`;
      const cmd = [
        ...host.prefix(),
        ...slirpdCommand(),
        "--mtu=65520",
        "--enable-sandbox",
        "--enable-seccomp",
        "--enable-ipv6",
        "-c",
        "--resolv-conf",
        `${dir}/resolv.conf`,
        "--api-socket",
        api,
        "--netns-type=path",
        guest.path,
        "tap0",
      ];
      await using slirpd = new Background(cmd);
      await slirpd.waitFor((b) => b.stderr.includes(READY_LINE), 30_000, "readiness");
      assert.doesNotMatch(slirpd.stderr, /\[!\] --enable-/, "nothing was left unconfined");
      const pid = Number(slirpd.stderr.match(/#(\d+) Slirpnetstack started/)![1]);

      // Every thread: uid nobody, no capability but CAP_NET_BIND_SERVICE, no_new_privs, filter.
      for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
        const s = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`);
        const field = (k: string) => s.match(new RegExp(`^${k}:\\s*(.*)$`, "m"))![1].trim();
        assert.match(field("Uid"), /^65534\s+65534\s+65534\s+65534$/, `thread ${task.name}`);
        for (const set of ["CapEff", "CapPrm", "CapAmb"]) {
          const v = BigInt(`0x${field(set)}`);
          assert.equal(v & ~NET_BIND_SERVICE, 0n, `thread ${task.name} ${set} ${field(set)}`);
        }
        assert.equal(field("NoNewPrivs"), "1");
        assert.equal(field("Seccomp"), "2");
      }
      assert.match((await run(["getpcaps", String(pid)])).stdout + "", /cap_net_bind_service=ep/);
      assert.doesNotMatch((await run(["getpcaps", String(pid)])).stdout, /cap_sys|cap_net_admin/);
      // Its root is the tree: /etc and /run, nothing else.
      const root = [...Deno.readDirSync(`/proc/${pid}/root`)].map((e) => e.name).sort();
      assert.deepEqual(root, ["etc", "run"]);

      // The guest's network still works: TCP and UDP to the host's loopback, DNS.
      const tcp = await guest.exec(["socat", "-T5", "-", "TCP:10.0.2.2:7001"], {
        stdin: "tcp-ok\n",
      });
      assert.equal(tcp.stdout, "tcp-ok\n", tcp.stderr);
      const udp = await guest.exec(["socat", "-T2", "-", "UDP:10.0.2.2:7002"], {
        stdin: "udp-ok\n",
      });
      assert.equal(udp.stdout, "udp-ok\n", udp.stderr);
      const dns = await guest.exec(["dig", "+short", "+time=3", "+tries=2", "@10.0.2.3", "x.test"]);
      assert.equal(dns.stdout.trim(), "192.0.2.77", dns.stderr);

      // A forward added through the API after confinement listens and carries data.
      const req = JSON.stringify({
        execute: "add_hostfwd",
        arguments: { proto: "tcp", host_addr: "127.0.0.1", host_port: 7003, guest_port: 8080 },
      });
      const add = await host.exec(["socat", "-", `UNIX-CONNECT:${api}`], { stdin: req });
      assert.match(add.stdout, /"id":\s*1/, add.stdout + add.stderr);
      const fwd = await host.exec(["socat", "-T5", "-", "TCP:127.0.0.1:7003"], {
        stdin: "fwd-ok\n",
      });
      assert.equal(fwd.stdout, "fwd-ok\n", fwd.stderr);

      assert.equal((await slirpd.stop("SIGTERM")).code, 0, slirpd.stderr);
      // The target path is still a mount point on the host (slirp4netns 1.2 lost it).
      const mounts = await Deno.readTextFile("/proc/self/mountinfo");
      assert.ok(mounts.includes(` ${guest.path} `), `${guest.path} still mounted`);
      void tcpEcho, udpEcho, guestSvc;
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
