// PcapWriter: files read back by tshark/capinfos when installed (the reference reader),
// and always by a small parser here, so the test means something on a bare machine too.

import assert from "node:assert/strict";
import {
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW,
  PCAP_GLOBAL_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  PcapWriter,
  type SyncSink,
} from "../../stack/link/pcap.ts";

/** An ARP who-has 10.0.2.2 from 10.0.2.100 (42 bytes, Ethernet). */
function arpFrame(): Uint8Array {
  return Uint8Array.from([
    ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06],
    ...[0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1, 10, 0, 2, 100],
    ...[0, 0, 0, 0, 0, 0, 10, 0, 2, 2],
  ]);
}

/** An IPv4/UDP packet 10.0.2.100:5353 -> 10.0.2.2:53 with `payload` bytes of 'x'. */
function udpPacket(payload: number): Uint8Array {
  const b = new Uint8Array(28 + payload);
  const dv = new DataView(b.buffer);
  b.set([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2]);
  dv.setUint16(2, b.length);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += dv.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  dv.setUint16(10, ~sum & 0xffff);
  dv.setUint16(20, 5353);
  dv.setUint16(22, 53);
  dv.setUint16(24, 8 + payload);
  b.fill(0x78, 28);
  return b;
}

function ethernet(ip: Uint8Array): Uint8Array {
  const b = new Uint8Array(14 + ip.length);
  b.set([0x70, 0x71, 0xaa, 0x4b, 0x29, 0xaa, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
  b.set(ip, 14);
  return b;
}

interface Rec {
  sec: number;
  usec: number;
  incl: number;
  orig: number;
  data: Uint8Array;
}

function parsePcap(file: Uint8Array): { linkType: number; snapLen: number; recs: Rec[] } {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  assert.equal(dv.getUint32(0, true), 0xa1b2c3d4);
  assert.equal(dv.getUint16(4, true), 2);
  assert.equal(dv.getUint16(6, true), 4);
  const recs: Rec[] = [];
  let o = PCAP_GLOBAL_HEADER_LEN;
  while (o < file.length) {
    assert.ok(o + PCAP_RECORD_HEADER_LEN <= file.length, "torn record header");
    const incl = dv.getUint32(o + 8, true);
    assert.ok(o + 16 + incl <= file.length, "torn record body");
    recs.push({
      sec: dv.getUint32(o, true),
      usec: dv.getUint32(o + 4, true),
      incl,
      orig: dv.getUint32(o + 12, true),
      data: file.subarray(o + 16, o + 16 + incl),
    });
    o += 16 + incl;
  }
  return { linkType: dv.getUint32(20, true), snapLen: dv.getUint32(16, true), recs };
}

async function have(cmd: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args: ["-v"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const err = new TextDecoder().decode(r.stderr);
  assert.ok(r.success, `${cmd} ${args.join(" ")} failed: ${err}`);
  return new TextDecoder().decode(r.stdout);
}

const HAVE_TSHARK = await have("tshark");

Deno.test("pcap: Ethernet frames round-trip, tshark decodes ARP and UDP", async () => {
  const path = await Deno.makeTempFile({ suffix: ".pcap" });
  try {
    const w = PcapWriter.open(path, { linkType: LINKTYPE_ETHERNET, snapLen: 1514 });
    const arp = arpFrame(), udp = ethernet(udpPacket(10));
    assert.ok(w.write(arp, 0, arp.length, 1_700_000_000_123_456));
    // Offset/length form: the frame sits in a larger receive buffer.
    const big = new Uint8Array(4 + udp.length + 7);
    big.set(udp, 4);
    assert.ok(w.write(big, 4, udp.length, 1_700_000_001_000_001));
    w.close();
    w.close();
    assert.equal(w.packets, 2);
    const file = await Deno.readFile(path);
    assert.equal(w.bytes, file.length);
    const p = parsePcap(file);
    assert.equal(p.linkType, LINKTYPE_ETHERNET);
    assert.equal(p.snapLen, 1514);
    assert.deepEqual(p.recs.map((r) => [r.sec, r.usec, r.incl, r.orig]), [
      [1_700_000_000, 123_456, 42, 42],
      [1_700_000_001, 1, 52, 52],
    ]);
    assert.deepEqual(p.recs[1].data, udp);
    if (HAVE_TSHARK) {
      const out = await run("tshark", [
        "-r",
        path,
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "_ws.col.Protocol",
        "-e",
        "udp.dstport",
      ]);
      assert.deepEqual(out.trim().split("\n").map((l) => l.split("\t")), [
        ["42", "ARP", ""],
        ["52", "DNS", "53"],
      ]);
      const info = await run("capinfos", ["-E", "-c", path]);
      assert.match(info, /Ethernet/);
      assert.match(info, /Number of packets:\s+2/);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("pcap: LINKTYPE_RAW with snaplen truncation keeps orig_len", async () => {
  const path = await Deno.makeTempFile({ suffix: ".pcap" });
  try {
    const w = PcapWriter.open(path, { linkType: LINKTYPE_RAW, snapLen: 64 });
    const small = udpPacket(4), large = udpPacket(1000);
    assert.ok(w.write(small));
    assert.ok(w.write(large));
    w.close();
    const p = parsePcap(await Deno.readFile(path));
    assert.equal(p.linkType, 101);
    assert.deepEqual(p.recs.map((r) => [r.incl, r.orig]), [[32, 32], [64, 1028]]);
    assert.deepEqual(p.recs[1].data, large.subarray(0, 64));
    // nowMicros(): the default timestamp is today's wall clock, not zero.
    assert.ok(Math.abs(p.recs[0].sec - Date.now() / 1000) < 60);
    if (HAVE_TSHARK) {
      const out = await run("tshark", [
        "-r",
        path,
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
        "-e",
        "ip.src",
      ]);
      assert.deepEqual(out.trim().split("\n").map((l) => l.split("\t")), [
        ["32", "32", "10.0.2.100"],
        ["1028", "64", "10.0.2.100"],
      ]);
      assert.match(await run("capinfos", ["-E", path]), /Raw IP/);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("pcap: max-bytes cap stops before the crossing record and reports once", async () => {
  const path = await Deno.makeTempFile({ suffix: ".pcap" });
  try {
    const stops: unknown[] = [];
    const pkt = udpPacket(72); // 100-byte packet, 116 bytes with its record header
    const w = PcapWriter.open(path, {
      linkType: LINKTYPE_RAW,
      maxBytes: 24 + 116 * 3 + 50,
      onStop: (s) => stops.push(s),
    });
    let ok = 0;
    for (let i = 0; i < 10; i++) if (w.write(pkt)) ok++;
    w.close();
    assert.equal(ok, 3);
    assert.deepEqual(stops, [{ reason: "cap", bytes: 24 + 116 * 3, packets: 3 }]);
    assert.ok(w.stopped);
    const file = await Deno.readFile(path);
    assert.equal(file.length, 24 + 116 * 3);
    assert.equal(parsePcap(file).recs.length, 3);
    if (HAVE_TSHARK) {
      assert.match(await run("capinfos", ["-c", path]), /Number of packets:\s+3/);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("pcap: truncates an existing longer file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".pcap" });
  try {
    await Deno.writeFile(path, new Uint8Array(10_000).fill(0xee));
    const w = PcapWriter.open(path, { linkType: LINKTYPE_RAW });
    w.write(udpPacket(1));
    w.close();
    assert.equal((await Deno.readFile(path)).length, 24 + 16 + 29);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("pcap: short writes are completed, write errors stop once", () => {
  const chunks: Uint8Array[] = [];
  let failAfter = Infinity;
  const sink: SyncSink = {
    // At most 5 bytes per call, like a pipe under pressure.
    writeSync(p) {
      if (chunks.length >= failAfter) throw new Error("ENOSPC");
      const k = Math.min(5, p.length);
      chunks.push(p.slice(0, k));
      return k;
    },
    close() {},
  };
  const stops: string[] = [];
  const w = new PcapWriter(sink, { linkType: LINKTYPE_RAW, onStop: (s) => stops.push(s.reason) });
  assert.ok(w.write(udpPacket(3)));
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) all.set(c, (o += c.length) - c.length);
  assert.equal(parsePcap(all).recs[0].orig, 31);
  failAfter = chunks.length + 1;
  assert.equal(w.write(udpPacket(3)), false);
  assert.equal(w.write(udpPacket(3)), false);
  assert.deepEqual(stops, ["error"]);
  assert.equal(w.packets, 1);
});

Deno.test("pcap: a cap smaller than the header writes nothing", () => {
  let wrote = 0;
  const stops: number[] = [];
  const w = new PcapWriter({ writeSync: (p) => (wrote += p.length, p.length), close() {} }, {
    linkType: LINKTYPE_RAW,
    maxBytes: 10,
    onStop: (s) => stops.push(s.bytes),
  });
  assert.equal(w.write(udpPacket(1)), false);
  assert.equal(wrote, 0);
  assert.deepEqual(stops, [0]);
  assert.throws(() =>
    new PcapWriter({ writeSync: () => 0, close() {} }, {
      linkType: 1,
      snapLen: 0,
    })
  );
});
