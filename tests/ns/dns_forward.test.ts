// The DNS forwarder at 10.0.2.3 / fd00::3 with real guest tools (dig, getent) against test
// resolvers that listen only on the isolated host namespace's loopback (127.0.0.53, ::1...),
// given to slirpd with --resolv-conf. Nothing leaves the test's namespaces.
//
// This file is also the test resolver: `deno run dns_forward.test.ts SPEC_JSON` (Deno.test is
// a no-op under `deno run`) serves UDP and TCP on each address of the spec:
//   answer  A/AAAA records with `a` (and an EDNS OPT with payload size 4321 and option 65001
//           "slrp" when the query had one), or TC=1 and no answer for names starting "tc.";
//   silent  reads queries and never answers.
// It prints "Q <addr> <udp|tcp> <name>" for every query and "READY" once all are bound.

import assert from "node:assert/strict";
import {
  Background,
  type CmdResult,
  makeNetns,
  needs,
  type Netns,
  skip,
  type Slirpd,
  startSlirpd,
} from "../support/harness.ts";
import type { ServerSpec } from "../support/dns_server.ts";

const DIG = needs("dig");
const RESOLVER = new URL("../support/dns_server.ts", import.meta.url).pathname;

// ---------------------------------------------------------------- the tests

/** A host namespace with the test resolvers, a guest, and slirpd between them. */
class DnsEnv implements AsyncDisposable {
  host: Netns | null = null;
  guest: Netns | null = null;
  resolver: Background | null = null;
  slirpd: Slirpd | null = null;
  readonly dir = Deno.makeTempDirSync({ prefix: "slirpd-dns-" });
  readonly resolvConf = `${this.dir}/resolv.conf`;

  static async make(specs: ServerSpec[], resolv: string, args: string[] = []): Promise<DnsEnv> {
    const env = new DnsEnv();
    try {
      Deno.writeTextFileSync(env.resolvConf, resolv);
      env.host = await makeNetns("dnsh");
      env.guest = await makeNetns("dnsg");
      env.resolver = env.host.spawn([
        Deno.execPath(),
        "run",
        "-A",
        RESOLVER,
        JSON.stringify(specs),
      ]);
      await env.resolver.waitFor((b) => b.stdout.includes("READY"), 20_000, "test resolver");
      env.slirpd = await startSlirpd({
        guest: env.guest,
        hostNs: env.host,
        args: ["--configure", "--resolv-conf", env.resolvConf, ...args],
      });
      return env;
    } catch (e) {
      await env[Symbol.asyncDispose]();
      throw e;
    }
  }

  /** Rewrites resolv.conf atomically (write + rename), as resolvconf/NetworkManager do. */
  replaceResolvConf(text: string): void {
    Deno.writeTextFileSync(`${this.resolvConf}.new`, text);
    Deno.renameSync(`${this.resolvConf}.new`, this.resolvConf);
  }

  dig(...args: string[]): Promise<CmdResult> {
    return this.guest!.exec(["dig", "+time=3", "+tries=1", ...args], { timeoutMs: 20_000 });
  }

