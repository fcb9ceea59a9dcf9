// The UDP hot path in-process: a real Stack (fake tap) routes guest datagrams to a real UDP
// echo socket on loopback and the replies back to the "guest". Checks that steady state
// allocates nothing (guest → host send, host → guest recv + frame, flow lookup and touch) and
// measures datagrams/s and new flows/s. Loopback in the test's own namespace only.

import assert from "node:assert/strict";
import { run } from "../support/harness.ts";

const STACK = new URL("../../stack/mod.ts", import.meta.url).href;
const PLAN = new URL("../../stack/base/netplan.ts", import.meta.url).href;
const POLLER = new URL("../../ffi/poller.ts", import.meta.url).href;
const SOCK = new URL("../../ffi/socket.ts", import.meta.url).href;

const CHILD = `
import { Stack } from "${STACK}";
import { defaultNetPlan } from "${PLAN}";
import { Poller } from "${POLLER}";
import { UdpSocket, parseAddr } from "${SOCK}";

class Tap {
  vnetLen = 10; offloaded = true; frames = 0; bytes = 0;
  read() { return 0; }
  write(_b, len) { this.frames++; this.bytes += len; return true; }
}
const plan = defaultNetPlan();
const tap = new Tap();
const poller = new Poller();
const stack = new Stack({
  plan, mtu: 1500, tap, poller, policy: () => true, log: () => {}, quiet: true,
  connectTimeoutMs: 1000, maxUdpFlows: 256,
});
const lo = parseAddr("127.0.0.1");
const echo = UdpSocket.open(4, { bindAddr: lo });
const port = echo.localPort();

// One guest frame: vnet header (10, zero), Ethernet, IPv4, UDP (checksum 0: none), payload.
const SIZE = Number(Deno.args[0] ?? "1000");
const f = new Uint8Array(10 + 14 + 20 + 8 + SIZE);
const e = 10;
f.set(plan.mac, e); f.set([2, 0, 0, 0, 0, 0x64], e + 6); f[e + 12] = 8; f[e + 13] = 0;
const ip = e + 14;
f[ip] = 0x45; f[ip + 2] = (20 + 8 + SIZE) >> 8; f[ip + 3] = (20 + 8 + SIZE) & 255;
f[ip + 8] = 64; f[ip + 9] = 17; f.set(plan.guest4, ip + 12); f.set(lo, ip + 16);
const u = ip + 20;
f[u + 2] = port >> 8; f[u + 3] = port & 255; f[u + 4] = (8 + SIZE) >> 8; f[u + 5] = (8 + SIZE) & 255;
function ipsum() {
  f[ip + 10] = f[ip + 11] = 0;
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += (f[ip + i] << 8) | f[ip + i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  s = ~s & 0xffff; f[ip + 10] = s >> 8; f[ip + 11] = s & 255;
}
function srcPort(p) { f[u] = p >> 8; f[u + 1] = p & 255; }
ipsum();
srcPort(5000);
const buf = new Uint8Array(70000);
const flowOf = () => stack.udp.flows.all()[0];
stack.input(f, f.length);
const flow = flowOf();
let moved = 0;
function round(n, control, keep) {
  for (let i = 0; i < n; i++) {
    stack.input(f, f.length);                 // guest -> host: gathered (one datagram)
    stack.udp.flush();                        // end of the tap batch: send()
    const k = echo.recvFrom(buf, 0, buf.length);
    if (k > 0) echo.sendTo(buf, 0, k, lo, echo.fromPort);
    flow.onEvents(1);                         // host -> guest: recv into tx.buf, one frame
    moved++;
    if (control) keep[i & 1] = { i };
  }
}
const keep = [];
round(20000, false, keep); round(20000, false, keep); round(20000, true, keep);
const hot = [];
for (let j = 0; j < 6; j++) {
  const h0 = Deno.memoryUsage().heapUsed;
  round(20000, false, keep);
  hot.push(Deno.memoryUsage().heapUsed - h0);
}
const h1 = Deno.memoryUsage().heapUsed;
round(20000, true, keep);
const control = Deno.memoryUsage().heapUsed - h1;
// Throughput: round trips per second through the stack and the kernel (loopback).
const frames0 = tap.frames;
let t = performance.now();
round(100000, false, keep);
const rtt = (performance.now() - t) / 100000;
const framesOut = tap.frames - frames0;
// New flows per second: each datagram from another source port (table bounded at 256).
t = performance.now();
for (let i = 0; i < 20000; i++) { srcPort(10000 + i); stack.input(f, f.length); }
const newFlow = (performance.now() - t) / 20000;
console.log(JSON.stringify({
  hot, control, framesOut, usPerRoundTrip: rtt * 1000, usPerNewFlow: newFlow * 1000,
  flows: stack.udp.flows.size, evicted: stack.udp.flows.evicted, stats: stack.udp.stats,
}));
stack.close(); echo.close(); poller.close();
`;

Deno.test("udp hot path: no allocation per datagram either way; throughput measured", async () => {
  const file = await Deno.makeTempFile({ suffix: ".js" });
  try {
    await Deno.writeTextFile(file, CHILD);
    const r = await run([
      Deno.execPath(),
      "run",
      "-A",
      "--v8-flags=--min-semi-space-size=64,--max-semi-space-size=64",
      file,
      "1000",
    ], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    console.log(
      `1000-byte datagrams: ${m.usPerRoundTrip.toFixed(2)} µs per guest→host→guest round trip` +
        ` (both directions through the stack and loopback), ${
          m.usPerNewFlow.toFixed(2)
        } µs per new flow (socket, connect, epoll, eviction)`,
    );
    assert.equal(m.framesOut, 100000, "every round trip produced one frame to the guest");
    assert.ok(m.control > 20000 * 16, `the control loop's allocations show: ${r.stdout}`);
    // Optimized, the path allocates nothing. V8 sometimes leaves it unoptimized for a whole
    // run (JIT timing); a double read there boxes one 16-byte heap number per datagram. Any
    // object made per datagram (a subarray, an array, a closure) is 32 bytes or more, so the
    // bound tells the two apart.
    const perDatagram = Math.min(...m.hot) / 20000;
    assert.ok(perDatagram < 20, `no object per datagram: ${perDatagram} B each: ${r.stdout}`);
    assert.ok(Math.max(...m.hot) < 20000 * 24, `no round allocates objects: ${r.stdout}`);
    assert.equal(m.flows, 256, "new flows stay within the bound");
    assert.ok(m.evicted >= 20000 - 256);
  } finally {
    await Deno.remove(file);
  }
});
