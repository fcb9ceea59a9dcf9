// The rootless path: `slirpd --netns /proc/PID/ns/net` run by an unprivileged user, where PID
// was started with `unshare -Urn` (or by rootless podman/docker/buildkit).
//
// setns into such a netns needs CAP_SYS_ADMIN in the netns's owner user namespace *and* in
// our own one: an unprivileged process has the first (the owner of a user namespace holds all
// capabilities in it) but not the second, so setns fails with EPERM. Entering the owner userns
// first is not possible either (a multithreaded process can never setns into a user namespace:
// EINVAL), and re-executing slirpd inside it (nsenter --user) does not help: from there the
// main thread can enter the guest netns but never return, because the host netns belongs to
// the initial user namespace, in which it then has no capability (setns back: EPERM, verified).
// Host sockets would be created in the guest netns.
//
// What works, and keeps slirpd unprivileged in the host netns with its own PID: the netns only
// matters when a descriptor is *created* (netns.ts). A helper process made by
//   nsenter --user=<owner userns> --net=<netns> --preserve-credentials -- \
//     sh -c 'exec 3>&- 4<>/dev/net/tun; exec ip -batch -'
// runs inside both namespaces, opens /dev/net/tun at fd 4, and `ip -batch -` opens a
// NETLINK_ROUTE socket (fd 3, the lowest free one) and then blocks reading stdin. slirpd copies
// both descriptors with pidfd_getfd(2) (Linux 5.6+; allowed because the helper runs as our uid
// and is dumpable after its exec) and kills the helper. Everything after that runs in slirpd:
// TUNSETIFF and the netlink requests are authorized against the netns's owner userns, in which
// slirpd, as its owner, has CAP_NET_ADMIN (and the netlink socket's opener, the helper, too).
// This is slirp4netns's --userns-path design (a child that enters the namespaces and passes
// the tap fd back) without a fork, which Deno cannot do. It needs nsenter (util-linux), sh and
// ip (iproute2) at run time, and /dev/net/tun usable by the user (0666, as distributions ship).

import { EPERM } from "./errno.ts";
import { check, cstring, errno, openLibc, SyscallError } from "./libc.ts";
import {
  closeFd,
  GuestNetns,
  nsInode,
  O_CLOEXEC,
  O_RDONLY,
  openGuestNetnsDirect,
  openPath,
} from "./netns.ts";

const NS_GET_USERNS = 0xb701; // _IO(0xb7, 0x1): fd of the user namespace owning a namespace
// Syscall numbers from the unified table (same on x86_64 and aarch64 since Linux 5.1).
const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
const SOL_SOCKET = 1;
const SO_PROTOCOL = 38;
const SO_DOMAIN = 39;
const AF_NETLINK = 16;
const NETLINK_ROUTE = 0;
const HELPER_TUN_FD = 4;

const libc = openLibc({
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
});

export interface NetnsOwner {
  /** Inode of the user namespace that owns the netns. */
  ownerUserns: bigint;
  /** Inode of our own user namespace. */
  selfUserns: bigint;
  /** The netns belongs to another user namespace than ours. */
  foreign: boolean;
}

/** Which user namespace owns the netns at `path` (ioctl NS_GET_USERNS). */
export function netnsOwner(path: string): NetnsOwner {
  const nsfd = openPath(path, O_RDONLY | O_CLOEXEC);
  try {
    const ufd = check(libc.ioctl(nsfd, NS_GET_USERNS, 0), "ioctl NS_GET_USERNS", path);
    try {
      const ownerUserns = nsInode(`/proc/self/fd/${ufd}`);
      const selfUserns = nsInode("/proc/self/ns/user");
      return { ownerUserns, selfUserns, foreign: ownerUserns !== selfUserns };
    } finally {
      closeFd(ufd);
    }
  } finally {
    closeFd(nsfd);
  }
}

