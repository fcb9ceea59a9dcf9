// IPv6 spellings of IPv4 addresses (firewall/decide.ts embeddedV4), the one routable() of
// stack/flow/routable.ts, and the guest source check (stack/ip/source.ts): pure functions.

import assert from "node:assert/strict";
import { Decider, embeddedV4, type Rule, VERDICT_ALLOWS } from "../../firewall/decide.ts";
import { HOST_LOOPBACK_RULES } from "../../firewall/policy.ts";
import { parseRules } from "../../firewall/rules.ts";
import { sanitySet } from "../../firewall/sanity.ts";
import { defaultNetPlan } from "../../stack/base/netplan.ts";
import { broadcast4, routable } from "../../stack/flow/routable.ts";
import { GuestSources } from "../../stack/ip/source.ts";
import { parseIp } from "../../stack/wire/bytes.ts";

const ip = (s: string) => parseIp(s)!;

function rules(text: string): Rule[] {
  return parseRules(text).map((s) => ({
    protos: s.proto === "any" ? [0, 1, 2] : [s.proto === "tcp" ? 0 : s.proto === "udp" ? 1 : 2],
    addr: s.addr!,
    len: s.len,
    portMin: s.portMin,
    portMax: s.portMax,
  }));
}

Deno.test("embeddedV4: where an IPv6 address carries an IPv4 one", () => {
  const cases: [string, number][] = [
    ["::ffff:127.0.0.1", 12],
    ["::ffff:0.0.0.0", 12],
    ["::127.0.0.1", 12],
    ["::", -1],
    ["::1", -1],
    ["64:ff9b::7f00:1", 12],
    ["64:ff9b::1:7f00:1", -1],
    ["2002:7f00:1::1", 2],
    ["2001:db8::1", -1],
    ["fd00::100", -1],
  ];
  for (const [a, want] of cases) assert.equal(embeddedV4(ip(a), 0), want, a);
});

Deno.test("decide: --allow all --disable-host-loopback --deny 192.0.2.11, every spelling", () => {
  const plan = defaultNetPlan();
  const d = new Decider({
    allow: rules("all"),
    deny: [...rules("any://192.0.2.11"), ...HOST_LOOPBACK_RULES],
    sanity: sanitySet(plan),
    host: { contains: () => false },
    enableHost: false,
    enableRouting: false,
  });
  const blocked = [
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "192.0.2.11",
    "::ffff:192.0.2.11",
    "64:ff9b::c000:20b",
    "2002:c000:20b::",
  ];
  for (const a of blocked) {
    for (const proto of [6, 17, 58]) {
      const f = a.includes(":") ? 6 : 4;
      assert.ok(!VERDICT_ALLOWS[d.decide(f, f === 4 && proto === 58 ? 1 : proto, ip(a), 80)], a);
    }
  }
  for (const a of ["192.0.2.12", "::ffff:192.0.2.12", "64:ff9b::c000:20c", "2001:db8::2"]) {
    // (::ffff:192.0.2.12 passes the policy through --allow all; routable() refuses it.)
    assert.ok(VERDICT_ALLOWS[d.decide(a.includes(":") ? 6 : 4, 6, ip(a), 80)], a);
  }
});

Deno.test("decide: --enable-routing alone keeps embedded sanity addresses closed", () => {
  const plan = defaultNetPlan();
  const d = new Decider({
    allow: [],
    deny: [],
    sanity: sanitySet(plan),
    host: { contains: () => false },
    enableHost: true,
    enableRouting: true,
  });
  for (const a of ["2002:7f00:1::1", "2002:a00:2ff::", "2002::1", "64:ff9b::808:808"]) {
    assert.ok(!VERDICT_ALLOWS[d.decide(6, 6, ip(a), 80)], a);
  }
  assert.ok(VERDICT_ALLOWS[d.decide(6, 6, ip("2002:808:808::1"), 80)]);
});

Deno.test("routable: never a flow, for every transport", () => {
  const b = broadcast4(ip("10.0.2.0"), 24);
  const no = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.2.255",
    "224.0.0.1",
    "239.1.1.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.0",
    "::127.0.0.1",
    "ff02::1",
    "fe80::1",
  ];
  for (const a of no) assert.ok(!routable(a.includes(":") ? 6 : 4, ip(a), 0, b), a);
  for (
    const a of ["127.0.0.1", "192.0.2.1", "10.0.2.254", "169.254.169.254", "::1", "2001:db8::1"]
  ) {
    assert.ok(routable(a.includes(":") ? 6 : 4, ip(a), 0, b), a);
  }
});

Deno.test("GuestSources: what the guest may send from", () => {
  const s = new GuestSources(defaultNetPlan());
  const ok4 = (a: string, dhcp = false) => s.ok4(ip(a), 0, 17, dhcp);
  assert.ok(ok4("10.0.2.100") && ok4("10.0.2.15") && ok4("0.0.0.0", true));
  for (const a of ["0.0.0.0", "127.0.0.1", "224.0.0.9", "10.0.2.0", "10.0.2.255", "10.0.2.2"]) {
    assert.ok(!ok4(a), a);
  }
  assert.ok(!ok4("10.0.2.3") && !ok4("192.0.2.99") && !ok4("255.255.255.255"));
  const ok6 = (a: string, proto = 6) => s.ok6(ip(a), 0, proto);
  assert.ok(ok6("fd00::100") && ok6("fe80::1234") && ok6("::", 58));
  for (
    const a of ["::", "::1", "ff02::1", "fd00::2", "fd00::3", "2001:db8::99", "::ffff:10.0.2.100"]
  ) {
    assert.ok(!ok6(a), a);
  }
});
