// The real-socket peers of the TCP routing tests, as one Python script (python3 is on the
// test machine; a Python peer keeps the kernel sockets on both ends plain and obvious).
// `peerScript()` writes it to a temporary file once and returns its path.
//
//   python3 PEER serve            (in the "remote" namespace; prints "ready" when up)
//     port 7   echo until EOF, then close
//     port 9   sink: read to EOF, answer "<bytes> <sha256>\n", close
//     port 19  source: read "<bytes>\n", answer "<sha256>\n" then the bytes, then close
//     port 13  half-close: read to EOF, then send "got <bytes>\n" and close
//     port 11  slow reader: reads nothing until a connection to port 12, then acts as port 9
//     port 15  reads a line, then resets;  port 17  prints "peer-reset" / "peer-eof"
//   client modes: echo HOST N | upload HOST N | download HOST N | many HOST COUNT |
//     refused HOST PORT | halfclose HOST | slowpush HOST N SECONDS GATEFILE |
//     pingpong HOST ROUNDS (prints "rtt-ms X") | resets HOST |
//     churn HOST COUNT THREADS (short connections, the guest closes first)
//   python3 PEER <client mode> ...  (in the guest namespace; prints OK and exits 0 on success)
//
// Data is a fixed random block repeated, so both ends hash what actually crossed.
//
// Also here (shared by the tcp_routing and tcp_pressure tests): makeWorld (isolated host and
// remote namespaces, the peer servers, a guest, slirpd with routing) and /proc readers.

