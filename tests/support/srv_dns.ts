// A mock UDP DNS server (node:dgram) for SRV tests: answers SRV with compressed target names,
// A/AAAA, and NXDOMAIN for names it does not know. `zones` is read at every query, so a test
// may change an answer while the server runs. Runs in the test process; bounded by close().

import dgram from "node:dgram";

export interface Zone {
  srv?: [number, number, number, string][];
  a?: string[];
  aaaa?: number[][];
}

const enc = new TextEncoder();

/** Encodes a name, pointing into the question (offset 12) for a shared suffix. */
function encodeName(name: string, qname: string): number[] {
  const labels = name.replace(/\.$/, "").split(".");
  const qlabels = qname.replace(/\.$/, "").split(".");
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    const suffix = labels.slice(i).join(".");
    for (let k = 0; k < qlabels.length; k++) {
      if (qlabels.slice(k).join(".").toLowerCase() === suffix.toLowerCase()) {
        let off = 12;
        for (let m = 0; m < k; m++) off += 1 + qlabels[m].length;
        return [...out, 0xc0 | (off >> 8), off & 0xff];
      }
    }
    out.push(labels[i].length, ...enc.encode(labels[i]));
  }
  return [...out, 0];
}

export async function mockDns(zones: Record<string, Zone>, family: "udp4" | "udp6" = "udp4") {
  const sock = dgram.createSocket(family);
  let queries = 0;
  sock.on("message", (msg: Uint8Array, rinfo: { port: number; address: string }) => {
    queries++;
    const labels: string[] = [];
    let o = 12;
    while (msg[o] !== 0) {
      labels.push(new TextDecoder().decode(msg.subarray(o + 1, o + 1 + msg[o])));
      o += msg[o] + 1;
    }
    const qtype = (msg[o + 1] << 8) | msg[o + 2];
    const qend = o + 5;
    const qname = labels.join(".");
    const zone = zones[qname.toLowerCase()];
    const rrs: number[][] = [];
    const rr = (type: number, rdata: number[]) =>
      rrs.push([0xc0, 12, 0, type, 0, 1, 0, 0, 0, 30, rdata.length >> 8, rdata.length, ...rdata]);
    if (zone && qtype === 33) {
      for (const [pri, w, port, target] of zone.srv ?? []) {
        rr(33, [
          pri >> 8,
          pri & 255,
          w >> 8,
          w & 255,
          port >> 8,
          port & 255,
          ...encodeName(target, qname),
        ]);
      }
    }
    if (zone && qtype === 1) { for (const a of zone.a ?? []) rr(1, a.split(".").map(Number)); }
    if (zone && qtype === 28) { for (const a of zone.aaaa ?? []) rr(28, a); }
    const rcode = zone ? 0 : 3;
    const hdr = [msg[0], msg[1], 0x81, 0x80 | rcode, 0, 1, 0, rrs.length, 0, 0, 0, 0];
    sock.send(
      Uint8Array.from([...hdr, ...msg.subarray(12, qend), ...rrs.flat()]),
      rinfo.port,
      rinfo.address,
    );
  });
  const host = family === "udp4" ? "127.0.0.1" : "::1";
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return {
    port: (sock.address() as { port: number }).port,
    get queries() {
      return queries;
    },
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}