/** First executable `cmd` on PATH, then in the sbin/bin directories (ip lives in /usr/sbin). */
export function findOnPath(cmd: string): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  for (const d of [...dirs, "/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
    try {
      const st = Deno.statSync(`${d}/${cmd}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return `${d}/${cmd}`;
    } catch {
      // not there
    }
  }
  return undefined;
}

/**
 * The guest netns's descriptors (a /dev/net/tun fd and a NETLINK_ROUTE socket), however they
 * can be had: with a setns window when allowed (root, or a netns of our own user namespace),
 * else, when the netns belongs to another user namespace, from a helper (see the file header).
 * Pass the result to `openTap` and `configureGuest`, then `close()` it.
 */
export async function openGuestNetns(path: string): Promise<GuestNetns> {
  try {
    return openGuestNetnsDirect(path);
  } catch (e) {
    if (!(e instanceof SyscallError && e.call === "setns" && e.errno === EPERM)) throw e;
    if (!netnsOwner(path).foreign) throw e;
  }
  return await openGuestNetnsViaHelper(path);
}

/** The helper path of `openGuestNetns`, usable on its own (tests). */
export async function openGuestNetnsViaHelper(path: string, timeoutMs = 5000): Promise<GuestNetns> {
  const nsenter = findOnPath("nsenter");
  const ip = findOnPath("ip");
  if (!nsenter || !ip) {
    throw new Error(
      `--netns ${path}: the rootless path needs ${
        !nsenter ? "nsenter (util-linux)" : "ip (iproute2)"
      }`,
    );
  }
  const netfd = openPath(path, O_RDONLY | O_CLOEXEC);
  let userfd = -1, pidfd = -1, tun = -1, rtnl = -1;
  let child: Deno.ChildProcess | undefined;
  let exited = false;
  let stderr: Promise<string> = Promise.resolve("");
  try {
    userfd = check(libc.ioctl(netfd, NS_GET_USERNS, 0), "ioctl NS_GET_USERNS", path);
    // nsenter opens these paths itself: our fds, reachable because it runs as our uid.
    const self = `/proc/${Deno.pid}/fd`;
    child = new Deno.Command(nsenter, {
      args: [
        `--user=${self}/${userfd}`,
        `--net=${self}/${netfd}`,
        "--preserve-credentials",
        "--",
        "/bin/sh",
        "-c",
        `exec 3>&- ${HELPER_TUN_FD}<>/dev/net/tun || exit 1; exec "$1" -batch -`,
        "sh",
        ip,
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const c = child;
    stderr = new Response(c.stderr).text();
    c.status.then(() => exited = true);

    // Ready once `ip` has opened its netlink socket (fd 3; before, fd 3 is nsenter's ns file).
    const deadline = Date.now() + timeoutMs;
    // readlink(2) itself: Deno wants --allow-all for /proc/PID/fd paths (scripts/permissions.ts).
    const linkBuf = new Uint8Array(256);
    const fdLink = (n: number) => {
      const len = Number(libc.readlink(cstring(`/proc/${c.pid}/fd/${n}`), linkBuf, 256n));
      return len < 0 ? "" : new TextDecoder().decode(linkBuf.subarray(0, len));
    };
    while (!fdLink(3).startsWith("socket:")) {
      if (exited || Date.now() > deadline) {
        killQuietly(c); // (exited: kill() would throw "already terminated")
        await c.status.catch(() => {});
        const msg = (await stderr).trim().replaceAll("\n", "; ");
        throw new Error(
          `--netns ${path}: setns is not permitted and the helper in its owner user namespace ` +
            (exited ? `failed: ${msg || "no message"}` : `did not get ready in ${timeoutMs} ms`),
        );
      }
      await new Promise((r) => setTimeout(r, 2));
    }

    pidfd = sys(SYS_pidfd_open, c.pid, 0, "pidfd_open", `helper ${c.pid}`);
    rtnl = sys(SYS_pidfd_getfd, pidfd, 3, "pidfd_getfd", `helper ${c.pid} fd 3`);
    tun = sys(
      SYS_pidfd_getfd,
      pidfd,
      HELPER_TUN_FD,
      "pidfd_getfd",
      `helper ${c.pid} fd ${HELPER_TUN_FD}`,
    );
    if (sockopt(rtnl, SO_DOMAIN) !== AF_NETLINK || sockopt(rtnl, SO_PROTOCOL) !== NETLINK_ROUTE) {
      throw new Error(`--netns ${path}: the helper's fd 3 is not a NETLINK_ROUTE socket`);
    }
    const g = new GuestNetns(path, tun, rtnl, true);
    tun = rtnl = -1;
    return g;
  } finally {
    closeFd(tun);
    closeFd(rtnl);
    closeFd(pidfd);
    closeFd(userfd);
    closeFd(netfd);
    if (child && !exited) {
      // Our copies keep the tun fd and the socket alive; the helper has nothing left to do.
      killQuietly(child);
      await child.status.catch(() => {});
    }
    if (child) await child.stdin.close().catch(() => {});
    await stderr;
  }
}

function killQuietly(c: Deno.ChildProcess): void {
  try {
    c.kill("SIGKILL");
  } catch { /* it exited meanwhile */ }
}

function sys(nr: number, a: number, b: number, call: string, subject: string): number {
  return check(Number(libc.syscall(BigInt(nr), BigInt(a), BigInt(b), 0n)), call, subject);
}

function sockopt(fd: number, opt: number): number {
  const v = new Int32Array(1), len = new Uint32Array([4]);
  if (
    libc.getsockopt(fd, SOL_SOCKET, opt, new Uint8Array(v.buffer), new Uint8Array(len.buffer)) < 0
  ) {
    throw new SyscallError("getsockopt", errno(), `fd ${fd}`);
  }
  return v[0];
}
