// Noticing that the guest's network namespace is gone. slirpd's own descriptors (the tap, the
// netlink socket) hold a reference to the namespace, so the kernel never destroys it while
// slirpd runs: slirpd has to notice that nobody else uses it any more.
//
// Watched: the process named by a /proc/PID/ns/net path (the --netns form and the slirp4netns
// PID form) through a pidfd, which becomes readable when that process exits. Then the
// namespace is "gone" unless another process is still in it (a scan of /proc/*/ns/net by
// inode; the watch moves to that process) or it is bind-mounted (`ip netns add`: an nsfs
// mount `net:[INODE]` in /proc/self/mountinfo). A namespace given by any other path (a bind
// mount) is not watched: it lives as long as its mount. Descriptors other processes hold on the
// namespace are not looked for.

import { check, openLibc } from "./libc.ts";
import { closeFd, nsInode } from "./netns.ts";
import type { Pollable } from "./poller.ts";

const SYS_pidfd_open = 434;
const libc = openLibc({
  syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
});

function pidfdOpen(pid: number): number {
  return check(
    Number(libc.syscall(BigInt(SYS_pidfd_open), BigInt(pid), 0n, 0n)),
    "pidfd_open",
    `${pid}`,
  );
}

export class NetnsWatch implements Pollable {
  #fd: number;
  /** The process watched now. */
  pid: number;

  private constructor(readonly ino: bigint, pid: number) {
    this.pid = pid;
    this.#fd = pidfdOpen(pid);
  }

  /** A watch for `/proc/PID/ns/net`; null for any other path (see the header). */
  static open(path: string): NetnsWatch | null {
    const m = /^\/proc\/([0-9]+)\/ns\/net$/.exec(path);
    if (m === null) return null;
    return new NetnsWatch(nsInode(path), Number(m[1]));
  }

  get fd(): number {
    return this.#fd;
  }

  /**
   * The watched process has exited (the pidfd is readable; the caller has unregistered `fd`):
   * "gone" when nobody uses the namespace any more; "moved" when another process is in it
   * (the watch follows that one: register `fd` again); "mounted" when it is bind-mounted (it
   * lives as long as the mount: the watch ends); "unknown" without /proc (the watch ends).
   */
  check(): "gone" | "moved" | "mounted" | "unknown" {
    const me = Deno.pid;
    let procs: Deno.DirEntry[];
    try {
      procs = [...Deno.readDirSync("/proc")];
    } catch {
      return "unknown"; // no /proc (--enable-sandbox): nothing to decide on
    }
    for (const e of procs) {
      const pid = Number(e.name);
      if (!Number.isInteger(pid) || pid === me || pid === this.pid) continue;
      let ino: bigint;
      try {
        ino = BigInt(Deno.statSync(`/proc/${pid}/ns/net`).ino ?? -1);
      } catch {
        continue; // gone meanwhile, or not ours to read
      }
      if (ino !== this.ino) continue;
      let fd: number;
      try {
        fd = pidfdOpen(pid);
      } catch {
        continue;
      }
      closeFd(this.#fd);
      this.#fd = fd;
      this.pid = pid;
      return "moved";
    }
    try {
      const mounts = Deno.readTextFileSync("/proc/self/mountinfo");
      if (mounts.includes(` net:[${this.ino}] `)) return "mounted";
    } catch { /* no mountinfo: count it as not mounted */ }
    return "gone";
  }

  close(): void {
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
