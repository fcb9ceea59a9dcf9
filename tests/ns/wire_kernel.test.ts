// The kernel as the judge of what we emit: frames built only with stack/wire emitters are
// injected (socat INTERFACE, an AF_PACKET socket) into a veth whose peer holds addresses in a
// namespace we create, and the kernel's reaction is checked: ARP/NA/echo replies and SYN-ACKs
// (captured with dumpcap and parsed with our views), UDP and TCP data reaching sockets, an
// RA configuring SLAAC, a default route and the MTU, ICMP errors updating the path MTU.
// Corrupted checksums are injected too and must be dropped, which shows the kernel really
// checks what we compute.
//
//   namespace wirek-<random>:  inj 02:00:00:00:00:0a  (no addresses; we speak through it)
//                              dut 02:00:00:00:00:0b  192.0.2.2/24, 2001:db8::2/64

import assert from "node:assert/strict";
import { needs, skip } from "../support/harness.ts";
import { formatIp, parseIp } from "../../stack/wire/bytes.ts";
import {
  BROADCAST_MAC,
  emitEthernet,
  ETH_HLEN,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  EthernetView,
  ipv6MulticastMac,
} from "../../stack/wire/ethernet.ts";
import { ARP_REPLY, ARP_REQUEST, ArpView, emitArp } from "../../stack/wire/arp.ts";
import { emitIpv4, IPV4_DF, IPV4_HLEN, Ipv4View } from "../../stack/wire/ipv4.ts";
import { emitIpv6, IPV6_HLEN, Ipv6View } from "../../stack/wire/ipv6.ts";
import {
  emitIcmpv4Echo,
  emitIcmpv4Unreachable,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_FRAG_NEEDED,
  Icmpv4View,
  IPPROTO_ICMP,
} from "../../stack/wire/icmpv4.ts";
import {
  emitIcmpv6Echo,
  emitIcmpv6PacketTooBig,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  Icmpv6View,
  IPPROTO_ICMPV6,
} from "../../stack/wire/icmpv6.ts";
import {
  emitNs,
  emitRa,
  ND_NA_FLAG_SOLICITED,
  ND_NEIGHBOR_ADVERT,
  NdpView,
} from "../../stack/wire/ndp.ts";
import { emitUdp, IPPROTO_UDP, setUdpChecksum } from "../../stack/wire/udp.ts";
import {
  emitTcp,
  IPPROTO_TCP,
  setTcpChecksum,
  TCP_ACK,
  TCP_HLEN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TcpOptions,
  TcpView,
  writeTcpOptions,
  writeTcpTimestamp,
} from "../../stack/wire/tcp.ts";

const PEER_MAC = new Uint8Array([2, 0, 0, 0, 0, 0x0a]);
const DUT_MAC = new Uint8Array([2, 0, 0, 0, 0, 0x0b]);
const PEER4 = parseIp("192.0.2.1")!, DUT4 = parseIp("192.0.2.2")!;
const PEER6 = parseIp("2001:db8::1")!, DUT6 = parseIp("2001:db8::2")!;
const dec = new TextDecoder();

