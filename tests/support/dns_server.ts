// A fake upstream DNS server for the DNS tests, run as its own process inside a test
// namespace: `deno run -A dns_server.ts '[{...ServerSpec}]'`. Answers A/AAAA from its spec
// over UDP and TCP, or stays silent, so a test can see which server slirpd asked.

export interface ServerSpec {
  addr: string;
  mode: "answer" | "silent";
  /** The address every A (or AAAA) answer carries. */
  a?: string;
}

// ---------------------------------------------------------------- the test resolver

function labelsEnd(b: Uint8Array, p: number): number {
  while (p < b.length && b[p] !== 0) p += 1 + b[p];
  return p + 1;
}

function qname(b: Uint8Array): string {
  const out: string[] = [];
  let p = 12;
  while (p < b.length && b[p] !== 0) {
    out.push(new TextDecoder().decode(b.subarray(p + 1, p + 1 + b[p])));
    p += 1 + b[p];
  }
  return out.join(".") + ".";
}

function ipBytes(s: string): number[] {
  if (!s.includes(":")) return s.split(".").map(Number);
  const [h, t = ""] = s.split("::");
  const hs = h ? h.split(":") : [];
  const ts = t ? t.split(":") : [];
  const g = [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts];
  return g.flatMap((x) => [parseInt(x, 16) >> 8, parseInt(x, 16) & 255]);
}

/** The answer to `q`; names starting "tc." are truncated over UDP, whole over TCP. */
function respond(q: Uint8Array, spec: ServerSpec, tcp: boolean): Uint8Array {
  const qend = labelsEnd(q, 12) + 4;
  const qtype = (q[qend - 4] << 8) | q[qend - 3];
  const arcount = (q[10] << 8) | q[11];
  const edns = arcount > 0;
  const name = qname(q);
  const tc = !tcp && name.startsWith("tc.");
  const rdata = ipBytes(spec.a ?? "192.0.2.53");
  const wantType = rdata.length === 4 ? 1 : 28;
  const answer = !tc && qtype === wantType;
  const out: number[] = [...q.subarray(0, qend)];
  out[2] = 0x84 | (tc ? 0x02 : 0) | (q[2] & 0x01); // QR AA (TC) RD
  out[3] = 0x80; // RA
  out[6] = 0;
  out[7] = answer ? 1 : 0;
  out[8] = out[9] = 0;
  out[10] = 0;
  out[11] = edns ? 1 : 0;
  // Names starting "big." get 120 records: ~1.9 KB, more than one 1500-byte frame.
  const count = answer ? (name.startsWith("big.") ? 120 : 1) : 0;
  out[7] = count;
  for (let i = 0; i < count; i++) {
    if (count > 1) rdata[rdata.length - 1] = i;
    out.push(0xc0, 12, 0, wantType, 0, 1, 0, 0, 0, 60, 0, rdata.length, ...rdata);
  }
  if (edns) {
    // OPT: root name, type 41, class = payload size 4321, ttl 0, one option 65001 "slrp".
    out.push(0, 0, 41, 4321 >> 8, 4321 & 255, 0, 0, 0, 0, 0, 8, 0xfd, 0xe9, 0, 4);
    out.push(...new TextEncoder().encode("slrp"));
  }
  return new Uint8Array(out);
}

async function serve(specs: ServerSpec[]): Promise<void> {
  const dgram = await import("node:dgram");
  const net = await import("node:net");
  let pending = specs.length * 2;
  const bound = () => {
    if (--pending === 0) console.log("READY");
  };
  for (const spec of specs) {
    const v6 = spec.addr.includes(":");
    const sock = dgram.createSocket(v6 ? "udp6" : "udp4");
    sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      const q = new Uint8Array(msg);
      console.log(`Q ${spec.addr} udp ${qname(q)}`);
      if (spec.mode === "silent") return;
      sock.send(respond(q, spec, false), rinfo.port, rinfo.address);
    });
    sock.bind(53, spec.addr, bound);
    const srv = net.createServer((c) => {
      let buf = new Uint8Array(0);
      c.on("data", (d: Uint8Array) => {
        const nb = new Uint8Array(buf.length + d.length);
        nb.set(buf);
        nb.set(d, buf.length);
        buf = nb;
        while (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
          const len = (buf[0] << 8) | buf[1];
          const q = buf.slice(2, 2 + len);
          buf = buf.slice(2 + len);
          console.log(`Q ${spec.addr} tcp ${qname(q)}`);
          if (spec.mode === "silent") continue;
          const r = respond(q, spec, true);
          c.write(new Uint8Array([r.length >> 8, r.length & 255, ...r]));
        }
      });
      c.on("error", () => {});
    });
    srv.listen(53, spec.addr, bound);
  }
}

if (import.meta.main) await serve(JSON.parse(Deno.args[0]));
