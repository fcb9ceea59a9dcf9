// virtio_net_hdr against a real tap (IFF_VNET_HDR, TUNSETOFFLOAD CSUM|TSO4|TSO6) in a
// namespace we create: the guest kernel's frames must parse with VnetView (NEEDS_CSUM,
// csum_start/offset, GSO type and size), their partial checksums must equal what
// setTcpPartialChecksum/setUdpPartialChecksum write, and a GSO super-frame we emit with
// emitVnet must reach a guest socket whole. The peer side of each TCP connection is played
// here with the stack/wire emitters, sync FFI reads/writes on the tap fd.

import assert from "node:assert/strict";
import { needs, skip } from "../support/harness.ts";
import { bytesEqual, parseIp, u16 } from "../../stack/wire/bytes.ts";
import { completePartial, fold, pseudoSum } from "../../stack/wire/checksum.ts";
import {
  emitEthernet,
  ETH_HLEN,
  ETH_P_IP,
  ETH_P_IPV6,
  EthernetView,
} from "../../stack/wire/ethernet.ts";
import { emitIpv4, IPV4_DF, IPV4_HLEN, Ipv4View } from "../../stack/wire/ipv4.ts";
import { emitIpv6, IPV6_HLEN, Ipv6View } from "../../stack/wire/ipv6.ts";
import { IPPROTO_UDP, setUdpPartialChecksum, UdpView } from "../../stack/wire/udp.ts";
import {
  emitTcp,
  IPPROTO_TCP,
  setTcpChecksum,
  setTcpPartialChecksum,
  TCP_ACK,
  TCP_CSUM_OFFSET,
  TCP_FIN,
  TCP_HLEN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TcpView,
  writeTcpOptions,
} from "../../stack/wire/tcp.ts";
import {
  emitVnet,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VNET_HDR_LEN,
  VnetView,
} from "../../stack/wire/vnet.ts";

/** socat makes the guest's traffic: without it every test here is skipped, saying so. */
const test = skip(needs("socat"), "vnet tap") ? Deno.test.ignore : Deno.test;

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctlVal: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
}).symbols;

const O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000, CLONE_NEWNET = 0x40000000;
const TUNSETIFF = 0x400454can, TUNSETOFFLOAD = 0x400454d0n;
const IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 1, TUN_F_TSO4 = 2, TUN_F_TSO6 = 4;

const enc = new TextEncoder(), dec = new TextDecoder();
const cstr = (s: string) => enc.encode(s + "\0");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(args: string[]): Promise<void> {
  const out = await new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).output();
  if (!out.success) throw new Error(`${args.join(" ")}: ${dec.decode(out.stderr)}`);
}

