#!/usr/bin/env bash
# Regenerates tests/fixtures/capture.pcap and tests/fixtures/frames.ts: real frames made by the
# Linux kernel, used by tests/wire_*.test.ts as ground truth for the stack/wire views.
#
# Two namespaces we create (random suffix) joined by a veth pair with fixed MACs:
#   A: va 02:00:00:00:00:0a  192.0.2.1/24  2001:db8::1/64 (nodad)
#   B: vb 02:00:00:00:00:0b  192.0.2.2/24  2001:db8::2/64 (nodad)
# dumpcap captures on vb (inside B) while A talks to B: link-up (RS, MLDv2 with a hop-by-hop
# header, DAD NS), UDP with the veth's checksum offload still on (the frames then carry the
# partial pseudo-header sum, like a guest's NEEDS_CSUM frames), then with offload off: ARP,
# ping, ping -6 (NS/NA), UDP to open and closed ports (ICMP/ICMPv6 port unreachable), TCP
# over v4 and v6 (kernel SYN options), a TCP RST, and 3000-byte UDP datagrams that the kernel
# fragments (IPv4 fragments and IPv6 Fragment headers).
#
# Needs root, ip, dumpcap/tshark, socat, ping, deno. Run from anywhere:
#   sudo scripts/capture_fixtures.sh
# tshark's own dissection of selected fields is stored next to each frame, so the tests check
# our views against an independent decoder and survive a re-capture (seq numbers, ids and
# timestamps change each time).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_PCAP="$ROOT/tests/fixtures/capture.pcap"
OUT_TS="$ROOT/tests/fixtures/frames.ts"
SUF="$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
A="wirefxa-$SUF"
B="wirefxb-$SUF"
TMP="$(mktemp -d)"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Turns the tx checksum offload of a device on (1) or off (0) with the SIOCETHTOOL ioctl
# (ethtool itself is not installed everywhere). The kernel then also drops TSO/GSO, which
# depend on it, so captured frames are wire-sized and carry full checksums.
set_txcsum() { # netns ifname 0|1
  ip netns exec "$1" deno eval "
    const libc = Deno.dlopen('libc.so.6', {
      socket: { parameters: ['i32', 'i32', 'i32'], result: 'i32' },
      ioctl: { parameters: ['i32', 'u64', 'buffer'], result: 'i32' },
    }).symbols;
    const fd = libc.socket(2, 2, 0);
    const val = new Uint32Array([0x17, $3]); // struct ethtool_value { ETHTOOL_STXCSUM, data }
    const ifr = new Uint8Array(40);
    ifr.set(new TextEncoder().encode('$2'));
    new DataView(ifr.buffer).setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(val))), true);
    if (libc.ioctl(fd, 0x8946n, ifr) !== 0) throw new Error('SIOCETHTOOL failed');
  "
}

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b netns "$B"
# A solicits routers right after its link-local address passes DAD.
ip netns exec "$A" sysctl -qw net.ipv6.conf.va.router_solicitation_delay=0
ip netns exec "$A" sysctl -qw net.ipv6.conf.va.accept_ra=1
ip netns exec "$B" sysctl -qw net.ipv6.conf.vb.dad_transmits=0
ip -n "$B" link set vb up

ip netns exec "$B" dumpcap -q -P -i vb -w "$TMP/cap.pcap" 2>"$TMP/dumpcap.err" &
PIDS+=($!)
for _ in $(seq 50); do grep -q "Capturing" "$TMP/dumpcap.err" 2>/dev/null && break; sleep 0.1; done
sleep 0.5

ip -n "$A" addr add 192.0.2.1/24 dev va
ip -n "$A" addr add 2001:db8::1/64 dev va nodad
ip -n "$B" addr add 192.0.2.2/24 dev vb
ip -n "$B" addr add 2001:db8::2/64 dev vb nodad
ip -n "$A" link set va up
sleep 3 # DAD NS for A's link-local address, MLDv2 reports, then a router solicitation

