// Unit tests of the forward spec parser (slirpnetstack's -L/-R syntax and defaults) and of the
// PROXY protocol header parser (v1 and v2, partial and bad headers).

import assert from "node:assert/strict";
import {
  parseForwardSpec,
  SpecError,
  splitHostPort,
  withDefaults,
} from "../../stack/forwards/spec.ts";
import {
  parseProxyHeader,
  PP_BAD,
  PP_MORE,
  ppError,
  type ProxyHeader,
} from "../../stack/forwards/proxyproto.ts";
import { formatIp, parseIp } from "../../stack/wire/bytes.ts";
import { netPlanFrom } from "../../stack/base/netplan.ts";
import { parseCidr } from "../../stack/base/netplan.ts";

const plan = netPlanFrom(
  parseCidr("10.0.2.0/24", 4) as { addr: Uint8Array; len: number },
  parseCidr("fd00::/64", 6) as { addr: Uint8Array; len: number },
);

function resolved(dir: "local" | "remote", v: string): string {
  const s = parseForwardSpec(dir, v);
  const d = withDefaults(s, plan);
  const f = (x: string | Uint8Array) => typeof x === "string" ? x : formatIp(x);
  return `${s.network} ${f(d.bind)} ${s.bindPort} ${f(d.target)} ${s.targetPort}`;
}

Deno.test("fwd spec: splitHostPort keeps bracketed colons", () => {
  assert.deepEqual(splitHostPort("[::1]:80:[fd00::100]:8080"), ["::1", "80", "fd00::100", "8080"]);
  assert.deepEqual(splitHostPort(":0::53"), ["", "0", "", "53"]);
  assert.deepEqual(splitHostPort("80"), ["80"]);
});

Deno.test("fwd spec: the four forms and their defaults, both directions", () => {
  assert.equal(resolved("local", "8080"), "tcp 127.0.0.1 8080 10.0.2.100 8080");
  assert.equal(resolved("local", "0.0.0.0:8080"), "tcp 0.0.0.0 8080 10.0.2.100 8080");
  assert.equal(resolved("local", "8080:10.0.2.5:80"), "tcp 127.0.0.1 8080 10.0.2.5 80");
  assert.equal(resolved("local", "udp://:0::53"), "udp 127.0.0.1 0 10.0.2.100 53");
  assert.equal(resolved("local", "[::1]:8080"), "tcp ::1 8080 fd00::100 8080");
  assert.equal(resolved("local", "8080:[fd00::100]:80"), "tcp ::1 8080 fd00::100 80");
  assert.equal(resolved("local", "tcppp://1.2.3.4:1:localhost:2"), "tcppp 1.2.3.4 1 localhost 2");
  assert.equal(resolved("remote", "8080"), "tcp 10.0.2.2 8080 127.0.0.1 8080");
  assert.equal(resolved("remote", "[fd00::2]:53:[::1]:5353"), "tcp fd00::2 53 ::1 5353");
  assert.equal(resolved("remote", "udp://192.0.2.5:53"), "udp 192.0.2.5 53 127.0.0.1 53");
  assert.equal(resolved("remote", "80:[::1]:8080"), "tcp fd00::2 80 ::1 8080");
  // Go's -L=SPEC arrives as "=SPEC".
  assert.equal(resolved("local", "=udp://9"), "udp 127.0.0.1 9 10.0.2.100 9");
  // A --cidr plan moves the defaults.
  const p2 = netPlanFrom(
    parseCidr("10.9.0.0/24", 4) as { addr: Uint8Array; len: number },
    parseCidr("fd09::/64", 6) as { addr: Uint8Array; len: number },
  );
  const d = withDefaults(parseForwardSpec("remote", "1"), p2);
  assert.equal(formatIp(d.bind as Uint8Array), "10.9.0.2");
});

Deno.test("fwd spec: errors name the part", () => {
  const bad: [string, RegExp][] = [
    ["sctp://80", /unknown network type "sctp"/],
    ["1:2:3:4:5", /5 colon-separated parts/],
    ["70000", /bind port "70000" is not a port number/],
    ["80:10.0.2.100:x", /target port "x"/],
    ["::1:80", /target address "1" is neither/],
    ["80:bad_name!:80", /neither an IP address nor a host name/],
  ];
  for (const [v, re] of bad) {
    assert.throws(() => parseForwardSpec("local", v), (e: unknown) => {
      return e instanceof SpecError && re.test(e.message);
    }, v);
  }
  assert.throws(() => parseForwardSpec("remote", "tcppp://80"), /for -L only/);
});