/** Opens a vnet-header tap named `name` inside netns `ns` (setns there and back). */
function openTap(ns: string, name: string): number {
  const self = libc.open(cstr("/proc/thread-self/ns/net"), O_CLOEXEC, 0);
  const target = libc.open(cstr(`/run/netns/${ns}`), O_CLOEXEC, 0);
  assert.ok(self >= 0 && target >= 0, "netns fds");
  try {
    assert.equal(libc.setns(target, CLONE_NEWNET), 0, "setns into the test netns");
    try {
      const fd = libc.open(cstr("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
      assert.ok(fd >= 0, "open /dev/net/tun");
      const ifr = new Uint8Array(40);
      ifr.set(enc.encode(name));
      new DataView(ifr.buffer).setUint16(16, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
      assert.equal(libc.ioctl(fd, TUNSETIFF, ifr), 0, "TUNSETIFF");
      assert.equal(
        libc.ioctlVal(fd, TUNSETOFFLOAD, BigInt(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)),
        0,
      );
      return fd;
    } finally {
      assert.equal(libc.setns(self, CLONE_NEWNET), 0, "setns back");
    }
  } finally {
    libc.close(self);
    libc.close(target);
  }
}

const GUEST_MAC = new Uint8Array([2, 0, 0, 0, 0, 0x0f]);
const HOST_MAC = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
const GUEST4 = parseIp("10.0.2.15")!, HOST4 = parseIp("10.0.2.2")!;
const GUEST6 = parseIp("fd00::15")!, HOST6 = parseIp("fd00::2")!;

const rx = new Uint8Array(128 * 1024);
const tx = new Uint8Array(128 * 1024);
const vnet = new VnetView();
const eth = new EthernetView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const tcp = new TcpView();
const udp = new UdpView();

interface L4 {
  v6: boolean;
  proto: number;
  o: number;
  n: number;
  ipOff: number;
}

/** Parses rx[0, n) as vnet header + Ethernet + IP; null for anything else. */
function parseFrame(n: number): L4 | null {
  if (!vnet.parse(rx, 0, n) || !eth.parse(rx, VNET_HDR_LEN, n - VNET_HDR_LEN)) return null;
  const ipOff = VNET_HDR_LEN + ETH_HLEN;
  if (eth.etherType === ETH_P_IP && ip4.parse(rx, ipOff, n - ipOff)) {
    return { v6: false, proto: ip4.protocol, o: ip4.payloadOffset, n: ip4.payloadLen, ipOff };
  }
  if (eth.etherType === ETH_P_IPV6 && ip6.parse(rx, ipOff, n - ipOff)) {
    return { v6: true, proto: ip6.protocol, o: ip6.l4Offset, n: ip6.l4Len, ipOff };
  }
  return null;
}

/** The pseudo-header sum of the received frame's addresses. */
function rxPseudo(l: L4, proto: number, len: number): number {
  return l.v6
    ? pseudoSum(rx, ip6.srcOffset, ip6.dstOffset, 16, proto, len)
    : pseudoSum(rx, ip4.srcOffset, ip4.dstOffset, 4, proto, len);
}

/**
 * Writes vnet header + Ethernet + IP + TCP from the host to the guest into `tx`, with
 * `payload` bytes already at the payload offset; returns the frame length.
 */
function hostTcp(
  fd: number,
  v6: boolean,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  payloadLen: number,
  gsoSize = 0,
): number {
  const ipOff = VNET_HDR_LEN + ETH_HLEN;
  const l4 = ipOff + (v6 ? IPV6_HLEN : IPV4_HLEN);
  const src = v6 ? HOST6 : HOST4, dst = v6 ? GUEST6 : GUEST4;
  const ol = flags & TCP_SYN
    ? writeTcpOptions(tx, l4 + TCP_HLEN, {
      mss: 1460,
      wscale: 7,
      sackPermitted: false,
      hasTimestamp: false,
      tsVal: 0,
      tsEcr: 0,
    })
    : 0;
  const hl = emitTcp(tx, l4, sport, dport, seq, ack, flags, 65535, ol);
  const len = hl + payloadLen;
  if (v6) emitIpv6(tx, ipOff, 0, 0, len, IPPROTO_TCP, 64, src, dst);
  else emitIpv4(tx, ipOff, 0, IPV4_HLEN + len, 0, IPV4_DF, 64, IPPROTO_TCP, src, dst);
  emitEthernet(tx, VNET_HDR_LEN, GUEST_MAC, HOST_MAC, v6 ? ETH_P_IPV6 : ETH_P_IP);
  if (gsoSize > 0) {
    // A super-frame: the guest kernel segments it; the checksum field holds the pseudo sum.
    setTcpPartialChecksum(tx, l4, len, src, dst);
    emitVnet(
      tx,
      0,
      VIRTIO_NET_HDR_F_NEEDS_CSUM,
      v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
      l4 - VNET_HDR_LEN + hl,
      gsoSize,
      l4 - VNET_HDR_LEN,
      TCP_CSUM_OFFSET,
    );
  } else {
    setTcpChecksum(tx, l4, len, src, dst); // no flags: the guest verifies it
    emitVnet(tx, 0, 0, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 0, 0);
  }
  const n = l4 + len;
  assert.equal(Number(libc.write(fd, tx, BigInt(n))), n, "tap write");
  return n;
}

/** Reads frames until `handle` returns true or `ms` pass; yields to the event loop when idle. */
async function pump(fd: number, ms: number, handle: (n: number) => boolean): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = Number(libc.read(fd, rx, BigInt(rx.length)));
    if (n <= 0) {
      await sleep(1);
      continue;
    }
    if (handle(n)) return true;
  }
  return false;
}

async function withGuest(fn: (fd: number, ns: string) => Promise<void>) {
  const ns = `wirev-${crypto.randomUUID().slice(0, 8)}`;
  await run(["ip", "netns", "add", ns]);
  let fd = -1;
  try {
    fd = openTap(ns, "tapv");
    for (
      const c of [
        "link set lo up",
        "link set tapv address 02:00:00:00:00:0f mtu 1500 up",
        "addr add 10.0.2.15/24 dev tapv",
        "addr add fd00::15/64 dev tapv nodad",
        "neigh add 10.0.2.2 lladdr 52:55:0a:00:02:02 dev tapv nud permanent",
        "neigh add fd00::2 lladdr 52:55:0a:00:02:02 dev tapv nud permanent",
      ]
    ) await run(["ip", "-n", ns, ...c.split(" ")]);
    await fn(fd, ns);
  } finally {
    if (fd >= 0) libc.close(fd);
    await run(["ip", "netns", "del", ns]);
  }
}

function guest(ns: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: ["netns", "exec", ns, "timeout", "20", ...args],
    stdout: "piped",
    stderr: "null",
  })
    .spawn();
}

