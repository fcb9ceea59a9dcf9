// TCP option parsing corner cases (RFC 9293 §3.2, RFC 7323, RFC 2018) and the writers.

import assert from "node:assert/strict";
import {
  emitTcp,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_HLEN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  TcpOptions,
  TcpView,
  writeTcpOptions,
  writeTcpSack,
  writeTcpTimestamp,
} from "../../stack/wire/tcp.ts";

const opts = new TcpOptions();
const parse = (bytes: number[]) => opts.parse(new Uint8Array(bytes), 0, bytes.length);

Deno.test("tcp options: well-formed lists", () => {
  assert.ok(parse([]));
  assert.deepEqual([opts.mss, opts.wscale, opts.sackPermitted, opts.hasTimestamp, opts.sackCount], [
    0,
    -1,
    false,
    false,
    0,
  ]);
  // Linux SYN: MSS 1460, SACK-perm, TS, NOP, WS 7.
  assert.ok(parse([2, 4, 5, 0xb4, 4, 2, 8, 10, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 1, 3, 3, 7]));
  assert.equal(opts.mss, 1460);
  assert.ok(opts.sackPermitted);
  assert.ok(opts.hasTimestamp);
  assert.equal(opts.tsVal, 0xfffffffe, "unsigned");
  assert.equal(opts.tsEcr, 1);
  assert.equal(opts.wscale, 7);
  // Fields reset between parses of the same object.
  assert.ok(parse([1, 1, 1, 1]));
  assert.deepEqual([opts.mss, opts.wscale, opts.sackPermitted, opts.hasTimestamp], [
    0,
    -1,
    false,
    false,
  ]);
});

Deno.test("tcp options: NOP, EOL, unknown options, window scale clamp", () => {
  // Bytes after EOL are padding, even garbage.
  assert.ok(parse([2, 4, 0x05, 0xdc, 0, 99, 0, 1]));
  assert.equal(opts.mss, 1500);
  // EOL first: nothing.
  assert.ok(parse([0, 2, 4, 1, 1]));
  assert.equal(opts.mss, 0);
  // Unknown kinds with valid lengths are skipped (TCP-AO 29, experimental 254, MPTCP 30).
  assert.ok(parse([29, 4, 0xaa, 0xbb, 254, 6, 1, 2, 3, 4, 30, 3, 0, 3, 3, 9]));
  assert.equal(opts.wscale, 9);
  // RFC 7323 §2.3: shift > 14 is used as 14.
  assert.ok(parse([3, 3, 15, 1]));
  assert.equal(opts.wscale, 14);
  assert.ok(parse([3, 3, 255, 1]));
  assert.equal(opts.wscale, 14);
  // A trailing NOP is fine.
  assert.ok(parse([4, 2, 1]));
  assert.ok(opts.sackPermitted);
});

Deno.test("tcp options: malformed lists fail", () => {
  const bad: [string, number[]][] = [
    ["length 0", [2, 0, 1, 1]],
    ["length 1", [99, 1, 1, 1]],
    ["kind without length at the end", [1, 1, 1, 2]],
    ["unknown overruns", [99, 10, 1, 1]],
    ["MSS overruns", [2, 4, 5]],
    ["MSS length 3", [2, 3, 5, 1]],
    ["MSS length 5", [2, 5, 5, 0xb4, 0, 0, 0, 0]],
    ["WS length 4", [3, 4, 7, 0]],
    ["SACK-perm length 3", [4, 3, 0, 1]],
    ["TS length 8", [8, 8, 0, 0, 0, 1, 0, 0]],
    ["TS overruns", [8, 10, 0, 0, 0, 1, 0, 0]],
    ["SACK length 2", [5, 2, 1, 1]],
    ["SACK length 9", [5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]],
    ["SACK overruns", [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2]],
  ];
  for (const [what, bytes] of bad) assert.equal(parse(bytes), false, what);
});