const PEER_PY = String.raw`
import hashlib
import os
import struct
import socket
import sys
import threading
import time

BLOCK = os.urandom(1 << 20)


def dual_listener(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(1024)
    return s


def read_all(c):
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def stream(n):
    while n > 0:
        k = min(n, len(BLOCK))
        yield BLOCK[:k]
        n -= k


def stream_hash(n):
    h = hashlib.sha256()
    for b in stream(n):
        h.update(b)
    return h.hexdigest()


slow_gate = threading.Event()


def handle(port, c):
    try:
        if port == 7:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                c.sendall(d)
        elif port == 9 or port == 11:
            if port == 11:
                slow_gate.wait(120)
            n, h = read_all(c)
            c.sendall(f"{n} {h}\n".encode())
        elif port == 19:
            line = b""
            while not line.endswith(b"\n"):
                d = c.recv(64)
                if not d:
                    return
                line += d
            n = int(line)
            c.sendall(f"{stream_hash(n)}\n".encode())
            for b in stream(n):
                c.sendall(b)
        elif port == 13:
            n, _ = read_all(c)
            c.sendall(f"got {n}\n".encode())
        elif port == 12:
            slow_gate.set()
        elif port == 15:
            # Reset server: read a line, then close with RST (SO_LINGER 0).
            recv_line(c)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif port == 17:
            # Watch server: report how the guest's side ended.
            try:
                while c.recv(65536):
                    pass
                print("peer-eof", flush=True)
            except ConnectionResetError:
                print("peer-reset", flush=True)
    except OSError:
        pass
    finally:
        c.close()


def serve():
    for port in (7, 9, 11, 12, 13, 15, 17, 19):
        ls = dual_listener(port)

        def loop(ls=ls, port=port):
            while True:
                c, _ = ls.accept()
                threading.Thread(target=handle, args=(port, c), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)


def connect(host, port, timeout=60):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_line(s):
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        line += d
    return line.decode().strip()


def echo(host, n):
    s = connect(host, 7)
    data = os.urandom(n)
    got = bytearray()

    def reader():
        while len(got) < n:
            d = s.recv(1 << 16)
            if not d:
                break
            got.extend(d)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join(60)
    s.shutdown(socket.SHUT_WR)
    rest = s.recv(16)
    s.close()
    assert bytes(got) == data, f"echo mismatch: {len(got)} of {n}"
    assert rest == b"", "data after the echo"


def upload(host, n, port=9):
    s = connect(host, port, timeout=300)
    h = hashlib.sha256()
    for b in stream(n):
        h.update(b)
        s.sendall(b)
    s.shutdown(socket.SHUT_WR)
    line = recv_line(s)
    s.close()
    assert line == f"{n} {h.hexdigest()}", f"upload: server says {line!r}"


def download(host, n):
    s = connect(host, 19, timeout=300)
    s.sendall(f"{n}\n".encode())
    want = recv_line(s)
    got, h = read_all(s)
    s.close()
    assert got == n and h == want, f"download: {got} bytes, hash ok: {h == want}"


def many(host, count):
    errors = []

    def one(i):
        try:
            echo(host, 1000 + i)
        except Exception as e:
            errors.append(f"{i}: {e!r}")

    ts = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, f"{len(errors)} failed: {errors[:5]}"


def churn(host, count, threads):
    # Short connections as fast as the guest makes them: connect, one byte each way, close
    # (the guest closes first). Prints how many were refused or reset; fails if any were.
    failed = []
    left = [count]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                s = connect(host, 7, timeout=30)
                s.sendall(b"x")
                assert s.recv(1) == b"x", "no echo"
                s.close()
            except (OSError, AssertionError) as e:
                with lock:
                    failed.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    print(f"churn {count} failed {len(failed)}", flush=True)
    assert not failed, f"{len(failed)} of {count} failed: {failed[:3]}"


def pingpong(host, rounds):
    s = connect(host, 7)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"p" * 100
    t0 = time.time()
    for _ in range(rounds):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(4096)
            assert d, "closed"
            got += d
    dt = (time.time() - t0) / rounds
    s.close()
    print(f"rtt-ms {dt * 1000:.3f}", flush=True)


def resets(host):
    # The host peer resets: the guest sees ECONNRESET.
    s = connect(host, 15)
    s.sendall(b"bye\n")
    try:
        while s.recv(100):
            pass
        raise AssertionError("EOF instead of a reset")
    except ConnectionResetError:
        pass
    s.close()
    # The guest resets: the host peer sees ECONNRESET (the test reads the server's output).
    s = connect(host, 17)
    s.sendall(b"x" * 1000)
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def refused(host, port):
    try:
        connect(host, port, timeout=20)
    except ConnectionRefusedError:
        return
    raise AssertionError("connected, expected ECONNREFUSED")


def halfclose(host):
    # The guest closes first: the host still answers after the guest's FIN.
    s = connect(host, 13)
    s.sendall(b"x" * 5000)
    s.shutdown(socket.SHUT_WR)
    line = recv_line(s)
    assert line == "got 5000", line
    assert s.recv(10) == b""
    s.close()
    # The host closes first (the source server ends its stream): the guest reads to EOF
    # while its own direction is still open, and can still send after it.
    s = connect(host, 19)
    s.sendall(b"1000\n")
    recv_line(s)
    n, _ = read_all(s)
    assert n == 1000, n
    s.sendall(b"after eof")
    s.close()


def slowpush(host, n, seconds, gate):
    s = connect(host, 11, timeout=seconds)
    sent = 0
    deadline = time.time() + seconds
    s.settimeout(0.2)
    h = hashlib.sha256()
    pending = b""
    blocks = stream(n)
    while time.time() < deadline:
        if not pending:
            try:
                pending = next(blocks)
            except StopIteration:
                break
        try:
            k = s.send(pending)
        except socket.timeout:
            continue
        h.update(pending[:k])
        pending = pending[k:]
        sent += k
    print(f"blocked-after {sent}", flush=True)
    # The test measures slirpd now, then creates the gate file to let us go on.
    for _ in range(1200):
        if os.path.exists(gate):
            break
        time.sleep(0.1)
    g = connect(host, 12)
    g.close()
    s.settimeout(120)
    if pending:
        s.sendall(pending)
        h.update(pending)
        sent += len(pending)
    for b in blocks:
        s.sendall(b)
        h.update(b)
        sent += len(b)
    s.shutdown(socket.SHUT_WR)
    line = recv_line(s)
    s.close()
    assert line == f"{sent} {h.hexdigest()}", f"slowpush: server says {line!r}, sent {sent}"


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "serve":
        serve()
    elif mode == "echo":
        echo(sys.argv[2], int(sys.argv[3]))
    elif mode == "upload":
        upload(sys.argv[2], int(sys.argv[3]))
    elif mode == "download":
        download(sys.argv[2], int(sys.argv[3]))
    elif mode == "many":
        many(sys.argv[2], int(sys.argv[3]))
    elif mode == "churn":
        churn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "refused":
        refused(sys.argv[2], int(sys.argv[3]))
    elif mode == "pingpong":
        pingpong(sys.argv[2], int(sys.argv[3]))
    elif mode == "resets":
        resets(sys.argv[2])
    elif mode == "halfclose":
        halfclose(sys.argv[2])
    elif mode == "slowpush":
        slowpush(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(f"unknown mode {mode}")
    print("OK", flush=True)
`;