# Listeners in B. -u: receive only. Each ends by itself (timeout) at the latest.
ip netns exec "$B" timeout 30 socat -u UDP4-RECV:7001 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u UDP6-RECV:7001,ipv6only=1 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u UDP4-RECV:7002 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u UDP6-RECV:7002,ipv6only=1 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u UDP4-RECV:7003 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u UDP6-RECV:7003,ipv6only=1 OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u TCP4-LISTEN:8080,reuseaddr OPEN:/dev/null &
PIDS+=($!)
ip netns exec "$B" timeout 30 socat -u TCP6-LISTEN:8081,reuseaddr OPEN:/dev/null &
PIDS+=($!)
sleep 0.5

# Phase 1, offload on: UDP checksums are partial (ARP and NS/NA happen here too).
printf 'partial v4' | ip netns exec "$A" socat -u STDIN UDP4-SENDTO:192.0.2.2:7001,sourceport=40001
printf 'partial v6' | ip netns exec "$A" socat -u STDIN UDP6-SENDTO:[2001:db8::2]:7001,sourceport=40001
sleep 0.3

# Phase 2, offload off on both ends: full checksums from here on.
set_txcsum "$A" va 0
set_txcsum "$B" vb 0
ip netns exec "$A" ip neigh flush dev va # so the pings below resolve again: ARP, NS/NA
ip netns exec "$A" ping -c1 -W2 -s 24 192.0.2.2 >/dev/null
ip netns exec "$A" ping -6 -c1 -W2 -s 24 2001:db8::2 >/dev/null
printf 'hello udp v4' | ip netns exec "$A" socat -u STDIN UDP4-SENDTO:192.0.2.2:7002,sourceport=40002
printf 'hello udp v6' | ip netns exec "$A" socat -u STDIN UDP6-SENDTO:[2001:db8::2]:7002,sourceport=40002
printf 'nobody here' | ip netns exec "$A" socat -u STDIN UDP4-SENDTO:192.0.2.2:7009,sourceport=40009
printf 'nobody here' | ip netns exec "$A" socat -u STDIN UDP6-SENDTO:[2001:db8::2]:7009,sourceport=40009
printf 'hello tcp v4\n' | ip netns exec "$A" socat -u STDIN TCP4:192.0.2.2:8080,sourceport=40080
printf 'hello tcp v6\n' | ip netns exec "$A" socat -u STDIN TCP6:[2001:db8::2]:8081,sourceport=40081
ip netns exec "$A" socat -u STDIN TCP4:192.0.2.2:8099,sourceport=40099 </dev/null 2>/dev/null || true
# 3000 bytes of a repeating pattern in one datagram: MTU 1500 makes the kernel fragment it.
PATTERN="$(for _ in $(seq 100); do printf '0123456789abcdefghijklmnopqrst'; done)"
printf '%s' "$PATTERN" >"$TMP/big"
ip netns exec "$A" socat -u OPEN:"$TMP/big" UDP4-SENDTO:192.0.2.2:7003,sourceport=40003
ip netns exec "$A" socat -u OPEN:"$TMP/big" UDP6-SENDTO:[2001:db8::2]:7003,sourceport=40003
sleep 1

kill -INT "${PIDS[0]}"
wait "${PIDS[0]}" || true
cp "$TMP/cap.pcap" "$OUT_PCAP"