async function run(args: string[], check = true): Promise<string> {
  const out = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (check && !out.success) throw new Error(`${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` every 100 ms for at most `ms`; returns its last answer. */
async function waitFor(f: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 100) {
    if (await f()) return true;
    await sleep(100);
  }
  return await f();
}

class Netns {
  readonly name = `wirek-${crypto.randomUUID().slice(0, 8)}`;
  private tmp = Deno.makeTempDirSync({ prefix: "wirek" });
  private seq = 0;

  async setup() {
    const n = this.name;
    await run(["ip", "netns", "add", n]);
    const cmds = [
      `link add inj address 02:00:00:00:00:0a type veth peer name dut address 02:00:00:00:00:0b`,
      `addr add 192.0.2.2/24 dev dut`,
      `addr add 2001:db8::2/64 dev dut nodad`,
      `neigh add 192.0.2.1 lladdr 02:00:00:00:00:0a dev dut nud permanent`,
      `neigh add 2001:db8::1 lladdr 02:00:00:00:00:0a dev dut nud permanent`,
    ];
    for (const c of cmds) await run(["ip", "-n", n, ...c.split(" ")]);
    for (
      const s of [
        "net.ipv6.conf.inj.disable_ipv6=1", // no noise from our side
        "net.ipv6.conf.dut.dad_transmits=0",
        "net.ipv6.conf.dut.accept_ra=1",
      ]
    ) await run(["ip", "netns", "exec", n, "sysctl", "-qw", s]);
    // dut's replies get full checksums (veth offload would leave them partial).
    await run([
      "ip",
      "netns",
      "exec",
      n,
      "deno",
      "eval",
      `const l = Deno.dlopen('libc.so.6', { socket: { parameters: ['i32','i32','i32'], result: 'i32' },
        ioctl: { parameters: ['i32','u64','buffer'], result: 'i32' } }).symbols;
      const v = new Uint32Array([0x17, 0]); const r = new Uint8Array(40);
      r.set(new TextEncoder().encode('dut'));
      new DataView(r.buffer).setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(v))), true);
      if (l.ioctl(l.socket(2, 2, 0), 0x8946n, r) !== 0) throw new Error('SIOCETHTOOL');`,
    ]);
    await run(["ip", "-n", n, "link", "set", "lo", "up"]);
    await run(["ip", "-n", n, "link", "set", "dut", "up"]);
    await run(["ip", "-n", n, "link", "set", "inj", "up"]);
  }

  async cleanup() {
    await run(["ip", "netns", "del", this.name], false);
    if (!Deno.env.get("WIRE_KEEP")) Deno.removeSync(this.tmp, { recursive: true });
    else console.log("kept", this.tmp);
  }

  exec(args: string[]): Promise<string> {
    return run(["ip", "netns", "exec", this.name, ...args], false);
  }

  /** Sends one Ethernet frame out of inj (it arrives at dut). */
  async inject(frame: Uint8Array) {
    const f = `${this.tmp}/frame${this.seq++}`;
    Deno.writeFileSync(f, frame);
    await run(["ip", "netns", "exec", this.name, "socat", "-u", `OPEN:${f}`, "INTERFACE:inj"]);
  }

  /** Starts a process in the namespace (stdout piped); the caller kills and awaits it. */
  spawn(args: string[]): Deno.ChildProcess {
    return new Deno.Command("ip", {
      args: ["netns", "exec", this.name, ...args],
      stdout: "piped",
      stderr: "null",
    }).spawn();
  }

  /**
   * Captures on inj while `fn` runs; returns the frames dut sent. Tries up to 3 times until
   * `until` accepts the frames, so a capture that starts late cannot fail a test.
   */
  async capture(
    fn: () => Promise<void>,
    until: (frames: Uint8Array[]) => boolean = () => true,
  ): Promise<Uint8Array[]> {
    let got: Uint8Array[] = [];
    for (let i = 0; i < 3; i++) {
      got = await this.captureOnce(fn);
      if (until(got)) break;
    }
    return got;
  }

  private async captureOnce(fn: () => Promise<void>, settleMs = 300): Promise<Uint8Array[]> {
    const file = `${this.tmp}/cap${this.seq++}.pcap`;
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.name, "dumpcap", "-q", "-P", "-i", "inj", "-w", file],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = child.stderr.getReader();
    try {
      let err = "";
      const deadline = Date.now() + 10_000;
      while (!err.includes("Capturing on") && Date.now() < deadline) {
        const r = await Promise.race([
          reader.read(),
          sleep(deadline - Date.now()).then(() => null),
        ]);
        if (!r || r.done) break;
        err += dec.decode(r.value);
      }
      assert.ok(err.includes("Capturing on"), `dumpcap did not start: ${err}`);
      await sleep(250); // "Capturing on" comes a moment before the socket sees packets
      await fn();
      await sleep(settleMs);
    } finally {
      child.kill("SIGINT");
      await reader.cancel();
      await child.status;
    }
    return readPcap(Deno.readFileSync(file)).filter((f) => f[6] === 2 && f[11] === 0x0b);
  }
}

function readPcap(p: Uint8Array): Uint8Array[] {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  assert.equal(dv.getUint32(0, true), 0xa1b2c3d4);
  const out: Uint8Array[] = [];
  for (let o = 24; o + 16 <= p.length;) {
    const len = dv.getUint32(o + 8, true);
    out.push(p.slice(o + 16, o + 16 + len));
    o += 16 + len;
  }
  return out;
}

