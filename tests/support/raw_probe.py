# Raw probes from the guest: frames built with scapy and written straight onto the guest's tap,
# addressed to slirpd's MAC, so the guest kernel's own routing and source selection are not in
# the way (it would refuse most of these destinations and sources itself).
#
#   raw_probe.py IFACE SRC4 SRC6 PROBE...     PROBE = tcp|udp/DST/PORT[/SRC]
#
# Prints one JSON object: for each probe (in order) the replies seen within the wait, as short
# strings: "tcp SA" (SYN-ACK), "tcp RA", "udp <payload>", "icmp 3/1", "icmp6 1/0".
import json, sys, time
from scapy.all import (AsyncSniffer, Ether, ICMP, ICMPv6DestUnreach, IP, IPv6, Raw, TCP, UDP,
                       get_if_hwaddr, sendp, conf)

conf.verb = 0
GW_MAC = "52:55:0a:00:02:02"
iface, src4, src6 = sys.argv[1], sys.argv[2], sys.argv[3]
probes = sys.argv[4:]
mac = get_if_hwaddr(iface)
sport0 = 40000
frames, keys = [], []
for i, p in enumerate(probes):
    parts = p.split("/")
    proto, dst, port = parts[0], parts[1], int(parts[2])
    v6 = ":" in dst
    src = parts[3] if len(parts) > 3 else (src6 if v6 else src4)
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    sport = sport0 + i
    l4 = TCP(sport=sport, dport=port, flags="S", seq=1000) if proto == "tcp" else \
        UDP(sport=sport, dport=port) / Raw(b"probe %d" % i)
    frames.append(Ether(src=mac, dst=GW_MAC) / ip / l4)
    keys.append(sport)

def classify(pkt):
    """(probe index, text) of a reply, or None."""
    if TCP in pkt and not pkt.haslayer(ICMP) and not pkt.haslayer(ICMPv6DestUnreach):
        i = pkt[TCP].dport - sport0
        if 0 <= i < len(keys) and pkt[Ether].src.lower() == GW_MAC:
            return i, "tcp " + str(pkt[TCP].flags)
    if UDP in pkt and not pkt.haslayer(ICMP) and not pkt.haslayer(ICMPv6DestUnreach):
        i = pkt[UDP].dport - sport0
        if 0 <= i < len(keys) and pkt[Ether].src.lower() == GW_MAC:
            return i, "udp " + bytes(pkt[UDP].payload).decode(errors="replace")
    if pkt.haslayer(ICMP) and pkt[ICMP].type == 3:
        inner = pkt[ICMP].payload
        for L in (TCP, UDP):
            if inner.haslayer(L):
                i = inner[L].sport - sport0
                if 0 <= i < len(keys):
                    return i, "icmp %d/%d" % (pkt[ICMP].type, pkt[ICMP].code)
    if pkt.haslayer(ICMPv6DestUnreach):
        inner = pkt[ICMPv6DestUnreach].payload
        for L in (TCP, UDP):
            if inner.haslayer(L):
                i = inner[L].sport - sport0
                if 0 <= i < len(keys):
                    return i, "icmp6 1/%d" % pkt[ICMPv6DestUnreach].code
    return None

seen = [[] for _ in probes]
def on(pkt):
    r = classify(pkt)
    if r is not None:
        seen[r[0]].append(r[1])

sn = AsyncSniffer(iface=iface, prn=on, store=False)
sn.start()
time.sleep(0.5)
for f in frames:
    sendp(f, iface=iface)
    time.sleep(0.05)
time.sleep(float(__import__("os").environ.get("PROBE_WAIT", "2")))
sn.stop()
print(json.dumps(dict(zip(probes, seen))))