  /** The queries the resolvers saw, as "Q addr proto name" lines. */
  queries(): string[] {
    return (this.resolver?.stdout ?? "").split("\n").filter((l) => l.startsWith("Q "));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.slirpd?.stop();
    await this.resolver?.[Symbol.asyncDispose]();
    await this.guest?.[Symbol.asyncDispose]();
    await this.host?.[Symbol.asyncDispose]();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

function answerOf(r: CmdResult): string {
  return `${r.stdout}${r.stderr}`;
}

Deno.test({
  name: "dns: dig and getent resolve through 10.0.2.3 / fd00::3 via a loopback-only upstream",
  ignore: skip(DIG, "dns forward"),
  fn: async () => {
    await using env = await DnsEnv.make(
      [{ addr: "127.0.0.53", mode: "answer", a: "192.0.2.53" }],
      "# systemd-resolved style\nnameserver 127.0.0.53\noptions edns0 trust-ad\n",
    );
    for (const server of ["@10.0.2.3", "@fd00::3"]) {
      const r = await env.dig(server, "example.test", "A");
      assert.equal(r.code, 0, answerOf(r));
      assert.match(r.stdout, /status: NOERROR/);
      assert.match(r.stdout, /example\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.53/);
      // The upstream's EDNS OPT record arrives as it was sent: payload size and option.
      assert.match(r.stdout, /udp: 4321/);
      assert.match(r.stdout, /OPT=65001: 73 6c 72 70/);
    }
    // An answer larger than the guest MTU arrives whole (as IP fragments), not cut.
    const big = await env.dig("+bufsize=4096", "@10.0.2.3", "big.example.test", "A");
    assert.match(big.stdout, /ANSWER: 120,/, answerOf(big));
    assert.match(big.stdout, /flags: qr aa rd ra;/, "no TC");
    assert.match(big.stdout, /MSG SIZE\s+rcvd: (19|2\d)\d\d/);
    // A truncated answer passes unchanged (TC set, no records) ...
    const tc = await env.dig("+ignore", "@10.0.2.3", "tc.example.test", "A");
    assert.equal(tc.code, 0, answerOf(tc));
    assert.match(tc.stdout, /flags: qr aa tc rd ra;/);
    assert.match(tc.stdout, /ANSWER: 0,/);
    // ... so dig retries over TCP, which reaches the same upstream through slirpd.
    const full = await env.dig("@10.0.2.3", "tc.example.test", "A");
    assert.equal(full.code, 0, answerOf(full));
    assert.match(full.stdout, /tc\.example\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.53/);
    assert.ok(env.queries().includes("Q 127.0.0.53 tcp tc.example.test."), env.queries().join());
    const tcp6 = await env.dig("+tcp", "@fd00::3", "v6tcp.test", "A");
    assert.match(tcp6.stdout, /v6tcp\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.53/, answerOf(tcp6));
    // The guest's own stub resolver (glibc) with 10.0.2.3 in its resolv.conf.
    const guestConf = `${env.dir}/guest-resolv.conf`;
    Deno.writeTextFileSync(guestConf, "nameserver 10.0.2.3\n");
    const g = await env.guest!.exec([
      "unshare",
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount --bind ${guestConf} /etc/resolv.conf && getent hosts getent.test`,
    ]);
    assert.equal(g.code, 0, answerOf(g));
    assert.match(g.stdout, /^192\.0\.2\.53\s+getent\.test/m);
  },
});

Deno.test({
  name: "dns: a silent first server costs one timeout; the next (IPv6) one answers and is kept",
  ignore: skip(DIG, "dns failover"),
  fn: async () => {
    await using env = await DnsEnv.make(
      [
        { addr: "127.0.0.54", mode: "silent" },
        { addr: "::1", mode: "answer", a: "192.0.2.66" },
      ],
      "nameserver 127.0.0.54\nnameserver ::1\n",
    );
    let t0 = performance.now();
    const r = await env.dig("+time=6", "@10.0.2.3", "first.test", "A");
    const slow = performance.now() - t0;
    assert.equal(r.code, 0, answerOf(r));
    assert.match(r.stdout, /first\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.66/);
    const q = env.queries();
    assert.ok(q.includes("Q 127.0.0.54 udp first.test."), q.join());
    assert.ok(q.includes("Q ::1 udp first.test."), q.join());
    assert.ok(slow >= 1500 && slow < 5000, `answered after ${slow} ms (one 2 s timeout)`);
    // The server that answered is asked first from now on: no timeout any more.
    t0 = performance.now();
    const r2 = await env.dig("@10.0.2.3", "second.test", "A");
    const fast = performance.now() - t0;
    assert.match(r2.stdout, /192\.0\.2\.66/, answerOf(r2));
    assert.ok(fast < 1500, `second query took ${fast} ms`);
    assert.ok(!env.queries().includes("Q 127.0.0.54 udp second.test."));
  },
});

Deno.test({
  name: "dns: a changed resolv.conf is picked up; a refusing server is skipped at once",
  ignore: skip(DIG, "dns resolv.conf change"),
  fn: async () => {
    await using env = await DnsEnv.make(
      [
        { addr: "127.0.0.53", mode: "answer", a: "192.0.2.53" },
        { addr: "127.0.0.56", mode: "answer", a: "192.0.2.56" },
      ],
      "nameserver 127.0.0.53\n",
    );
    const before = await env.dig("@10.0.2.3", "change.test", "A");
    assert.match(before.stdout, /192\.0\.2\.53/, answerOf(before));
    // Nothing listens on 127.0.0.55: its ICMP port unreachable moves on to .56 at once.
    env.replaceResolvConf("nameserver 127.0.0.55\nnameserver 127.0.0.56\n");
    let last = "";
    let took = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const t0 = performance.now();
      const r = await env.dig("@10.0.2.3", `change${i}.test`, "A");
      took = performance.now() - t0;
      last = answerOf(r);
      if (/192\.0\.2\.56/.test(r.stdout)) break;
    }
    assert.match(last, /192\.0\.2\.56/, "the new resolv.conf was not used");
    assert.ok(took < 1500, `a refused server must not cost a timeout (${took} ms)`);
  },
});

Deno.test({
  name: "dns: --disable-dns leaves 10.0.2.3 silent",
  ignore: skip(DIG, "dns disabled"),
  fn: async () => {
    await using env = await DnsEnv.make(
      [{ addr: "127.0.0.53", mode: "answer", a: "192.0.2.53" }],
      "nameserver 127.0.0.53\n",
      ["--disable-dns"],
    );
    const r = await env.dig("+time=1", "@10.0.2.3", "off.test", "A");
    assert.notEqual(r.code, 0, answerOf(r));
    assert.doesNotMatch(r.stdout, /192\.0\.2\.53/);
    const t = await env.dig("+time=1", "+tcp", "@10.0.2.3", "off.test", "A");
    assert.notEqual(t.code, 0, answerOf(t));
    assert.deepEqual(env.queries(), []);
  },
});

// Sends `data` (hex) over TCP to ADDR:53 from the guest; prints how the connection ended.
const RAW_TCP = String.raw`
import socket, sys
s = socket.create_connection((sys.argv[1], 53), timeout=5)
s.sendall(bytes.fromhex(sys.argv[2]))
try:
    d = s.recv(100)
    print("eof" if not d else "data " + str(len(d)))
except ConnectionResetError:
    print("reset")
except socket.timeout:
    print("timeout")
`;

Deno.test({
  name: "dns: the TCP path to 10.0.2.3:53 takes DNS messages only (else RST)",
  ignore: skip(DIG ?? needs("python3"), "dns tcp framing"),
  fn: async () => {
    await using env = await DnsEnv.make(
      [{ addr: "127.0.0.53", mode: "answer", a: "192.0.2.53" }],
      "nameserver 127.0.0.53\n",
    );
    const http = new TextEncoder().encode("GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    // Not DNS: "GE" would be the length of an 18245-byte message whose header ("T / HTTP")
    // has Z and RCODE set and 21588 questions.
    const r = await env.guest!.exec(["python3", "-c", RAW_TCP, "10.0.2.3", hex(http)], {
      timeoutMs: 20_000,
    });
    assert.equal(r.stdout.trim(), "reset", r.stdout + r.stderr);
    // A message shorter than a DNS header.
    const short = await env.guest!.exec(["python3", "-c", RAW_TCP, "10.0.2.3", "0004abcd0000"], {
      timeoutMs: 20_000,
    });
    assert.equal(short.stdout.trim(), "reset", short.stdout + short.stderr);
    // Real DNS over TCP still works.
    const t = await env.dig("+tcp", "@10.0.2.3", "framed.test", "A");
    assert.match(t.stdout, /framed\.test\.\s+60\s+IN\s+A\s+192\.0\.2\.53/, answerOf(t));
  },
});
