// --allow/--deny parsing (firewall/rules.ts) and the firewall-related flags of daemon/config.ts: the
// accepted syntax, every error message word for word (slirpnetstack's where it has one), names
// resolved at start (only `localhost`, from /etc/hosts: never real DNS), and a bad rule
// stopping slirpd before it starts.

import assert from "node:assert/strict";
import { parseConfig } from "../../daemon/config.ts";
import {
  type FlagRules,
  FlagValueError,
  formatSpec,
  parseRules,
  resolveRules,
  RuleError,
  splitHostPort,
} from "../../firewall/rules.ts";
import { SLOT_ICMP, SLOT_TCP, SLOT_UDP } from "../../firewall/decide.ts";
import { systemResolver } from "../../firewall/start.ts";
import { run, slirpdCommand } from "../support/harness.ts";

function show(v: string): string {
  return parseRules(v).map(formatSpec).join(" ");
}

function reason(v: string): string {
  try {
    parseRules(v);
  } catch (e) {
    assert.ok(e instanceof RuleError, `${v}: ${e}`);
    return e.message;
  }
  throw new Error(`${v}: parsed, expected an error`);
}

Deno.test("firewall rules: accepted forms", () => {
  const cases: [string, string][] = [
    ["192.0.2.2", "tcp://192.0.2.2"], // tcp is the default, no port = every port
    ["192.0.2.2:80", "tcp://192.0.2.2:80"],
    ["udp://192.0.2.2:100-200", "udp://192.0.2.2:100-200"],
    ["icmp://192.0.2.0/24", "icmp://192.0.2.0/24"],
    ["any://10.1.2.3/8:0-1023", "any://10.0.0.0/8:0-1023"], // host bits are cleared
    ["192.0.2.2:0", "tcp://192.0.2.2"], // port 0 = every port
    ["192.0.2.2:0-0", "tcp://192.0.2.2"],
    ["0.0.0.0/0", "tcp://0.0.0.0/0"],
    ["[::1]:53", "tcp://[::1]:53"],
    ["udp://[2001:db8::2]", "udp://[2001:db8::2]"],
    ["[2001:db8::]/32", "tcp://[2001:db8::/32]"],
    ["[2001:db8::/48]:443", "tcp://[2001:db8::/48]:443"],
    ["[::]/0", "tcp://[::/0]"],
    ["[::ffff:192.0.2.9]:22", "tcp://192.0.2.9:22"], // IPv4-mapped = IPv4, as Go's To4()
    ["localhost:22", "tcp://localhost:22"],
    ["udp://my-host.example:53", "udp://my-host.example:53"],
    ["192.0.2.2:80,udp://[2001:db8::2]:53", "tcp://192.0.2.2:80 udp://[2001:db8::2]:53"],
    ["all", "any://0.0.0.0/0 any://[::/0]"],
    ["192.0.2.2:080", "tcp://192.0.2.2:80"], // Go's ParseUint takes leading zeros
  ];
  for (const [v, want] of cases) assert.deepEqual(show(v), want, v);
  const [r] = parseRules("any://192.0.2.0/25:10-20");
  assert.deepEqual([r.proto, [...r.addr!], r.len, r.portMin, r.portMax, r.name], [
    "any",
    [192, 0, 2, 0],
    25,
    10,
    20,
    null,
  ]);
  assert.deepEqual(splitHostPort("[::1]:53"), ["::1", "53"]);
  assert.deepEqual(splitHostPort("a:b:c"), ["a", "b", "c"]);
});

