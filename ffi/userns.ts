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
// the tap fd back) without a fork, which Deno cannot do.
//
// The same helper (without --user) serves the other way to be stranded: rootless podman starts
// slirp4netns *inside* the container's user namespace, which owns the guest netns, while the
// process's own netns belongs to the parent user namespace. There setns into the guest works,
// but setns back home is EPERM. canReturnHome() asks the kernel before any window is opened. It needs nsenter (util-linux), sh and
// ip (iproute2) at run time, and /dev/net/tun usable by the user (0666, as distributions ship).

import { ENOENT, EPERM } from "./errno.ts";
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
/** What the helper says on stderr when it cannot open /dev/net/tun. */
const TUN_MARK = "slirpd-helper: open /dev/net/tun failed";

const libc = openLibc({
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  usleep: { parameters: ["u32"], result: "i32" },
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
 * Could the main thread setns back into its own netns after a window elsewhere? The kernel says
 * so without our trying: NS_GET_USERNS on our netns answers EPERM exactly when the user
 * namespace owning it lies outside ours (an ancestor: rootless podman runs slirp4netns inside
 * the container's user namespace, `unshare -r` does the same). There we can hold no capability,
 * so a setns back would fail and strand the thread in the guest netns. Any other owner is ours
 * or a descendant of ours, where the CAP_SYS_ADMIN that a setns into the guest netns needs in
 * our own user namespace is enough to come back.
 */
export function canReturnHome(): boolean {
  const nsfd = openPath("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  try {
    const ufd = libc.ioctl(nsfd, NS_GET_USERNS, 0);
    if (ufd >= 0) {
      closeFd(ufd);
      return true;
    }
    const e = errno();
    if (e === EPERM) return false;
    throw new SyscallError("ioctl NS_GET_USERNS", e, "/proc/thread-self/ns/net");
  } finally {
    closeFd(nsfd);
  }
}

/**
 * The guest netns's descriptors (a /dev/net/tun fd and a NETLINK_ROUTE socket), however they
 * can be had: with a setns window when the kernel allows both the way there and the way back
 * (root; a netns of our own user namespace while our netns is ours too), else from a helper
 * process that enters the netns (and its owner user namespace when that is not ours; see the
 * file header). Pass the result to `openTap` and `configureGuest`, then `close()` it.
 */
export async function openGuestNetns(path: string): Promise<GuestNetns> {
  if (canReturnHome()) {
    try {
      return openGuestNetnsDirect(path);
    } catch (e) {
      if (e instanceof SyscallError && e.call === "open" && e.subject === "/dev/net/tun") {
        throw tunOpenError(path, e.code);
      }
      if (!(e instanceof SyscallError && e.call === "setns" && e.errno === EPERM)) throw e;
      if (!netnsOwner(path).foreign) throw e;
    }
  }
  return await openGuestNetnsViaHelper(path);
}

/** `/dev/net/tun` could not be opened in the guest netns: what failed, and what to do. */
export function tunOpenError(path: string, code: string): Error {
  const why: Record<string, string> = {
    EACCES: "this user may not open it (mode 0600 root here?): make it usable by all, " +
      "`chmod 0666 /dev/net/tun` (as most distributions ship it), or run slirpd as root",
    EPERM: "this user may not open it: make it usable by all (`chmod 0666 /dev/net/tun`) or " +
      "run slirpd as root",
    ENOENT: "there is no tun device node: `modprobe tun`, then `mknod -m 0666 /dev/net/tun " +
      "c 10 200`",
    ENODEV: "the kernel has no tun driver: `modprobe tun`",
  };
  return new Error(
    `--netns ${path}: open /dev/net/tun in the namespace: ${code}${
      why[code] ? ` (${why[code]})` : ""
    }`,
  );
}

/** The shell's words for open(2) errors (sh says "cannot open X: Permission denied"). */
const SHELL_ERRNO: [RegExp, string][] = [
  [/Permission denied/i, "EACCES"],
  [/Operation not permitted/i, "EPERM"],
  [/No such file/i, "ENOENT"],
  [/No such device/i, "ENODEV"],
];

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
  // The owner user namespace is entered only when it is not ours (a process cannot setns into
  // its own user namespace: EINVAL); then the netns alone is entered.
  const enterUserns = netnsOwner(path).foreign;
  let userfd = -1, pidfd = -1, tun = -1, rtnl = -1;
  let child: Deno.ChildProcess | undefined;
  let exited = false;
  let stderr: Promise<string> = Promise.resolve("");
  let done = false;
  try {
    userfd = check(libc.ioctl(netfd, NS_GET_USERNS, 0), "ioctl NS_GET_USERNS", path);
    // nsenter opens these paths itself: our fds, reachable because it runs as our uid.
    const self = `/proc/${Deno.pid}/fd`;
    child = new Deno.Command(nsenter, {
      args: [
        ...(enterUserns ? [`--user=${self}/${userfd}`, "--preserve-credentials"] : []),
        `--net=${self}/${netfd}`,
        "--",
        "/bin/sh",
        "-c",
        // The tun open's failure is marked, so it is told apart from nsenter's own (`command`:
        // a failed redirection of a plain `exec` would end sh before the `||`).
        `command exec 3>&- ${HELPER_TUN_FD}<>/dev/net/tun || { echo "${TUN_MARK}" >&2; exit 1; }; ` +
        `exec "$1" -batch -`,
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
    // A helper that exits early is reported as what it said, never as a later error of ours.
    const helperFailed = async (late = false): Promise<Error> => {
      if (!exited) killQuietly(c);
      await c.status.catch(() => {});
      const said = (await stderr).trim();
      const lines = said.split("\n").filter((l) => l !== "" && l !== TUN_MARK);
      if (said.includes(TUN_MARK)) {
        const code = SHELL_ERRNO.find(([re]) => re.test(said))?.[1] ??
          (lines.join("; ") || "failed");
        return tunOpenError(path, code);
      }
      const where = enterUserns ? "in its owner user namespace" : "in the namespace";
      return new Error(
        `--netns ${path}: the helper ${where} ` +
          (late
            ? `did not get ready in ${timeoutMs} ms`
            : `failed: ${lines.join("; ") || "no message"}`),
      );
    };
    // Waited for without yielding, in 0.2 ms naps: the helper runs on its own, and an await
    // here would let the daemon's modules, which load meanwhile (main.ts), be evaluated first
    // (~15 ms before the tap, measured); a timer would load Deno's Node timers (~4.5 ms).
    // /proc/PID/exe is ENOENT once the helper has exited (a zombie has no exe).
    const gone = () =>
      libc.readlink(cstring(`/proc/${c.pid}/exe`), linkBuf, 256n) < 0 && errno() === ENOENT;
    while (!fdLink(3).startsWith("socket:")) {
      if (gone()) throw await helperFailed();
      if (Date.now() > deadline) throw await helperFailed(true);
      libc.usleep(200);
    }

    try {
      pidfd = sys(SYS_pidfd_open, c.pid, 0, "pidfd_open", `helper ${c.pid}`);
      rtnl = sys(SYS_pidfd_getfd, pidfd, 3, "pidfd_getfd", `helper ${c.pid} fd 3`);
      tun = sys(
        SYS_pidfd_getfd,
        pidfd,
        HELPER_TUN_FD,
        "pidfd_getfd",
        `helper ${c.pid} fd ${HELPER_TUN_FD}`,
      );
    } catch (e) {
      await new Promise((r) => setTimeout(r, 0));
      if (exited) throw await helperFailed();
      throw e;
    }
    if (sockopt(rtnl, SO_DOMAIN) !== AF_NETLINK || sockopt(rtnl, SO_PROTOCOL) !== NETLINK_ROUTE) {
      throw new Error(`--netns ${path}: the helper's fd 3 is not a NETLINK_ROUTE socket`);
    }
    const g = new GuestNetns(path, tun, rtnl, true);
    tun = rtnl = -1;
    done = true;
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
    }
    // Its end is waited for (reaped, pipes closed) in the background once the fds are ours:
    // awaiting it here would put the tap behind the daemon's modules (see above).
    const end = (async () => {
      await child?.status.catch(() => {});
      await child?.stdin.close().catch(() => {});
      await stderr.catch(() => "");
    })();
    if (!done) await end;
  }
}

/** SIGKILL, when the process may have exited already (Deno throws for that). */
function killQuietly(c: Deno.ChildProcess): void {
  try {
    c.kill("SIGKILL");
  } catch { /* already exited */ }
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