import assert from "node:assert/strict";
import {
  type Background,
  type HostNet,
  makeHostNet,
  makeNetns,
  type Netns,
  type Slirpd,
  startSlirpd,
} from "./harness.ts";

let path: string | null = null;

/** Path of the peer script (written once per test process, removed at exit). */
export async function peerScript(): Promise<string> {
  if (path === null) {
    const p = await Deno.makeTempFile({ prefix: "slirpd-tcp-peer-", suffix: ".py" });
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

export interface World extends AsyncDisposable {
  net: HostNet;
  guest: Netns;
  slirpd: Slirpd;
  /** The peer servers (their stdout carries "peer-reset" / "peer-eof"). */
  servers: Background;
  py: string;
  /** Runs a peer client mode in the guest; asserts it printed OK. */
  client(args: string[], timeoutMs?: number): Promise<string>;
}

/** Host + remote namespaces, the peer servers, a guest and slirpd with routing enabled. */
export async function makeWorld(
  extraArgs: string[] = [],
  env?: Record<string, string>,
): Promise<World> {
  const py = await peerScript();
  const net = await makeHostNet();
  const stack: AsyncDisposable[] = [net];
  const dispose = async () => {
    for (const d of stack.reverse()) {
      try {
        await d[Symbol.asyncDispose]();
      } catch { /* keep tearing down */ }
    }
  };
  try {
    const guest = await makeNetns("guest");
    stack.push(guest);
    const srv = net.remote.spawn(["python3", py, "serve"]);
    stack.push(srv);
    await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "peer servers");
    const slirpd = await startSlirpd({
      guest,
      hostNs: net.host,
      args: ["--configure", "--enable-routing", "--enable-host", ...extraArgs],
      env,
    });
    stack.push(slirpd);
    return {
      net,
      guest,
      slirpd,
      servers: srv,
      py,
      async client(args: string[], timeoutMs = 60_000): Promise<string> {
        const r = await guest.exec(["python3", py, ...args], { timeoutMs });
        assert.ok(
          r.code === 0 && r.stdout.includes("OK"),
          `${args.join(" ")} → exit ${r.code}\n${r.stdout}${r.stderr}\nslirpd:\n${
            slirpd.stdout.slice(-2000)
          }${slirpd.stderr.slice(-2000)}`,
        );
        return r.stdout;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Open file descriptors of a process (its sockets included). */
export async function fdCount(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident memory of a process, in bytes. */
export async function rss(pid: number): Promise<number> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = s.match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Private resident memory of `pid` (RssAnon: heap and mappings, not the binary's pages). */
export async function rssAnon(pid: number): Promise<number> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = s.match(/RssAnon:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}