// Frame builders: everything below is made with the emitters under test.

function ipv4Frame(
  proto: number,
  l4: (b: Uint8Array, o: number) => number,
  src = PEER4,
  dst = DUT4,
): Uint8Array {
  const b = new Uint8Array(1600);
  emitEthernet(b, 0, DUT_MAC, PEER_MAC, ETH_P_IP);
  const o = ETH_HLEN + IPV4_HLEN;
  const n = l4(b, o);
  emitIpv4(b, ETH_HLEN, 0, IPV4_HLEN + n, 0x1234, IPV4_DF, 64, proto, src, dst);
  return b.slice(0, o + n);
}

function ipv6Frame(
  proto: number,
  l4: (b: Uint8Array, o: number) => number,
  src = PEER6,
  dst = DUT6,
  hopLimit = 64,
  dstMac = DUT_MAC,
): Uint8Array {
  const b = new Uint8Array(1600);
  emitEthernet(b, 0, dstMac, PEER_MAC, ETH_P_IPV6);
  const o = ETH_HLEN + IPV6_HLEN;
  const n = l4(b, o);
  emitIpv6(b, ETH_HLEN, 0, 0x12345, n, proto, hopLimit, src, dst);
  return b.slice(0, o + n);
}

/** A UDP datagram to dut; `csum`: "good", "zero" (none), or a bit mask to corrupt it with. */
function udpFrame(
  v6: boolean,
  sport: number,
  dport: number,
  text: string,
  csum: "good" | "zero" | number,
): Uint8Array {
  const data = new TextEncoder().encode(text);
  const l4 = (b: Uint8Array, o: number) => {
    b.set(data, o + 8);
    emitUdp(b, o, sport, dport, 8 + data.length);
    if (csum !== "zero") {
      setUdpChecksum(b, o, 8 + data.length, v6 ? PEER6 : PEER4, v6 ? DUT6 : DUT4);
    }
    if (typeof csum === "number") b[o + 7] ^= csum;
    return 8 + data.length;
  };
  return v6 ? ipv6Frame(IPPROTO_UDP, l4) : ipv4Frame(IPPROTO_UDP, l4);
}

function tcpFrame(
  v6: boolean,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  writeOpts: (b: Uint8Array, o: number) => number,
  text = "",
  corrupt = 0,
): Uint8Array {
  const data = new TextEncoder().encode(text);
  const l4 = (b: Uint8Array, o: number) => {
    const ol = writeOpts(b, o + TCP_HLEN);
    const hl = emitTcp(b, o, sport, dport, seq, ack, flags, 64000, ol);
    b.set(data, o + hl);
    setTcpChecksum(b, o, hl + data.length, v6 ? PEER6 : PEER4, v6 ? DUT6 : DUT4);
    b[o + 17] ^= corrupt;
    return hl + data.length;
  };
  return v6 ? ipv6Frame(IPPROTO_TCP, l4) : ipv4Frame(IPPROTO_TCP, l4);
}

const eth = new EthernetView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const tcp = new TcpView();
const opts = new TcpOptions();

/** Parses a captured frame down to its L4, verifying the kernel's checksums with our code. */
function l4Of(f: Uint8Array): { proto: number; o: number; n: number; v6: boolean } | null {
  if (!eth.parse(f, 0, f.length)) return null;
  if (eth.etherType === ETH_P_IP && ip4.parse(f, ETH_HLEN, f.length - ETH_HLEN)) {
    assert.ok(ip4.verifyChecksum());
    return { proto: ip4.protocol, o: ip4.payloadOffset, n: ip4.payloadLen, v6: false };
  }
  if (eth.etherType === ETH_P_IPV6 && ip6.parse(f, ETH_HLEN, f.length - ETH_HLEN)) {
    return { proto: ip6.protocol, o: ip6.l4Offset, n: ip6.l4Len, v6: true };
  }
  return null;
}