for (const v6 of [false, true]) {
  test(`vnet tap: guest TCP over IPv${v6 ? 6 : 4} arrives as GSO super-frames with partial checksums`, async () => {
    await withGuest(async (fd, ns) => {
      const data = new Uint8Array(300_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
      const file = Deno.makeTempFileSync();
      Deno.writeFileSync(file, data);
      const host = v6 ? "[fd00::2]" : "10.0.2.2";
      const sender = guest(ns, [
        "socat",
        "-u",
        `OPEN:${file}`,
        `TCP${v6 ? 6 : 4}:${host}:8080,sourceport=41000`,
      ]);
      try {
        const got = new Uint8Array(data.length);
        let iss = 0, received = 0, gsoFrames = 0, maxFrame = 0, synAcked = false, done = false;
        const myIss = 0x7ffffff0;
        const ok = await pump(fd, 10_000, (n) => {
          const l = parseFrame(n);
          if (!l || l.proto !== IPPROTO_TCP || !tcp.parse(rx, l.o, l.n) || tcp.dstPort !== 8080) {
            return false;
          }
          if (tcp.flags & TCP_SYN) {
            iss = tcp.seq;
            hostTcp(fd, v6, 8080, 41000, myIss, (iss + 1) >>> 0, TCP_SYN | TCP_ACK, 0);
            synAcked = true;
            return false;
          }
          assert.ok(synAcked);
          if (tcp.payloadLen > 0) {
            // Every data frame: checksum offloaded to us, starting at the TCP header.
            assert.ok(vnet.needsCsum, "NEEDS_CSUM");
            assert.equal(vnet.csumStart, l.o - VNET_HDR_LEN);
            assert.equal(vnet.csumOffset, TCP_CSUM_OFFSET);
            // The field holds the folded pseudo-header sum over this frame's length: exactly
            // what setTcpPartialChecksum writes.
            assert.equal(tcp.checksum, fold(rxPseudo(l, IPPROTO_TCP, l.n)), "partial checksum");
            if ((vnet.gsoType & 0x7f) !== VIRTIO_NET_HDR_GSO_NONE) {
              gsoFrames++;
              assert.equal(
                vnet.gsoType & 0x7f,
                v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
              );
              assert.equal(vnet.gsoSize, v6 ? 1440 : 1460, "gso_size is the MSS");
              assert.ok(
                vnet.hdrLen >= l.o - VNET_HDR_LEN + tcp.headerLen,
                "hdr_len covers the headers",
              );
              assert.ok(tcp.payloadLen > vnet.gsoSize);
            }
            maxFrame = Math.max(maxFrame, n);
            // Completing the partial sum gives a checksum that verifies.
            completePartial(rx, l.o, l.o + l.n, l.o + TCP_CSUM_OFFSET);
            assert.ok(
              v6
                ? tcp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset)
                : tcp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset),
            );
            const off = (tcp.seq - iss - 1) >>> 0;
            if (off === received) {
              got.set(rx.subarray(tcp.payloadOffset, tcp.payloadOffset + tcp.payloadLen), off);
              received += tcp.payloadLen;
            }
          }
          let ackFlags = TCP_ACK;
          if (tcp.flags & TCP_FIN) {
            done = true;
            ackFlags |= TCP_FIN;
          }
          hostTcp(
            fd,
            v6,
            8080,
            41000,
            (myIss + 1) >>> 0,
            (iss + 1 + received + (done ? 1 : 0)) >>> 0,
            ackFlags,
            0,
          );
          return done;
        });
        assert.ok(ok, `connection finished (received ${received})`);
        assert.equal(received, data.length);
        assert.ok(bytesEqual(got, 0, data, 0, data.length), "payload reassembled in order");
        assert.ok(gsoFrames > 0, "TSO super-frames seen");
        assert.ok(maxFrame > 1514 + VNET_HDR_LEN, `frames above the MTU (max ${maxFrame})`);
      } finally {
        try {
          sender.kill("SIGKILL");
        } catch { /* exited */ }
        await sender.output();
        Deno.removeSync(file);
      }
    });
  });
}

