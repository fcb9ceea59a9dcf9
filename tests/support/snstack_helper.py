# Parent-side helpers for the slirpnetstack parity tests (tests/ns/snstack_*.test.ts): the
# things a test can only do as slirpd's parent or with inherited descriptors.
#
#   winch LOG CMD...      run CMD (stderr to LOG); wait for SIGWINCH; SIGTERM it; "WINCH", "EXIT n"
#   orphan LOG CMD...     run CMD (stderr to LOG) until it is started; print "CHILD pid"; exit
#                         without waiting (CMD's parent dies)
#   dgram LOG CMD...      socketpair(AF_UNIX, SOCK_DGRAM): run CMD with "-fd N" appended; send an
#                         ARP who-has 10.0.2.2 and a ping to it; "ARP OK", "PING OK"; SIGTERM;
#                         "EXIT n"
#   tapfd LOG IF CMD...   (inside a netns) open tap IF, run CMD with "-fd N"; configure IF with
#                         10.0.2.100/24, ping 10.0.2.2; "PING OK"; SIGTERM; "EXIT n"
# Every wait is bounded; failures print "FAIL why" and exit 1.

import fcntl, os, signal, socket, struct, subprocess, sys, time

GW_MAC = bytes.fromhex("52550a000202")
ME_MAC = bytes.fromhex("020000000064")
GW = bytes([10, 0, 2, 2])
ME = bytes([10, 0, 2, 100])


def fail(why):
    print("FAIL", why, flush=True)
    sys.exit(1)


def wait_started(log, proc, secs=60):
    end = time.time() + secs
    while time.time() < end:
        with open(log, "rb") as f:
            if b"Slirpnetstack started" in f.read():
                return
        if proc.poll() is not None:
            fail("slirpd exited %d before it started" % proc.returncode)
        time.sleep(0.1)
    fail("slirpd did not start")


def wait_exit(proc, secs=20):
    try:
        return proc.wait(secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("slirpd did not exit")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def arp_request():
    eth = b"\xff" * 6 + ME_MAC + b"\x08\x06"
    return eth + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + ME_MAC + ME + b"\0" * 6 + GW


def ping_request(seq):
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq) + b"slirpd-fd" * 4
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0, ME, GW)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return GW_MAC + ME_MAC + b"\x08\x00" + ip + icmp


def read_until(s, pred, secs=10):
    end = time.time() + secs
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            f = s.recv(65536)
        except socket.timeout:
            break
        if pred(f):
            return f
    return None


def is_arp_reply(f):
    return len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[22:28] == GW_MAC and f[28:32] == GW


def is_echo_reply(f):
    return len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 1 and f[26:30] == GW and f[34] == 0


def main():
    mode, log = sys.argv[1], sys.argv[2]
    out = open(log, "wb")
    if mode == "winch":
        got = []
        signal.signal(signal.SIGWINCH, lambda *_: got.append(1))
        p = subprocess.Popen(sys.argv[3:], stderr=out, stdout=subprocess.DEVNULL)
        end = time.time() + 60
        while not got and time.time() < end and p.poll() is None:
            time.sleep(0.05)
        if got:
            print("WINCH", flush=True)
        p.send_signal(signal.SIGTERM)
        print("EXIT", wait_exit(p), flush=True)
    elif mode == "orphan":
        p = subprocess.Popen(sys.argv[3:], stderr=out, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_started(log, p)
        print("CHILD", p.pid, flush=True)
        os._exit(0)
    elif mode == "dgram":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        p = subprocess.Popen(sys.argv[3:] + ["-fd", str(b.fileno())], pass_fds=[b.fileno()], stderr=out, stdout=subprocess.DEVNULL)
        b.close()
        wait_started(log, p)
        a.send(arp_request())
        if read_until(a, is_arp_reply) is None:
            p.kill()
            fail("no ARP reply")
        print("ARP OK", flush=True)
        a.send(ping_request(1))
        if read_until(a, is_echo_reply) is None:
            p.kill()
            fail("no echo reply")
        print("PING OK", flush=True)
        p.send_signal(signal.SIGTERM)
        print("EXIT", wait_exit(p), flush=True)
    elif mode == "tapfd":
        ifname = sys.argv[3]
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", ifname.encode(), 0x0002 | 0x1000))
        p = subprocess.Popen(sys.argv[4:] + ["-fd", str(fd)], pass_fds=[fd], stderr=out, stdout=subprocess.DEVNULL)
        os.close(fd)
        wait_started(log, p)
        for cmd in (["ip", "addr", "add", "10.0.2.100/24", "dev", ifname], ["ip", "link", "set", ifname, "up"]):
            subprocess.run(cmd, check=True)
        r = subprocess.run(["ping", "-c", "2", "-i", "0.2", "-W", "3", "10.0.2.2"], capture_output=True)
        if r.returncode != 0:
            p.kill()
            fail("ping: " + r.stdout.decode() + r.stderr.decode())
        print("PING OK", flush=True)
        p.send_signal(signal.SIGTERM)
        print("EXIT", wait_exit(p), flush=True)
    else:
        fail("unknown mode " + mode)


main()