function findSynAck(frames: Uint8Array[], sport: number) {
  for (const f of frames) {
    const l = l4Of(f);
    if (!l || l.proto !== IPPROTO_TCP || !tcp.parse(f, l.o, l.n) || tcp.dstPort !== sport) continue;
    assert.ok(
      l.v6
        ? tcp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset)
        : tcp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset),
      "kernel SYN-ACK checksum verifies with our code",
    );
    assert.ok(tcp.parseOptions(opts));
    return {
      flags: tcp.flags,
      seq: tcp.seq,
      ack: tcp.ack,
      mss: opts.mss,
      wscale: opts.wscale,
      sack: opts.sackPermitted,
      tsVal: opts.tsVal,
      tsEcr: opts.tsEcr,
    };
  }
  return null;
}

Deno.test({
  name: "wire kernel: the kernel accepts and answers what the emitters build",
  ignore: skip(needs("socat", "dumpcap", "sysctl"), "wire kernel"),
  async fn(t) {
    const ns = new Netns();
    const children: Deno.ChildProcess[] = [];
    try {
      await ns.setup();

      await t.step("ARP request -> reply", async () => {
        const b = new Uint8Array(42);
        emitEthernet(b, 0, BROADCAST_MAC, PEER_MAC, ETH_P_ARP);
        emitArp(b, ETH_HLEN, ARP_REQUEST, PEER_MAC, PEER4, new Uint8Array(6), DUT4);
        const arp = new ArpView();
        const isReply = (f: Uint8Array) =>
          eth.parse(f, 0, f.length) && eth.etherType === ETH_P_ARP &&
          arp.parse(f, ETH_HLEN, f.length - ETH_HLEN) && arp.op === ARP_REPLY;
        const got = await ns.capture(() => ns.inject(b), (fs) => fs.some(isReply));
        const reply = got.find(isReply);
        assert.ok(reply, "an ARP reply");
        assert.equal(formatIp(reply, arp.spaOffset, 4), "192.0.2.2");
        assert.equal(formatIp(reply, arp.tpaOffset, 4), "192.0.2.1");
      });

      await t.step("ICMP and ICMPv6 echo -> replies with our id, seq and data", async () => {
        const data = new TextEncoder().encode("slirpd wire echo");
        const echo = (type: number, v6: boolean) => (b: Uint8Array, o: number) => {
          b.set(data, o + 8);
          return v6
            ? emitIcmpv6Echo(b, o, type, 0x4242, 7, data.length, PEER6, DUT6)
            : emitIcmpv4Echo(b, o, type, 0x4242, 7, data.length);
        };
        const got = await ns.capture(async () => {
          await ns.inject(ipv4Frame(IPPROTO_ICMP, echo(ICMP_ECHO_REQUEST, false)));
          await ns.inject(ipv6Frame(IPPROTO_ICMPV6, echo(ICMPV6_ECHO_REQUEST, true)));
        }, (fs) => fs.length >= 2);
        let v4 = 0, v6 = 0;
        for (const f of got) {
          const l = l4Of(f);
          if (l?.proto === IPPROTO_ICMP) {
            const v = new Icmpv4View();
            assert.ok(v.parse(f, l.o, l.n) && v.verifyChecksum());
            assert.equal(v.type, ICMP_ECHO_REPLY);
            assert.deepEqual([v.echoId, v.echoSeq], [0x4242, 7]);
            assert.equal(
              dec.decode(f.subarray(v.dataOffset, v.dataOffset + v.dataLen)),
              "slirpd wire echo",
            );
            v4++;
          } else if (l?.proto === IPPROTO_ICMPV6) {
            const v = new Icmpv6View();
            assert.ok(v.parse(f, l.o, l.n) && v.verifyChecksum(ip6.srcOffset, ip6.dstOffset));
            if (v.type !== ICMPV6_ECHO_REPLY) continue;
            assert.deepEqual([v.echoId, v.echoSeq], [0x4242, 7]);
            v6++;
          }
        }
        assert.deepEqual([v4, v6], [1, 1]);
      });

      await t.step("neighbour solicitation -> solicited advertisement", async () => {
        const snm = parseIp("ff02::1:ff00:2")!;
        const mac = new Uint8Array(6);
        ipv6MulticastMac(mac, 0, snm, 0);
        const frame = ipv6Frame(
          IPPROTO_ICMPV6,
          (b, o) => emitNs(b, o, DUT6, PEER_MAC, PEER6, snm),
          PEER6,
          snm,
          255,
          mac,
        );
        const got = await ns.capture(() => ns.inject(frame), (fs) => fs.length > 0);
        const ndp = new NdpView();
        const na = got.find((f) => {
          const l = l4Of(f);
          return l?.proto === IPPROTO_ICMPV6 && ndp.parse(f, l.o, l.n) &&
            ndp.type === ND_NEIGHBOR_ADVERT;
        });
        assert.ok(na, "an NA");
        assert.ok(ndp.naFlags & ND_NA_FLAG_SOLICITED);
        assert.equal(formatIp(na, ndp.targetOffset, 16), "2001:db8::2");
        assert.deepEqual([...na.subarray(ndp.tgtLinkAddrOffset, ndp.tgtLinkAddrOffset + 6)], [
          ...DUT_MAC,
        ]);
      });

      await t.step(
        "UDP: good checksums delivered, corrupted ones dropped, zero only on v4",
        async () => {
          const rx4 = ns.spawn(["timeout", "20", "socat", "-u", "UDP4-RECV:7100", "STDOUT"]);
          const rx6 = ns.spawn([
            "timeout",
            "20",
            "socat",
            "-u",
            "UDP6-RECV:7100,ipv6only=1",
            "STDOUT",
          ]);
          children.push(rx4, rx6);
          await sleep(300);
          await ns.inject(udpFrame(false, 5000, 7100, "bad4.", 0x10));
          await ns.inject(udpFrame(true, 5000, 7100, "bad6.", 0x01));
          await ns.inject(udpFrame(true, 5000, 7100, "zero6.", "zero"));
          await ns.inject(udpFrame(false, 5000, 7100, "zero4.", "zero"));
          await ns.inject(udpFrame(false, 5000, 7100, "good4.", "good"));
          await ns.inject(udpFrame(true, 5000, 7100, "good6.", "good"));
          await sleep(300);
          rx4.kill("SIGTERM");
          rx6.kill("SIGTERM");
          const [o4, o6] = await Promise.all([rx4.output(), rx6.output()]);
          assert.equal(dec.decode(o4.stdout), "zero4.good4.", "v4: checksum 0 = none (RFC 768)");
          assert.equal(dec.decode(o6.stdout), "good6.", "v6: checksum mandatory (RFC 8200 §8.1)");
        },
      );

      for (const v6 of [false, true]) {
        await t.step(
          `TCP over IPv${v6 ? 6 : 4}: SYN options honoured, data delivered`,
          async () => {
            const port = v6 ? 7201 : 7200;
            const rx = ns.spawn([
              "timeout",
              "20",
              "socat",
              "-u",
              `TCP${v6 ? 6 : 4}-LISTEN:${port},reuseaddr`,
              "STDOUT",
            ]);
            children.push(rx);
            await sleep(300);
            const iss = 0xfffffff0; // wraps during the connection: unsigned arithmetic
            const syn = {
              mss: 1200,
              wscale: 5,
              sackPermitted: true,
              hasTimestamp: true,
              tsVal: 0xabcdef01,
              tsEcr: 0,
            };
            const got = await ns.capture(async () => {
              await ns.inject(tcpFrame(
                v6,
                40001,
                port,
                iss,
                0,
                TCP_SYN,
                (b, o) => writeTcpOptions(b, o, syn),
                "",
                0x40,
              ));
              await ns.inject(
                tcpFrame(v6, 40000, port, iss, 0, TCP_SYN, (b, o) => writeTcpOptions(b, o, syn)),
              );
            }, (fs) => findSynAck(fs, 40000) !== null);
            assert.equal(findSynAck(got, 40001), null, "a SYN with a bad checksum is dropped");
            const sa = findSynAck(got, 40000);
            assert.ok(sa, "a SYN-ACK");
            assert.equal(sa.flags, TCP_SYN | TCP_ACK);
            assert.equal(sa.ack, (iss + 1) >>> 0);
            assert.equal(sa.tsEcr, syn.tsVal, "our timestamp echoed");
            assert.ok(sa.sack && sa.wscale >= 0 && sa.mss > 0, "SACK and window scale negotiated");
            // Complete the handshake and send data with a timestamp option.
            const text = "hello from stack/wire\n";
            const ts = (b: Uint8Array, o: number) =>
              writeTcpTimestamp(b, o, syn.tsVal + 1, sa.tsVal);
            await ns.inject(
              tcpFrame(
                v6,
                40000,
                port,
                (iss + 1) >>> 0,
                (sa.seq + 1) >>> 0,
                TCP_ACK | TCP_PSH,
                ts,
                text,
              ),
            );
            await sleep(300);
            await ns.inject(
              tcpFrame(
                v6,
                40000,
                port,
                (iss + 1 + text.length) >>> 0,
                (sa.seq + 1) >>> 0,
                TCP_RST | TCP_ACK,
                () => 0,
              ),
            );
            const out = await rx.output();
            assert.equal(dec.decode(out.stdout), text);
          },
        );
      }

      await t.step("router advertisement: SLAAC address, default route, MTU", async () => {
        const ll = parseIp("fe80::1")!;
        const allNodes = parseIp("ff02::1")!;
        const mac = new Uint8Array(6);
        ipv6MulticastMac(mac, 0, allNodes, 0);
        const frame = ipv6Frame(
          IPPROTO_ICMPV6,
          (b, o) =>
            emitRa(
              b,
              o,
              {
                routerLifetime: 1800,
                srcMac: PEER_MAC,
                mtu: 1400,
                prefix: parseIp("2001:db8:1::")!,
                prefixLen: 64,
                rdnss: parseIp("2001:db8::53")!,
              },
              ll,
              allNodes,
            ),
          ll,
          allNodes,
          255,
          mac,
        );
        await ns.inject(frame);
        const ok = await waitFor(
          async () =>
            (await ns.exec(["ip", "-6", "addr", "show", "dev", "dut"])).includes(
              "2001:db8:1::ff:fe00:b/64",
            ) &&
            (await ns.exec(["ip", "-6", "route", "show", "default"])).includes(
              "via fe80::1 dev dut proto ra",
            ),
          3000,
        );
        assert.ok(
          ok,
          "SLAAC address and default route: " +
            (await ns.exec(["ip", "-6", "addr", "show", "dev", "dut"])) +
            (await ns.exec(["ip", "-6", "route"])),
        );
        assert.equal((await ns.exec(["sysctl", "-n", "net.ipv6.conf.dut.mtu"])).trim(), "1400");
      });

      await t.step(
        "ICMP fragmentation needed and ICMPv6 packet too big set the path MTU",
        async () => {
          // The quoted packets: an echo reply dut "sent" to 192.0.2.1, an echo request to 2001:db8::1.
          const orig4 = new Uint8Array(IPV4_HLEN + 16);
          emitIcmpv4Echo(orig4, IPV4_HLEN, ICMP_ECHO_REPLY, 1, 1, 8);
          emitIpv4(orig4, 0, 0, orig4.length, 99, IPV4_DF, 64, IPPROTO_ICMP, DUT4, PEER4);
          await ns.inject(
            ipv4Frame(
              IPPROTO_ICMP,
              (b, o) => emitIcmpv4Unreachable(b, o, ICMP_FRAG_NEEDED, orig4, 0, orig4.length, 1300),
            ),
          );
          const orig6 = new Uint8Array(IPV6_HLEN + 16);
          emitIcmpv6Echo(orig6, IPV6_HLEN, ICMPV6_ECHO_REQUEST, 1, 1, 8, DUT6, PEER6);
          emitIpv6(orig6, 0, 0, 0, 16, IPPROTO_ICMPV6, 64, DUT6, PEER6);
          await ns.inject(
            ipv6Frame(
              IPPROTO_ICMPV6,
              (b, o) => emitIcmpv6PacketTooBig(b, o, 1300, PEER6, DUT6, orig6, 0, orig6.length),
            ),
          );
          const ok = await waitFor(
            async () =>
              (await ns.exec(["ip", "route", "get", "192.0.2.1"])).includes("mtu 1300") &&
              (await ns.exec(["ip", "-6", "route", "get", "2001:db8::1"])).includes("mtu 1300"),
            3000,
          );
          assert.ok(ok, "route cache shows mtu 1300 for both peers");
        },
      );
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch { /* already gone */ }
        await c.status;
      }
      await ns.cleanup();
    }
  },
});
