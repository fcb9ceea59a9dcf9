// --enable-sandbox and --enable-seccomp: confine the whole process once start-up is over
// (the tap, the netlink socket, forwards and the API socket exist; the rootless helper is
// done), before readiness, in slirp4netns' order: sandbox, then seccomp.
//
// What each thread of a Deno process can be made to share is in ffi/caps.ts, ffi/sandbox.ts
// and ffi/seccomp.ts (DESIGN.md has the measurements). Here is only the policy:
//  - sandbox as root (uid 0 in whatever user namespace we run in): the read-only tree as the
//    root of every thread, then the uid switch (every thread: uid/gid nobody, no capability;
//    the main thread keeps CAP_NET_BIND_SERVICE), as slirp4netns keeps that one capability.
//    A tree that cannot be built (no right to mount: a user namespace that does not own our
//    mount namespace) is said in one line and the rest still applies: nothing has changed
//    yet at that point. A failure after the uid switch leaves the process half-confined:
//    that is a start failure (exit 1).
//  - sandbox without root: there is no capability to drop, and no way to re-root the process
//    without one: said in one line.
//  - seccomp: one filter on every thread (TSYNC); a failure is a start failure.

import {
  CAP_NET_BIND_SERVICE,
  CAP_SETPCAP,
  CAP_SYS_CHROOT,
  capMask,
  dropBounding,
  geteuid,
  idMapped,
  setThreadCaps,
  switchUserAllThreads,
  verifyAllThreads,
} from "../ffi/caps.ts";
import { buildTree, enterTree, openDirectoryFds } from "../ffi/sandbox.ts";
import { installSeccompFilter } from "../ffi/seccomp.ts";
import { bindAllSymbols } from "../ffi/libc.ts";

/** The user slirpd becomes under --enable-sandbox (nobody/nogroup). */
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;
/** What the process keeps (slirp4netns keeps the same one). */
const KEEP = [CAP_NET_BIND_SERVICE];

export interface ConfineFlags {
  sandbox: boolean;
  seccomp: boolean;
}

/** Confines the process as the flags ask. Warnings go to `warn`; a failure throws. */
export function confine(flags: ConfineFlags, warn: (line: string) => void): void {
  // libc's symbols are bound on first use (ffi/libc.ts): all of them now, while dlopen still
  // runs unconfined.
  bindAllSymbols();
  if (flags.sandbox) sandbox(warn);
  if (flags.seccomp) {
    try {
      installSeccompFilter();
    } catch (e) {
      throw new Error(`--enable-seccomp: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

function sandbox(warn: (line: string) => void): void {
  if (geteuid() !== 0) {
    warn(
      "[!] --enable-sandbox: not root in this user namespace: no capability to drop and no " +
        "right to re-root the process; the file system is not confined",
    );
    return;
  }
  // An inherited directory fd is a way out of any chroot: no tree then, rather than a tree
  // with a door in it. (Checked before the tree exists: its own fd is a directory too.)
  const dirs = openDirectoryFds();
  let tree = -1;
  if (dirs.length > 0) {
    warn(`[!] --enable-sandbox: the file system is not confined: directory fds are open: ${dirs}`);
  } else {
    try {
      tree = buildTree();
    } catch (e) {
      warn(
        `[!] --enable-sandbox: the file system is not confined: ${(e as Error).message} ` +
          "(no right to mount here; run slirpd in a mount namespace its user namespace owns)",
      );
    }
  }
  const mapped = idMapped(SANDBOX_UID, "uid") && idMapped(SANDBOX_GID, "gid");
  if (!mapped) {
    if (tree >= 0) enterTree(tree);
    warn(
      `[!] --enable-sandbox: uid ${SANDBOX_UID} is not mapped in this user namespace: ` +
        "capabilities are not dropped",
    );
    return;
  }
  try {
    // The main thread needs CAP_SYS_CHROOT for the chroot and CAP_SETPCAP for the last
    // bounding-set drop; both go right after.
    const mainNeeds = tree >= 0 ? [CAP_SYS_CHROOT, CAP_SETPCAP] : [CAP_SETPCAP];
    switchUserAllThreads(SANDBOX_UID, SANDBOX_GID, [...KEEP, ...mainNeeds]);
    verifyAllThreads(KEEP, SANDBOX_UID, mainNeeds); // the last look at /proc
    const m = capMask([...KEEP, ...mainNeeds]);
    setThreadCaps(m, m);
    if (tree >= 0) {
      enterTree(tree);
      tree = -1;
    }
    dropBounding(KEEP);
    setThreadCaps(capMask(KEEP), capMask(KEEP));
  } catch (e) {
    throw new Error(`--enable-sandbox: ${(e as Error).message}`);
  }
}