# name | display filter (first match is taken) | what it is
cat >"$TMP/select" <<'EOF'
nsDad|icmpv6.type==135 && ipv6.src==::|DAD neighbour solicitation from :: for A's link-local address
mldv2Report|icmpv6.type==143|MLDv2 report behind a hop-by-hop header (router alert)
rs|icmpv6.type==133|router solicitation with a source link-layer address option
udp4Partial|udp.dstport==7001 && ip|UDPv4, tx checksum offload on: checksum field holds the partial pseudo-header sum
udp6Partial|udp.dstport==7001 && ipv6|UDPv6, tx checksum offload on: partial checksum
arpRequest|arp.opcode==1 && arp.dst.proto_ipv4==192.0.2.2|ARP who-has 192.0.2.2 tell 192.0.2.1
arpReply|arp.opcode==2 && arp.src.proto_ipv4==192.0.2.2|ARP 192.0.2.2 is-at 02:00:00:00:00:0b
icmp4EchoRequest|icmp.type==8|ping 192.0.2.2, 24 data bytes
icmp4EchoReply|icmp.type==0|reply to it
ns|icmpv6.type==135 && icmpv6.nd.ns.target_address==2001:db8::2 && !(ipv6.src==::)|neighbour solicitation for 2001:db8::2 (to the solicited-node group)
na|icmpv6.type==136 && icmpv6.nd.na.flag.s==1 && icmpv6.nd.na.target_address==2001:db8::2|solicited neighbour advertisement
icmp6EchoRequest|icmpv6.type==128|ping -6 2001:db8::2, 24 data bytes
icmp6EchoReply|icmpv6.type==129|reply to it
udp4|udp.dstport==7002 && ip|UDPv4 "hello udp v4" with a full checksum
udp6|udp.dstport==7002 && ipv6|UDPv6 "hello udp v6"
icmp4PortUnreachable|icmp.type==3 && icmp.code==3|B's port unreachable for UDP to 7009 (quotes the datagram)
icmp6PortUnreachable|icmpv6.type==1 && icmpv6.code==4|B's ICMPv6 port unreachable for UDP to 7009
tcp4Syn|tcp.flags==0x002 && tcp.dstport==8080|kernel SYN: MSS, SACK-permitted, timestamps, window scale
tcp4SynAck|tcp.flags==0x012 && tcp.srcport==8080|kernel SYN-ACK
tcp4Data|tcp.len>0 && tcp.dstport==8080|"hello tcp v4\n" with PSH|ACK and timestamps
tcp4Fin|tcp.flags.fin==1 && tcp.dstport==8080|A's FIN
tcp6Syn|tcp.flags==0x002 && tcp.dstport==8081|kernel SYN over IPv6
tcp6SynAck|tcp.flags==0x012 && tcp.srcport==8081|kernel SYN-ACK over IPv6
tcp6Data|tcp.len>0 && tcp.dstport==8081|"hello tcp v6\n"
tcp4Rst|tcp.flags.reset==1 && tcp.srcport==8099|RST|ACK from B for a SYN to a closed port
ip4Frag0|ip.flags.mf==1 && ip.frag_offset==0|first IPv4 fragment of the 3000-byte UDP datagram (has the UDP header)
ip4Frag1|ip.flags.mf==1 && ip.frag_offset>0|middle IPv4 fragment
ip4FragLast|ip.flags.mf==0 && ip.frag_offset>0|last IPv4 fragment
ip6Frag0|ipv6.fraghdr.offset==0 && ipv6.fraghdr.more==1|first IPv6 fragment (Fragment header, then UDP)
ip6FragLast|ipv6.fraghdr.more==0 && ipv6.fraghdr.offset>0|last IPv6 fragment
EOF

FIELDS=(eth.dst eth.src eth.type arp.opcode arp.src.hw_mac arp.src.proto_ipv4 arp.dst.hw_mac
  arp.dst.proto_ipv4 ip.version ip.hdr_len ip.dsfield ip.len ip.id ip.flags.df ip.flags.mf
  ip.frag_offset ip.ttl ip.proto ip.checksum ip.src ip.dst ipv6.plen ipv6.nxt ipv6.hlim
  ipv6.flow ipv6.src ipv6.dst ipv6.hopopts.nxt ipv6.hopopts.len ipv6.fraghdr.nxt
  ipv6.fraghdr.offset ipv6.fraghdr.more ipv6.fraghdr.ident icmp.type icmp.code icmp.checksum
  icmp.ident icmp.seq icmpv6.type icmpv6.code icmpv6.checksum icmpv6.echo.identifier
  icmpv6.echo.sequence_number icmpv6.nd.ns.target_address icmpv6.nd.na.target_address
  icmpv6.nd.na.flag.r icmpv6.nd.na.flag.s icmpv6.nd.na.flag.o icmpv6.opt.type
  icmpv6.opt.linkaddr udp.srcport udp.dstport udp.length udp.checksum tcp.srcport tcp.dstport
  tcp.seq_raw tcp.ack_raw tcp.hdr_len tcp.flags tcp.window_size_value tcp.checksum
  tcp.urgent_pointer tcp.options.mss_val tcp.options.wscale.shift tcp.options.sack_perm
  tcp.options.timestamp.tsval tcp.options.timestamp.tsecr tcp.len)