Deno.test("firewall rules: every error message, word for word", () => {
  const cases: [string, string][] = [
    // slirpnetstack's own texts (tests/test_basic.py test_allow_cover_cases)
    ["localhost:2-1", "min port must be smaller equal than max port"],
    ["localhost:a", 'strconv.ParseUint: parsing "a": invalid syntax'],
    ["localhost:0-b", 'strconv.ParseUint: parsing "b": invalid syntax'],
    ["notahostó", "lookup notahostó: no such host"],
    // Go's strconv and net wording for the rest
    ["192.0.2.2:70000", 'strconv.ParseUint: parsing "70000": value out of range'],
    ["192.0.2.2:1-65536", 'strconv.ParseUint: parsing "65536": value out of range'],
    ["192.0.2.2:", 'strconv.ParseUint: parsing "": invalid syntax'],
    ["192.0.2.2:-5", 'strconv.ParseUint: parsing "": invalid syntax'],
    ["192.0.2.2:1-2-3", 'strconv.ParseUint: parsing "2-3": invalid syntax'],
    ["192.0.2.2:+5", 'strconv.ParseUint: parsing "+5": invalid syntax'],
    ["192.0.2.0/33", "invalid CIDR address: 192.0.2.0/33"],
    ["[2001:db8::]/129", "invalid CIDR address: 2001:db8::/129"],
    ["192.0.2.0/", "invalid CIDR address: 192.0.2.0/"],
    ["300.0.2.0/24", "invalid CIDR address: 300.0.2.0/24"],
    ["sctp://192.0.2.2", 'unknown network type "sctp"'],
    ["TCP://192.0.2.2", 'unknown network type "TCP"'],
    // slirpd's own
    ["2001:db8::1", "error parsing ipportrange (an IPv6 address needs brackets: [::1]:53)"],
    ["192.0.2.2:80:90", "error parsing ipportrange (an IPv6 address needs brackets: [::1]:53)"],
    ["192.0.2.256", "invalid IP address: 192.0.2.256"],
    ["[zz::1]:80", "invalid IP address: zz::1"],
    ["", "missing host: use [PROTO://]HOST[:PORT[-PORT]]"],
    ["tcp://:80", "missing host: use [PROTO://]HOST[:PORT[-PORT]]"],
    ["192.0.2.2,", "missing host: use [PROTO://]HOST[:PORT[-PORT]]"],
    ["icmp://192.0.2.2:7", "icmp has no ports: use icmp://HOST"],
    ["bad_name!:80", "lookup bad_name!: no such host"],
  ];
  for (const [v, want] of cases) assert.deepEqual(reason(v), want, v);
});

