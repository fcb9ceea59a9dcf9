// The real-socket peers of the port forward tests, as one Python script (python3 is on the test
// machine). `fwdPeer()` writes it to a temporary file once and returns its path.
//
//   python3 PEER serve   (prints "ready"; dual-stack, so 127.0.0.1 and ::1 both reach it)
//     tcp 7   "FROM <peer address>\n", then echo until EOF
//     udp 7   each datagram answered with "FROM <peer address> " + the datagram
//     tcp 9   sink: read to EOF, answer "<bytes> <sha256>\n"
//     tcp 19  source: read "<bytes>\n", answer "<sha256>\n" and the bytes
//   client modes (print "OK ..." and exit 0 on success):
//     tcp HOST PORT [pp1|pp2[split] SRCIP]  echo; "OK FROM <addr>" (pp: a PROXY header first,
//                                     split: in two segments 0.3 s apart)
//     raw HOST PORT TEXT              send TEXT, wait for the close: "OK closed eof|reset|data"
//     udp HOST PORT                   three datagrams, three answers; "OK FROM <addr>"
//     upload HOST PORT N | download HOST PORT N   N bytes, sha256 compared at both ends
//     hold HOST PORT SECONDS          connect, print "connected", wait for the close: "OK closed"
//
// Data is a fixed random block repeated, so both ends hash what actually crossed.

const PEER_PY = String.raw`
import hashlib, ipaddress, os, socket, struct, sys, threading, time

BLOCK = os.urandom(1 << 20)


def norm(a):
    ip = ipaddress.ip_address(a.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def listener(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        s.listen(256)
    return s


def stream(n):
    while n > 0:
        k = min(n, len(BLOCK))
        yield BLOCK[:k]
        n -= k


def read_all(c):
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def serve_tcp(port, fn):
    s = listener(socket.SOCK_STREAM, port)
    def loop():
        while True:
            c, a = s.accept()
            threading.Thread(target=fn, args=(c, a), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def echo(c, a):
    try:
        c.sendall(("FROM %s\n" % norm(a[0])).encode())
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    c.close()


def sink(c, a):
    n, h = read_all(c)
    c.sendall(("%d %s\n" % (n, h)).encode())
    c.close()


def source(c, a):
    line = b""
    while not line.endswith(b"\n"):
        line += c.recv(1)
    n = int(line)
    h = hashlib.sha256()
    for b in stream(n):
        h.update(b)
    c.sendall((h.hexdigest() + "\n").encode())
    for b in stream(n):
        c.sendall(b)
    c.close()


def serve():
    serve_tcp(7, echo)
    serve_tcp(9, sink)
    serve_tcp(19, source)
    u = listener(socket.SOCK_DGRAM, 7)
    def uloop():
        while True:
            d, a = u.recvfrom(65536)
            u.sendto(("FROM %s " % norm(a[0])).encode() + d, a)
    threading.Thread(target=uloop, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def connect(host, port, timeout=60):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect((host, port))
    return c


def pp_header(kind, src, dst, sport, dport):
    v6 = ":" in src
    if kind == "pp1":
        return ("PROXY %s %s %s %d %d\r\n" % ("TCP6" if v6 else "TCP4", src, dst, sport, dport)).encode()
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    if v6 and ":" not in dst:
        dst = "::ffff:" + dst
    addrs = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack("!HH", sport, dport)
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    return sig + bytes([0x21, 0x21 if v6 else 0x11]) + struct.pack("!H", len(addrs)) + addrs


def read_line(c):
    line = b""
    while not line.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            break
        line += d
    return line.decode().strip()


def main():
    mode = sys.argv[1]
    if mode == "serve":
        return serve()
    host, port = sys.argv[2], int(sys.argv[3])
    if mode == "tcp":
        c = connect(host, port)
        if len(sys.argv) > 5:
            kind = sys.argv[4]
            hdr = pp_header(kind.replace("split", ""), sys.argv[5], host, 4242, port)
            if kind.endswith("split"):  # the header in two segments
                c.sendall(hdr[:7])
                time.sleep(0.3)
                hdr = hdr[7:]
            c.sendall(hdr + b"hello")
        else:
            c.sendall(b"hello")
        msg = b"forward me " * 1000
        c.sendall(msg)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        first, _, rest = got.partition(b"\n")
        assert rest == b"hello" + msg, "echo differs: %r" % rest[:80]
        print("OK", first.decode())
    elif mode == "udp":
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.settimeout(10)
        u.connect((host, port))
        sent = [("datagram %d " % i).encode() * (1 + 300 * i) for i in range(3)]
        for d in sent:
            u.send(d)
        got = []
        for _ in range(3):
            got.append(u.recv(65536))
        frm = set()
        for g in got:
            head, rest = g.split(b" ", 2)[1], g.split(b" ", 2)[2]
            frm.add(head.decode())
            assert rest in sent, "unexpected datagram %r" % g[:60]
        assert sorted(g.split(b" ", 2)[2] for g in got) == sorted(sent), "datagrams differ"
        assert len(frm) == 1
        print("OK FROM", frm.pop())
    elif mode == "upload":
        n = int(sys.argv[4])
        c = connect(host, port, 300)
        h = hashlib.sha256()
        for b in stream(n):
            h.update(b)
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
        ans = read_line(c).split()
        assert ans == [str(n), h.hexdigest()], "sink saw %r, sent %d %s" % (ans, n, h.hexdigest())
        print("OK upload", n)
    elif mode == "download":
        n = int(sys.argv[4])
        c = connect(host, port, 300)
        c.sendall(b"%d\n" % n)
        want = read_line(c)
        got, h = read_all(c)
        assert got == n and h == want, "got %d %s want %d %s" % (got, h, n, want)
        print("OK download", n)
    elif mode == "raw":
        c = connect(host, port, 20)
        c.sendall(sys.argv[4].encode())
        try:
            d = c.recv(1)
            print("OK closed", "eof" if not d else "data")
        except ConnectionResetError:
            print("OK closed reset")
    elif mode == "hold":
        c = connect(host, port, float(sys.argv[4]))
        print("connected", read_line(c), flush=True)
        try:
            d = c.recv(1)
            print("OK closed", "eof" if not d else "data")
        except ConnectionResetError:
            print("OK closed reset")


main()
`;

let path: string | null = null;

export async function fwdPeer(): Promise<string> {
  if (path === null) {
    const p = await Deno.makeTempFile({ prefix: "slirpd-fwd-peer-", suffix: ".py" });
    await Deno.writeTextFile(p, PEER_PY);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(p);
      } catch { /* gone */ }
    });
    path = p;
  }
  return path;
}
