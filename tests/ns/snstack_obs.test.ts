// slirpnetstack's observability flags (issue 11): -pcap (read back with tshark: every frame,
// both directions, sizes) with its size cap, and -m (/health, and slirpd's /metrics scraped
// while traffic flows: counters move by the amounts that crossed).

import assert from "node:assert/strict";
import { makeNetns, needs, run, skip, startSlirpd } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const GW_MAC = "52:55:0a:00:02:02";

Deno.test({
  name: "pcap: tshark reads every frame both ways with its size; -pcap-max-bytes stops it",
  ignore: skip(needs("tshark", "ping"), "pcap read back"),
  fn: async () => {
    await using guest = await makeNetns("pcap");
    const dir = await Deno.makeTempDir({ prefix: "sdt-pcap-" });
    try {
      const file = `${dir}/cap.pcap`;
      const s = await startSlirpd({ guest, args: ["--configure", "-pcap", file] });
      const link = await guest.must(["ip", "-o", "link", "show", "tun0"]);
      const mac = link.match(/link\/ether (\S+)/)?.[1];
      const r = await guest.exec([
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-s",
        "100",
        "-W",
        "2",
        "10.0.2.2",
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal((await s.stop()).code, 0, s.stderr);
      await s[Symbol.asyncDispose]();
      const t = await run([
        "tshark",
        "-r",
        file,
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "frame.len",
        "-e",
        "eth.src",
        "-e",
        "eth.dst",
        "-e",
        "icmp.type",
        "-e",
        "arp.opcode",
      ]);
      assert.equal(t.code, 0, t.stderr);
      const rows = t.stdout.trim().split("\n").map((l) => l.split(","));
      // An echo is 14 + 20 + 8 + 100 = 142 bytes each way; the guest's own MAC is the source
      // of the requests, the gateway's of the replies.
      const req = rows.filter((x) => x[3] === "8" && x[1] === mac && x[2] === GW_MAC);
      const rep = rows.filter((x) => x[3] === "0" && x[1] === GW_MAC && x[2] === mac);
      assert.equal(req.length, 3, t.stdout);
      assert.equal(rep.length, 3, t.stdout);
      for (const x of [...req, ...rep]) assert.equal(x[0], "142");
      // ARP (or NDP) made it in too: the link layer sees everything.
      assert.ok(rows.some((x) => x[4] === "1") && rows.some((x) => x[4] === "2"), t.stdout);

      // The cap: the file never grows past it, and slirpd says once that it stopped.
      const small = `${dir}/small.pcap`;
      const c = await startSlirpd({
        guest,
        args: ["--configure", "-pcap", small, "-pcap-max-bytes", "1000"],
      });
      await guest.exec(["ping", "-c", "10", "-i", "0.1", "-s", "100", "-W", "2", "10.0.2.2"]);
      await c.stop();
      await c[Symbol.asyncDispose]();
      const size = (await Deno.stat(small)).size;
      assert.ok(size <= 1000 && size > 24 + 16 + 142, `size ${size}`);
      assert.match(c.stderr, /\[!\] -pcap .*small\.pcap: stopped at \d+ bytes/);
      const back = await run(["tshark", "-r", small]);
      assert.equal(back.code, 0, back.stderr); // no torn record
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** One scrape: "name{labels}" → value. */
async function scrape(base: string): Promise<Map<string, number>> {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

Deno.test({
  name: "metrics: -m tcp://127.0.0.1:0 serves /health and /metrics; counters move by what crossed",
  ignore: skip(needs("python3"), "metrics"),
  fn: async () => {
    await using guest = await makeNetns("met");
    await using srv = guest.spawn(["python3", await fwdPeer(), "serve"]);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
    await using s = await startSlirpd({
      guest,
      // The tap path (a spliced loopback connection would not cross the link counters).
      args: [
        "--configure",
        "--forward-splice=never",
        "-m",
        "tcp://127.0.0.1:0",
        "-L",
        "127.0.0.1:0:10.0.2.100:9",
      ],
    });
    const m = s.stderr.match(/^\[ \] #\d+ Running metrics on 127\.0\.0\.1:(\d+)$/m);
    assert.ok(m, s.stderr);
    const lines = s.stderr.split("\n");
    assert.ok(
      lines.findIndex((l) => l.includes("Running metrics")) <
        lines.findIndex((l) => l.includes("Joininig netns")),
      "the metrics line comes first (slirpnetstack's order)",
    );
    const base = `http://127.0.0.1:${m[1]}`;
    const health = await fetch(`${base}/health`);
    assert.equal(await health.text(), "ok");
    const fwdPort = s.stdout.match(/Local listen tcp:\/\/127\.0\.0\.1:(\d+)/)?.[1];
    assert.ok(fwdPort, s.stdout);

    const before = await scrape(base);
    const N = 4_000_000;
    const up = run(["python3", await fwdPeer(), "upload", "127.0.0.1", fwdPort, String(N)], {
      timeoutMs: 60_000,
    });
    // Scrapes while the upload runs: the endpoint answers under load.
    let during = 0;
    let upDone = false;
    up.then(() => upDone = true);
    for (let i = 0; i < 50 && !upDone; i++) {
      await scrape(base);
      during++;
      await new Promise((r) => setTimeout(r, 20));
    }
    const u = await up;
    assert.equal(u.code, 0, u.stdout + u.stderr);
    assert.ok(during >= 1);
    // The sink answers "<bytes> <sha256>\n": 7 + 1 + 64 + 1 bytes back.
    const key = (dir: string) => `slirpd_forward_bytes_total{dir="local",direction="${dir}"}`;
    let after = await scrape(base);
    for (let i = 0; i < 50 && after.get(key("to_guest")) === before.get(key("to_guest")); i++) {
      await new Promise((r) => setTimeout(r, 100)); // counted when the connection ends
      after = await scrape(base);
    }
    const d = (k: string) => (after.get(k) ?? NaN) - (before.get(k) ?? 0);
    assert.equal(d(key("to_guest")), N);
    assert.equal(d(key("from_guest")), String(N).length + 1 + 64 + 1);
    // On the link: at least the payload plus one 54-byte header per 64 KiB, and not wildly
    // more (ACKs from the guest are the other direction).
    const outBytes = d('slirpd_bytes_total{direction="out"}');
    assert.ok(outBytes >= N && outBytes < N * 1.1, `bytes out ${outBytes}`);
    assert.ok(d('slirpd_frames_total{direction="in"}') >= 1);
    assert.equal(d('slirpd_tcp_connections_total{event="created"}'), 1);
    assert.equal(after.get('slirpd_forwards{dir="local",network="tcp"}'), 1);
    assert.ok((after.get("slirpd_resident_memory_bytes") ?? 0) > 1 << 20);
    for (const k of after.keys()) assert.doesNotMatch(k, /NaN/);
  },
});

Deno.test({
  name: "metrics: -m unix://PATH serves /health; an address in use exits 254",
  fn: async () => {
    await using guest = await makeNetns("metu");
    const dir = await Deno.makeTempDir({ prefix: "sdt-metrics-" });
    try {
      const path = `${dir}/m.sock`;
      await using s = await startSlirpd({ guest, args: ["--configure", `-m=unix://${path}`] });
      assert.match(s.stderr, new RegExp(`^\\[ \\] #\\d+ Running metrics on ${path}$`, "m"));
      const c = await Deno.connect({ transport: "unix", path });
      await c.write(
        new TextEncoder().encode("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
      );
      let text = "";
      const buf = new Uint8Array(4096);
      for (let i = 0; i < 100; i++) {
        const n = await c.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      c.close();
      assert.match(text, /^HTTP\/1\.1 200 [^]*\r\n\r\nok$/);
      assert.equal((await s.stop()).code, 0);
      assert.match(s.stderr, /Slirpnetstack closing\n(.*\n)*\[ \] #\d+ Stopping metrics\n/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (busy.addr as Deno.NetAddr).port;
    const f = await startSlirpd({
      guest,
      args: ["--configure", "-m", `tcp://127.0.0.1:${port}`],
      noWait: true,
    });
    const st = await f.stop("SIGCONT", 30_000); // (just wait)
    assert.equal(st.code, 254, f.stderr);
    assert.match(f.stderr, /^\[!\] Failed to start metrics: /m);
    await f[Symbol.asyncDispose]();
  },
});