Deno.test("firewall rules: flags in daemon/config.ts: one line naming the flag, the value, the reason", () => {
  const bad = (args: string[]) => {
    try {
      parseConfig(["--netns", "/x", ...args]);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error(`${args.join(" ")}: accepted`);
  };
  assert.deepEqual(
    bad(["--allow=localhost:2-1"]),
    'invalid value "localhost:2-1" for flag -allow: min port must be smaller equal than max port',
  );
  assert.deepEqual(
    bad(["-deny", "192.0.2.2:80,udp://x:y"]),
    'invalid value "192.0.2.2:80,udp://x:y" for flag -deny: strconv.ParseUint: parsing "y": invalid syntax',
  );
  assert.deepEqual(
    bad(["--outbound-addr", "2001:db8::1"]),
    'invalid value "2001:db8::1" for flag -outbound-addr: has to be a valid IPv4 address or interface name',
  );
  assert.deepEqual(
    bad(["--outbound-addr6", "192.0.2.1"]),
    'invalid value "192.0.2.1" for flag -outbound-addr6: has to be a valid IPv6 address or interface name',
  );
  assert.deepEqual(
    bad(["--outbound-addr", "192.0.2.300"]),
    'invalid value "192.0.2.300" for flag -outbound-addr: has to be a valid IPv4 address or interface name',
  );
  assert.deepEqual(
    bad(["--outbound-addr", "way-too-long-interface-name"]),
    'invalid value "way-too-long-interface-name" for flag -outbound-addr: has to be a valid IPv4 address or interface name',
  );
  assert.deepEqual(
    bad(["--source-ipv4", "eth0"]),
    'invalid value "eth0" for flag -source-ipv4: not an IPv4 address',
  );
  assert.deepEqual(
    bad(["--source-ipv6", "192.0.2.1"]),
    'invalid value "192.0.2.1" for flag -source-ipv6: not an IPv6 address',
  );
  assert.deepEqual(
    bad(["--source-ipv4", "192.0.2.1", "--outbound-addr", "192.0.2.1"]),
    'invalid value "192.0.2.1" for flag -source-ipv4: -outbound-addr is given too (they set the same address)',
  );

  const r = parseConfig([
    "--netns",
    "/x",
    "--allow=tcp://192.0.2.2:80",
    "-allow",
    "udp://[2001:db8::2]:53,icmp://192.0.2.0/24",
    "--deny=192.0.2.2:81",
    "--disable-host-loopback",
    "--outbound-addr6=2001:db8::1",
    "--source-ipv4=192.0.2.1",
  ]);
  assert.ok("config" in r);
  const c = r.config;
  assert.deepEqual(c.allow.map((f) => [f.flag, f.value, f.specs.length]), [
    ["allow", "tcp://192.0.2.2:80", 1],
    ["allow", "udp://[2001:db8::2]:53,icmp://192.0.2.0/24", 2],
  ]);
  assert.deepEqual(c.deny.map((f) => f.specs.map(formatSpec)), [["tcp://192.0.2.2:81"]]);
  assert.equal(c.disableHostLoopback, true);
  assert.deepEqual(c.outbound4, { addr: new Uint8Array([192, 0, 2, 1]) });
  assert.deepEqual(c.outbound6 && "addr" in c.outbound6 ? c.outbound6.addr.length : 0, 16);
  const i = parseConfig(["--netns", "/x", "--outbound-addr", "veth0", "--outbound-addr6", "eth1"]);
  assert.ok("config" in i);
  assert.deepEqual([i.config.outbound4, i.config.outbound6], [{ ifname: "veth0" }, {
    ifname: "eth1",
  }]);
  const none = parseConfig(["--netns", "/x"]);
  assert.ok("config" in none);
  assert.deepEqual(
    [none.config.allow, none.config.deny, none.config.outbound4, none.config.disableHostLoopback],
    [[], [], null, false],
  );
});

Deno.test("firewall rules: names resolve at start; localhost from /etc/hosts", async () => {
  const lists: FlagRules[] = [
    {
      flag: "allow",
      value: "localhost:22,udp://192.0.2.2",
      specs: parseRules("localhost:22,udp://192.0.2.2"),
    },
  ];
  const lines: string[] = [];
  const rules = await resolveRules(lists, (l) => lines.push(l), systemResolver);
  const local = rules.filter((r) => r.portMin === 22);
  assert.ok(local.length >= 1, "localhost resolves to at least one address");
  assert.ok(local.some((r) => r.addr.join(".") === "127.0.0.1" && r.len === 32), "127.0.0.1/32");
  for (const r of local) assert.deepEqual([r.protos, r.portMax], [[SLOT_TCP], 22]);
  assert.deepEqual(lines.length, 1);
  assert.match(lines[0], /^\[\+\] --allow localhost:22: localhost is 127\.0\.0\.1/);
  const lit = rules.find((r) => r.protos[0] === SLOT_UDP)!;
  assert.deepEqual([[...lit.addr], lit.len, lit.portMin, lit.portMax], [
    [192, 0, 2, 2],
    32,
    0,
    65535,
  ]);

  // any:// → all three transports; every address a name gives becomes a rule.
  const many = await resolveRules(
    [{ flag: "deny", value: "any://svc", specs: parseRules("any://svc") }],
    () => {},
    (name) => {
      assert.equal(name, "svc");
      return Promise.resolve([new Uint8Array([192, 0, 2, 7]), new Uint8Array(16).fill(0x20, 0, 1)]);
    },
  );
  assert.deepEqual(many.map((r) => [r.addr.length, r.len, r.protos]), [
    [4, 32, [SLOT_TCP, SLOT_UDP, SLOT_ICMP]],
    [16, 128, [SLOT_TCP, SLOT_UDP, SLOT_ICMP]],
  ]);

  // A name that does not resolve: the usage line, naming the flag and the whole value.
  await assert.rejects(
    resolveRules(
      [{
        flag: "allow",
        value: "192.0.2.1,nohost.test:80",
        specs: parseRules("192.0.2.1,nohost.test:80"),
      }],
      () => {},
      (name) => Promise.reject(new RuleError(`lookup ${name}: no such host`)),
    ),
    (e: unknown) =>
      e instanceof FlagValueError &&
      e.message ===
        'invalid value "192.0.2.1,nohost.test:80" for flag -allow: lookup nohost.test: no such host',
  );
});

Deno.test("firewall rules: a bad rule stops slirpd before it starts (exit 2, one line)", async () => {
  const cases: [string[], string][] = [
    [
      ["--allow=localhost:2-1"],
      'slirpd: invalid value "localhost:2-1" for flag -allow: min port must be smaller equal than max port',
    ],
    [
      ["--deny", "udp://[::1]:99999"],
      'slirpd: invalid value "udp://[::1]:99999" for flag -deny: strconv.ParseUint: parsing "99999": value out of range',
    ],
    [
      ["--netns", "/nonexistent/ns", "--outbound-addr", "nosuchif0"],
      'slirpd: invalid value "nosuchif0" for flag -outbound-addr: no interface nosuchif0',
    ],
  ];
  for (const [args, want] of cases) {
    const full = args.includes("--netns") ? args : ["--netns", "/nonexistent/ns", ...args];
    const r = await run([...slirpdCommand(), ...full]);
    assert.deepEqual([r.code, r.stderr.trim()], [2, want], args.join(" "));
  }
});