Deno.test("tcp options: SACK blocks, unsigned, up to four", () => {
  const b: number[] = [1, 1, 5, 2 + 32];
  const edges = [0xfffffff0, 0x00000010, 1, 2, 3, 4, 0x80000000, 0x80000001];
  for (const e of edges) b.push(e >>> 24, (e >>> 16) & 255, (e >>> 8) & 255, e & 255);
  assert.ok(parse(b));
  assert.equal(opts.sackCount, 4);
  assert.deepEqual([...opts.sackBlocks], edges);
  // Writing them back gives the same bytes.
  const out = new Uint8Array(40);
  assert.equal(writeTcpSack(out, 0, opts.sackBlocks, 4), 36);
  assert.deepEqual([...out.subarray(0, 36)], b);
  assert.equal(writeTcpSack(out, 0, opts.sackBlocks, 0), 0);
  assert.equal(writeTcpSack(out, 0, opts.sackBlocks, 9), 36, "clamped to 4");
});

Deno.test("tcp options: writers produce what the parser reads", () => {
  const out = new Uint8Array(64);
  const cases = [
    { mss: 1460, wscale: 7, sackPermitted: true, hasTimestamp: true, tsVal: 0xdeadbeef, tsEcr: 0 },
    { mss: 1460, wscale: -1, sackPermitted: true, hasTimestamp: false, tsVal: 0, tsEcr: 0 },
    { mss: 536, wscale: 0, sackPermitted: false, hasTimestamp: true, tsVal: 1, tsEcr: 2 },
    { mss: 0, wscale: -1, sackPermitted: false, hasTimestamp: false, tsVal: 0, tsEcr: 0 },
    { mss: 65495, wscale: 14, sackPermitted: false, hasTimestamp: false, tsVal: 0, tsEcr: 0 },
  ];
  const lens = [20, 8, 20, 0, 8];
  cases.forEach((c, i) => {
    out.fill(0xee);
    const n = writeTcpOptions(out, 3, c);
    assert.equal(n, lens[i], JSON.stringify(c));
    assert.equal(n % 4, 0);
    assert.ok(opts.parse(out, 3, n));
    assert.deepEqual(
      {
        mss: opts.mss,
        wscale: opts.wscale,
        sackPermitted: opts.sackPermitted,
        hasTimestamp: opts.hasTimestamp,
        tsVal: opts.tsVal,
        tsEcr: opts.tsEcr,
      },
      c,
    );
  });
  // Timestamps of a data segment: NOP NOP TS, values at 4-byte aligned offsets.
  assert.equal(writeTcpTimestamp(out, 0, 0x01020304, 0xfffffffe), 12);
  assert.deepEqual([...out.subarray(0, 12)], [1, 1, 8, 10, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe]);
  // Timestamps plus three SACK blocks fill the 40 option bytes exactly.
  const blocks = new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const n = 12 + writeTcpSack(out, 12, blocks, 3);
  assert.equal(n, 40);
  assert.ok(opts.parse(out, 0, n));
  assert.ok(opts.hasTimestamp);
  assert.equal(opts.sackCount, 3);
  assert.deepEqual([...opts.sackBlocks.subarray(0, 6)], [1, 2, 3, 4, 5, 6]);
});

Deno.test("tcp view: header fields, flags and data offset", () => {
  const b = new Uint8Array(100);
  const ol = writeTcpTimestamp(b, 10 + TCP_HLEN, 5, 6);
  const hl = emitTcp(b, 10, 40000, 443, 0xffffffff, 0x80000000, TCP_ACK | TCP_PSH, 65535, ol);
  assert.equal(hl, 32);
  const v = new TcpView();
  assert.ok(v.parse(b, 10, 50));
  assert.deepEqual(
    [v.srcPort, v.dstPort, v.seq, v.ack, v.dataOffset, v.headerLen, v.flags, v.window, v.urgent],
    [40000, 443, 0xffffffff, 0x80000000, 8, 32, TCP_ACK | TCP_PSH, 65535, 0],
  );
  assert.equal(v.optionsOffset, 30);
  assert.equal(v.optionsLen, 12);
  assert.equal(v.payloadOffset, 42);
  assert.equal(v.payloadLen, 18);
  assert.deepEqual(
    [TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR],
    [1, 2, 4, 8, 16, 32, 64, 128],
  );
  // Header length beyond the segment, or below 20: parse fails.
  assert.ok(!v.parse(b, 10, 31));
  b[22] = 4 << 4;
  assert.ok(!v.parse(b, 10, 50));
  b[22] = 15 << 4; // 60-byte header
  assert.ok(v.parse(b, 10, 60));
  assert.equal(v.optionsLen, 40);
});
