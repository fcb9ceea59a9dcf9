// Cloudflare's Simple Proxy Protocol (SPP) header for UDP, as used by slirpnetstack's
// `-L udpspp://` forwards. Fixed 38 bytes, network byte order:
//
//   0..2   magic 0x56EC
//   2..18  client address (IPv6, or IPv4-mapped ::ffff:a.b.c.d)
//   18..34 proxy address  (same encoding)
//   34..36 client port
//   36..38 proxy port
//   38..   payload
//
// slirpnetstack only checks length and magic on the first datagram of a flow, keeps that
// header verbatim, strips 38 bytes blindly from later datagrams and prefixes the saved
// header (not swapped) to every reply. SppFlow reproduces exactly that.

export const SPP_MAGIC = 0x56ec;
export const SPP_HEADER_LEN = 38;

/** A reusable view over an SPP header at b[o, o+38). */
export class SppView {
  b: Uint8Array = new Uint8Array(0);
  o = 0;
  /** Why the last parse failed ("" after a successful parse). */
  reason = "";

  /**
   * Binds to datagram bytes b[o, o+n). False, with `reason`, if shorter than the header or
   * the magic is wrong; addresses are not validated (any 16 bytes is some IPv6 address).
   */
  parse(b: Uint8Array, o: number, n: number): boolean {
    this.b = b;
    this.o = o;
    if (o < 0 || n < 0 || o + n > b.length) {
      this.reason = "spp: datagram out of buffer bounds";
      return false;
    }
    if (n < SPP_HEADER_LEN) {
      this.reason = `spp: datagram of ${n} bytes is shorter than the 38-byte header`;
      return false;
    }
    const magic = (b[o] << 8) | b[o + 1];
    if (magic !== SPP_MAGIC) {
      this.reason = `spp: bad magic 0x${magic.toString(16).padStart(4, "0")}`;
      return false;
    }
    this.reason = "";
    return true;
  }
  get clientAddrOffset(): number {
    return this.o + 2;
  }
  get proxyAddrOffset(): number {
    return this.o + 18;
  }
  get clientPort(): number {
    return (this.b[this.o + 34] << 8) | this.b[this.o + 35];
  }
  get proxyPort(): number {
    return (this.b[this.o + 36] << 8) | this.b[this.o + 37];
  }
  /** Client address as text: dotted quad when IPv4-mapped (like Go's net.IP.String()). */
  clientAddr(): string {
    return formatIp16(this.b, this.o + 2);
  }
  proxyAddr(): string {
    return formatIp16(this.b, this.o + 18);
  }
  get clientIsV4(): boolean {
    return isV4Mapped(this.b, this.o + 2);
  }
  get proxyIsV4(): boolean {
    return isV4Mapped(this.b, this.o + 18);
  }
  /** Offset of the payload that follows the header. */
  get payloadOffset(): number {
    return this.o + SPP_HEADER_LEN;
  }
}

export interface SppEndpoint {
  /** IPv4 dotted quad or IPv6 text (no zone); IPv4 is stored IPv4-mapped. */
  ip: string;
  port: number;
}

/**
 * Writes a header for client -> proxy at b[o, o+38) and returns 38. Throws RangeError on
 * an unparsable address, a port outside 0..65535 or too little room: callers build
 * headers from addresses they already hold, so a bad one is a bug, not traffic.
 */
export function encodeSpp(
  b: Uint8Array,
  o: number,
  client: SppEndpoint,
  proxy: SppEndpoint,
): number {
  if (o < 0 || o + SPP_HEADER_LEN > b.length) throw new RangeError("spp: buffer too small");
  if (!parseIp16(client.ip, b, o + 2)) throw new RangeError(`spp: bad address ${client.ip}`);
  if (!parseIp16(proxy.ip, b, o + 18)) throw new RangeError(`spp: bad address ${proxy.ip}`);
  for (const p of [client.port, proxy.port]) {
    if (!Number.isInteger(p) || p < 0 || p > 0xffff) throw new RangeError(`spp: bad port ${p}`);
  }
  b[o] = SPP_MAGIC >> 8;
  b[o + 1] = SPP_MAGIC & 0xff;
  b[o + 34] = client.port >> 8;
  b[o + 35] = client.port & 0xff;
  b[o + 36] = proxy.port >> 8;
  b[o + 37] = proxy.port & 0xff;
  return SPP_HEADER_LEN;
}