const enc = (s: string) => new TextEncoder().encode(s);

function header(b: Uint8Array, n = b.length): ProxyHeader {
  const h = parseProxyHeader(b, n);
  assert.equal(typeof h, "object", `header: ${h}`);
  return h as ProxyHeader;
}

Deno.test("proxy protocol v1: TCP4, TCP6, UNKNOWN, partial and bad", () => {
  const v4 = enc("PROXY TCP4 198.51.100.7 10.0.0.1 4242 80\r\nhello");
  const h = header(v4);
  assert.equal(h.len, v4.length - 5);
  assert.equal(formatIp(h.src!.addr), "198.51.100.7");
  assert.equal(h.src!.port, 4242);
  assert.equal(h.dst!.port, 80);
  const v6 = header(enc("PROXY TCP6 2001:db8::5 2001:db8::1 1 2\r\n"));
  assert.equal(formatIp(v6.src!.addr), "2001:db8::5");
  assert.equal(header(enc("PROXY UNKNOWN\r\n")).src, null);
  assert.equal(parseProxyHeader(v4, 3), PP_MORE); // "PRO"
  assert.equal(parseProxyHeader(v4, 20), PP_MORE);
  assert.equal(parseProxyHeader(enc("GET / HTTP/1.1\r\n"), 16), PP_BAD);
  assert.equal(parseProxyHeader(enc("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), 31), PP_BAD);
  assert.equal(parseProxyHeader(enc("PROXY TCP4 ::1 ::1 1 2\r\n"), 24), PP_BAD);
  assert.equal(parseProxyHeader(enc("PROXY " + "x".repeat(120)), 126), PP_BAD);
});

Deno.test("proxy protocol: a bad header says what was wrong (not 'bad magic' for a good one)", () => {
  const why = (s: string) => {
    assert.equal(parseProxyHeader(enc(s), s.length), PP_BAD, s);
    return ppError.reason;
  };
  assert.match(why("GET / HTTP/1.1\r\n"), /^bad magic/);
  assert.equal(why("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), "v1 header has 3 fields after TCP4, not 4");
  assert.equal(why("PROXY TCP4 ::1 ::1 1 2\r\n"), "v1 TCP4 header with IPv6 addresses");
  assert.equal(
    why("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    'v1 protocol "UDP4" (TCP4, TCP6 or UNKNOWN)',
  );
  assert.equal(
    why("PROXY TCP4 1.2.3.x 5.6.7.8 1 2\r\n"),
    'v1 source address "1.2.3.x" is not an IP address',
  );
  assert.equal(
    why("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"),
    'v1 destination port "99999" is not a port number',
  );
});

Deno.test("proxy protocol v2: PROXY over IPv4 and IPv6, LOCAL, TLVs, partial and bad", () => {
  const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  const v4 = new Uint8Array([
    ...sig,
    0x21,
    0x11,
    0,
    12 + 3,
    ...parseIp("203.0.113.9")!,
    ...parseIp("10.0.0.1")!,
    0x10,
    0x92,
    0,
    80,
    1,
    2,
    3, // a TLV's worth of bytes, skipped
    0x68, // payload
  ]);
  const h = header(v4);
  assert.equal(h.len, 16 + 15);
  assert.equal(formatIp(h.src!.addr), "203.0.113.9");
  assert.equal(h.src!.port, 0x1092);
  const v6 = new Uint8Array([
    ...sig,
    0x21,
    0x21,
    0,
    36,
    ...parseIp("::ffff:192.0.2.9")!,
    ...parseIp("2001:db8::1")!,
    0,
    1,
    0,
    2,
  ]);
  assert.equal(formatIp(header(v6).src!.addr), "192.0.2.9"); // v4-mapped: IPv4
  const local = new Uint8Array([...sig, 0x20, 0x00, 0, 0]);
  assert.equal(header(local).src, null);
  assert.equal(parseProxyHeader(v4, 10), PP_MORE);
  assert.equal(parseProxyHeader(v4, 20), PP_MORE);
  const badVer = v4.slice();
  badVer[12] = 0x11;
  assert.equal(parseProxyHeader(badVer, badVer.length), PP_BAD);
  const huge = v4.slice();
  huge[14] = 0xff;
  assert.equal(parseProxyHeader(huge, huge.length), PP_BAD);
});