test("vnet tap: guest UDP carries NEEDS_CSUM with the pseudo-header sum", async () => {
  await withGuest(async (fd, ns) => {
    for (const v6 of [false, true]) {
      const host = v6 ? "[fd00::2]" : "10.0.2.2";
      const p = guest(ns, [
        "sh",
        "-c",
        `printf 'vnet udp' | socat -u STDIN UDP${v6 ? 6 : 4}-SENDTO:${host}:5353,sourceport=41053`,
      ]);
      const seen = await pump(fd, 5000, (n) => {
        const l = parseFrame(n);
        if (
          !l || l.v6 !== v6 || l.proto !== IPPROTO_UDP || !udp.parse(rx, l.o, l.n) ||
          udp.dstPort !== 5353
        ) return false;
        assert.ok(vnet.needsCsum);
        assert.equal(vnet.gsoType, VIRTIO_NET_HDR_GSO_NONE);
        assert.equal(vnet.csumStart, l.o - VNET_HDR_LEN);
        assert.equal(vnet.csumOffset, 6);
        // setUdpPartialChecksum writes the same field.
        const field = udp.checksum;
        setUdpPartialChecksum(rx, l.o, udp.length, v6 ? GUEST6 : GUEST4, v6 ? HOST6 : HOST4);
        assert.equal(u16(rx, l.o + 6), field);
        completePartial(rx, l.o, l.o + udp.length, l.o + 6);
        assert.ok(
          v6
            ? udp.verifyChecksum(16, ip6.srcOffset, ip6.dstOffset)
            : udp.verifyChecksum(4, ip4.srcOffset, ip4.dstOffset),
        );
        assert.equal(
          dec.decode(rx.subarray(udp.payloadOffset, udp.payloadOffset + udp.payloadLen)),
          "vnet udp",
        );
        return true;
      });
      await p.output();
      assert.ok(seen, `UDP over IPv${v6 ? 6 : 4} seen`);
    }
  });
});

for (const v6 of [false, true]) {
  test(`vnet tap: a GSO super-frame we emit over IPv${v6 ? 6 : 4} reaches the guest socket whole`, async () => {
    await withGuest(async (fd, ns) => {
      const port = 9090;
      const rcv = guest(ns, ["socat", "-u", `TCP${v6 ? 6 : 4}-LISTEN:${port},reuseaddr`, "STDOUT"]);
      try {
        await sleep(300);
        const myIss = 0xfffff000; // wraps inside the super-frame
        let guestIss = -1;
        // SYN until the SYN-ACK comes (the listener may take a moment to start).
        for (let i = 0; i < 20 && guestIss < 0; i++) {
          hostTcp(fd, v6, 42000, port, myIss, 0, TCP_SYN, 0);
          await pump(fd, 250, (n) => {
            const l = parseFrame(n);
            if (
              l && l.proto === IPPROTO_TCP && tcp.parse(rx, l.o, l.n) && tcp.srcPort === port &&
              tcp.flags === (TCP_SYN | TCP_ACK)
            ) guestIss = tcp.seq;
            return guestIss >= 0;
          });
        }
        assert.ok(guestIss >= 0, "SYN-ACK from the guest");
        hostTcp(fd, v6, 42000, port, (myIss + 1) >>> 0, (guestIss + 1) >>> 0, TCP_ACK, 0);
        // One 30000-byte segment, to be cut into 1000-byte segments by the guest kernel.
        const size = 30000;
        const l4 = VNET_HDR_LEN + ETH_HLEN + (v6 ? IPV6_HLEN : IPV4_HLEN);
        for (let i = 0; i < size; i++) tx[l4 + TCP_HLEN + i] = 0x41 + (i % 26);
        hostTcp(
          fd,
          v6,
          42000,
          port,
          (myIss + 1) >>> 0,
          (guestIss + 1) >>> 0,
          TCP_ACK | TCP_PSH,
          size,
          1000,
        );
        // Wait for the guest to ACK all of it, then close with a RST.
        const acked = await pump(fd, 5000, (n) => {
          const l = parseFrame(n);
          return l !== null && l.proto === IPPROTO_TCP && tcp.parse(rx, l.o, l.n) &&
            tcp.srcPort === port &&
            tcp.ack === ((myIss + 1 + size) >>> 0);
        });
        assert.ok(acked, "the guest ACKed the whole super-frame");
        hostTcp(
          fd,
          v6,
          42000,
          port,
          (myIss + 1 + size) >>> 0,
          (guestIss + 1) >>> 0,
          TCP_RST | TCP_ACK,
          0,
        );
        const out = await rcv.output();
        assert.equal(out.stdout.length, size);
        for (let i = 0; i < size; i++) assert.equal(out.stdout[i], 0x41 + (i % 26));
      } finally {
        try {
          rcv.kill("SIGKILL");
        } catch { /* exited */ }
        await rcv.status;
      }
    });
  });
}