/**
 * Per-flow SPP handling with slirpnetstack's semantics (-L udpspp, proxy.go/fwd.go):
 * the first datagram's header is parsed and saved; later inbound datagrams lose their
 * first 38 bytes unchecked (shorter ones are swallowed); each reply gets the saved header.
 */
export class SppFlow {
  /** The first datagram's header, copied (the receive buffer is reused). */
  readonly header: Uint8Array;

  private constructor(header: Uint8Array) {
    this.header = header;
  }

  /** Starts a flow from its first datagram; null (and view.reason) if malformed. */
  static first(view: SppView, b: Uint8Array, o: number, n: number): SppFlow | null {
    if (!view.parse(b, o, n)) return null;
    return new SppFlow(b.slice(o, o + SPP_HEADER_LEN));
  }

  /** Payload length of a later inbound datagram of n bytes, or -1 to drop it. */
  inboundPayloadLen(n: number): number {
    return n >= SPP_HEADER_LEN ? n - SPP_HEADER_LEN : -1;
  }

  /** Writes the saved header at dst[o] for a reply; the payload goes at o + 38. */
  prefixReply(dst: Uint8Array, o: number): number {
    dst.set(this.header, o);
    return SPP_HEADER_LEN;
  }
}

export function isV4Mapped(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 10; i++) if (b[o + i] !== 0) return false;
  return b[o + 10] === 0xff && b[o + 11] === 0xff;
}

/** Formats 16 address bytes: IPv4-mapped as a.b.c.d, else RFC 5952 IPv6 text. */
export function formatIp16(b: Uint8Array, o: number): string {
  if (isV4Mapped(b, o)) return `${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[o + i] << 8) | b[o + i + 1]);
  // Longest run of two or more zero groups becomes "::" (first one on a tie).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Parses IPv4 (stored IPv4-mapped) or IPv6 text into out[o, o+16). False if invalid. */
export function parseIp16(s: string, out: Uint8Array, o: number): boolean {
  const v4 = parseV4(s);
  if (v4) {
    out.fill(0, o, o + 10);
    out[o + 10] = out[o + 11] = 0xff;
    out.set(v4, o + 12);
    return true;
  }
  const g = parseV6(s);
  if (!g) return false;
  for (let i = 0; i < 8; i++) {
    out[o + 2 * i] = g[i] >> 8;
    out[o + 2 * i + 1] = g[i] & 0xff;
  }
  return true;
}

function parseV4(s: string): number[] | null {
  const p = s.split(".");
  if (p.length !== 4) return null;
  const r: number[] = [];
  for (const x of p) {
    // Decimal only, no leading zeros (Go's ParseIP rejects them too: octal ambiguity).
    if (!/^(0|[1-9]\d{0,2})$/.test(x) || Number(x) > 255) return null;
    r.push(Number(x));
  }
  return r;
}

function parseV6(s: string): number[] | null {
  if (s.includes("%")) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  // An embedded dotted quad may only end the address (::ffff:1.2.3.4, 64:ff9b::1.2.3.4).
  const side = (t: string, v4ok: boolean): number[] | null => {
    if (t === "") return [];
    const out: number[] = [];
    const parts = t.split(":");
    for (let i = 0; i < parts.length; i++) {
      const x = parts[i];
      if (v4ok && i === parts.length - 1 && x.includes(".")) {
        const v4 = parseV4(x);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(x)) {
        out.push(parseInt(x, 16));
      } else return null;
    }
    return out;
  };
  const head = side(halves[0], halves.length === 1);
  if (!head) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const tail = side(halves[1], true);
  if (!tail || head.length + tail.length > 7) return null;
  return [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
}
