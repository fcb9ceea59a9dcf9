// dnssrv: label syntax, RFC 2782 ordering, and real Deno.resolveDns queries against a mock
// UDP DNS server (node:dgram) that answers SRV with compressed target names, A/AAAA, and
// NXDOMAIN, so the "Deno.resolveDns is enough" claim in SPEC.md is exercised, not assumed.

import assert from "node:assert/strict";
import { orderSrv, parseSrvLabel, resolveLabel, type SrvRecord } from "../../stack/forwards/srv.ts";
import { mockDns } from "../support/srv_dns.ts";

Deno.test("dnssrv: label syntax as upstream FullResolve/SplitHostPort leave it", () => {
  assert.deepEqual(parseSrvLabel("echo.example"), { kind: "plain", name: "echo.example" });
  assert.deepEqual(parseSrvLabel("tcp.echo.server@srv-8600"), {
    kind: "srv",
    srv: { query: "tcp.echo.server", host: "127.0.0.1", port: 8600, server: "127.0.0.1:8600" },
  });
  assert.deepEqual(parseSrvLabel("x@srv-10.0.0.53:53"), {
    kind: "srv",
    srv: { query: "x", host: "10.0.0.53", port: 53, server: "10.0.0.53:53" },
  });
  // After SplitHostPort, "[x@srv-[::1]:53]" in a forward spec arrives as "x@srv-[::1]:53".
  assert.deepEqual(parseSrvLabel("x@srv-[::1]:53"), {
    kind: "srv",
    srv: { query: "x", host: "::1", port: 53, server: "[::1]:53" },
  });
  assert.deepEqual(parseSrvLabel("x@srv-[127.0.0.1]:53"), {
    kind: "srv",
    srv: { query: "x", host: "127.0.0.1", port: 53, server: "[127.0.0.1]:53" },
  });
  assert.deepEqual(parseSrvLabel("x@a-53"), { kind: "error", reason: 'unknown dns type "a-53"' });
  for (const bad of ["x@srv-", "x@srv-abc", "x@srv-70000", "x@srv-::1:53", "@srv-53"]) {
    assert.equal(parseSrvLabel(bad).kind, "error", bad);
  }
});

Deno.test("dnssrv: RFC 2782 order: priority first, weighted shuffle inside", () => {
  const r = (priority: number, weight: number, target: string): SrvRecord => ({
    priority,
    weight,
    port: 1,
    target,
  });
  const recs = [r(20, 0, "c"), r(10, 1, "a1"), r(10, 3, "a3"), r(30, 0, "d")];
  // random() near 0 picks the first candidate in list order, near 1 the last.
  assert.deepEqual(orderSrv(recs, () => 0).map((x) => x.target), ["a1", "a3", "c", "d"]);
  assert.deepEqual(orderSrv(recs, () => 0.99).map((x) => x.target), ["a3", "a1", "c", "d"]);
  assert.equal(recs[0].target, "c"); // input untouched
  // Weight 3 vs 1: picked first about 3/4 of the time.
  let first3 = 0;
  for (let i = 0; i < 4000; i++) if (orderSrv(recs)[0].target === "a3") first3++;
  assert.ok(first3 > 2700 && first3 < 3300, `${first3}`);
  // All-zero weights keep answer order.
  assert.deepEqual(orderSrv([r(1, 0, "x"), r(1, 0, "y")]).map((x) => x.target), ["x", "y"]);
});

Deno.test("dnssrv: Deno.resolveDns parses SRV with compressed targets", async () => {
  const dns = await mockDns({
    "_echo._udp.example": { srv: [[10, 5, 7001, "host.example."], [5, 0, 7002, "b.example."]] },
  });
  try {
    const got = await Deno.resolveDns("_echo._udp.example", "SRV", {
      nameServer: { ipAddr: "127.0.0.1", port: dns.port },
    });
    // Answer order, targets decompressed and absolute (trailing dot).
    assert.deepEqual(got.map((x) => ({ ...x })), [
      { priority: 10, weight: 5, port: 7001, target: "host.example." },
      { priority: 5, weight: 0, port: 7002, target: "b.example." },
    ]);
  } finally {
    await dns.close();
  }
});

Deno.test("dnssrv: resolveLabel: SRV then target A at the same server", async () => {
  const dns = await mockDns({
    "tcp.echo.server": { srv: [[1, 1, 4321, "backend.test."]] },
    "backend.test": { a: ["127.0.0.9"], aaaa: [[0xfd, 0, ...new Array(13).fill(0), 9]] },
    "v6only.server": { srv: [[1, 1, 80, "v6.test."]] },
    "v6.test": { aaaa: [[0xfd, 0, ...new Array(13).fill(0), 7]] },
  });
  try {
    assert.deepEqual(await resolveLabel(`tcp.echo.server@srv-${dns.port}`), {
      ip: "127.0.0.9", // IPv4 preferred, like upstream simpleLookupHost
      port: 4321,
    });
    assert.deepEqual(await resolveLabel(`v6only.server@srv-127.0.0.1:${dns.port}`), {
      ip: "fd00::7",
      port: 80,
    });
  } finally {
    await dns.close();
  }
});

Deno.test("dnssrv: target unknown to the SRV server falls back to the system resolver", async () => {
  // upstream's mockdns answers only SRV and points at "localhost": /etc/hosts must win.
  const dns = await mockDns({ "udp.echo.server": { srv: [[1, 1, 5555, "localhost."]] } });
  try {
    const r = await resolveLabel(`udp.echo.server@srv-${dns.port}`);
    assert.equal(r.port, 5555);
    assert.ok(r.ip === "127.0.0.1" || r.ip === "::1", r.ip);
    // Plain labels: system resolver, no SRV.
    assert.ok(["127.0.0.1", "::1"].includes((await resolveLabel("localhost")).ip));
    assert.equal((await resolveLabel("localhost")).port, 0);
  } finally {
    await dns.close();
  }
});

Deno.test("dnssrv: failures carry upstream's message and respect the timeout", async () => {
  const dns = await mockDns({});
  try {
    await assert.rejects(
      resolveLabel(`nx.server@srv-${dns.port}`),
      { message: `failed to lookup SRV "nx.server" on "127.0.0.1:${dns.port}"` },
    );
  } finally {
    await dns.close();
  }
  // Nothing listens on port 1: without a signal Deno would wait ~15 s.
  const t0 = Date.now();
  await assert.rejects(
    resolveLabel("tcp.echo.server@srv-1", { timeoutMs: 300 }),
    { message: 'failed to lookup SRV "tcp.echo.server" on "127.0.0.1:1"' },
  );
  assert.ok(Date.now() - t0 < 2000);
  await assert.rejects(resolveLabel("x@tcp-1"), { message: 'unknown dns type "tcp-1"' });
});

Deno.test("dnssrv: IPv6 DNS server address", async () => {
  let dns;
  try {
    dns = await mockDns({ "s6": { srv: [[0, 0, 9, "t6."]] }, "t6": { a: ["10.1.2.3"] } }, "udp6");
  } catch {
    return; // no IPv6 loopback in this sandbox
  }
  try {
    assert.deepEqual(await resolveLabel(`s6@srv-[::1]:${dns.port}`), { ip: "10.1.2.3", port: 9 });
  } finally {
    await dns.close();
  }
});