EFLAGS=()
for f in "${FIELDS[@]}"; do EFLAGS+=(-e "$f"); done
TSHARK_OPTS=(-o ip.defragment:FALSE -o ipv6.defragment:FALSE -o udp.check_checksum:FALSE)

: >"$TMP/sel.tsv"
while IFS='|' read -r name filter what; do
  num="$(tshark -r "$OUT_PCAP" "${TSHARK_OPTS[@]}" -Y "$filter" -T fields -e frame.number 2>/dev/null | awk 'NR == 1')"
  [ -n "$num" ] || { echo "no frame for $name ($filter)" >&2; exit 1; }
  # occurrence=f: the outer header's field when an ICMP error quotes an inner one.
  vals="$(tshark -r "$OUT_PCAP" "${TSHARK_OPTS[@]}" -Y "frame.number==$num" -T fields -E occurrence=f \
    -E separator='|' "${EFLAGS[@]}" 2>/dev/null)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$num" "$what" "$vals" >>"$TMP/sel.tsv"
done <"$TMP/select"

sed -n '/^# Phase 1/,/^sleep 1$/p' "$0" | sed 's/^/\/\/   /' >"$TMP/cmds"
KERNEL="$(uname -r)"
deno eval "
const pcap = Deno.readFileSync('$OUT_PCAP');
const dv = new DataView(pcap.buffer);
if (dv.getUint32(0, true) !== 0xa1b2c3d4) throw new Error('expected a little-endian microsecond pcap');
const frames = [];
for (let o = 24; o + 16 <= pcap.length;) {
  const len = dv.getUint32(o + 8, true);
  frames.push(pcap.subarray(o + 16, o + 16 + len));
  o += 16 + len;
}
const fields = '${FIELDS[*]}'.split(' ');
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
let s = '// GENERATED by scripts/capture_fixtures.sh (kernel $KERNEL); do not edit by hand.\n';
s += '// Real frames captured with dumpcap on vb (namespace B) while namespace A (va, 192.0.2.1,\n';
s += '// 2001:db8::1, 02:00:00:00:00:0a) talked to B (vb, 192.0.2.2, 2001:db8::2, 02:00:00:00:00:0b).\n';
s += '// Frames were produced by these commands (see the script for the namespace setup):\n';
s += Deno.readTextFileSync('$TMP/cmds').replaceAll('//   \n', '//\n');
s += '// \`tshark\` holds tshark 4 (-o ip.defragment:FALSE) dissection of the frame: an independent\n';
s += '// decoder to check the views against. Hex strings are whole Ethernet frames.\n\n';
s += 'export interface Frame {\n  /** What the frame is. */\n  what: string;\n  /** Frame number in capture.pcap. */\n  number: number;\n  hex: string;\n  tshark: Record<string, string>;\n}\n\n';
s += 'export const frames = {\n';
for (const line of Deno.readTextFileSync('$TMP/sel.tsv').trimEnd().split('\n')) {
  const [name, num, what, vals] = line.split('\t');
  const vs = vals.split('|');
  const t = {};
  fields.forEach((f, i) => { if (vs[i] !== undefined && vs[i] !== '') t[f] = vs[i]; });
  s += '  ' + name + ': {\n    what: ' + JSON.stringify(what) + ',\n    number: ' + num + ',\n';
  s += '    hex: ' + JSON.stringify(hex(frames[Number(num) - 1])) + ',\n';
  s += '    tshark: ' + JSON.stringify(t) + ',\n  },\n';
}
s += '} satisfies Record<string, Frame>;\n\n';
s += 'export type FrameName = keyof typeof frames;\n\n';
s += '/** The frame as bytes, in a fresh buffer. */\n';
s += 'export function frameBytes(name: FrameName): Uint8Array {\n';
s += '  const h = frames[name].hex;\n  const b = new Uint8Array(h.length / 2);\n';
s += '  for (let i = 0; i < b.length; i++) b[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);\n  return b;\n}\n';
Deno.writeTextFileSync('$OUT_TS', s);
"
deno fmt -q "$OUT_TS"
echo "wrote $OUT_PCAP and $OUT_TS ($(wc -l <"$TMP/sel.tsv") frames)"
