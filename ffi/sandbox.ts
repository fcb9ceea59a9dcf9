// --enable-sandbox, file-system part: every thread of the running process re-rooted at a
// minimal read-only tree holding only /etc and /run (slirp4netns' sandbox: resolv.conf stays
// readable, the API socket keeps working; /home, /root, /var, /proc, /dev, /usr are gone).
//
// slirp4netns does unshare(CLONE_NEWNS) + pivot_root. In a multithreaded process that splits
// the process: unshare(CLONE_NEWNS) moves only the calling thread (it gets a private copy of
// the fs_struct) and setns into a mount namespace is refused (EINVAL) while the fs_struct is
// shared (measured: after unshare + pivot_root on the main thread, Deno's async file reads,
// which run on tokio threads, still saw the whole host). What every thread does share is the
// root directory itself (it lives in the fs_struct, shared by all pthreads through CLONE_FS),
// so one chroot() on the main thread re-roots all of them, and every later thread.
//
// The new root is a mount tree attached to no namespace, built with the new mount API:
//   fsopen("tmpfs") + fsmount          → a tmpfs in no namespace (the new /)
//   open_tree(/etc, CLONE|RECURSIVE)   → a private copy of /etc's mounts, read-only, nosuid,
//   move_mount(..., tree, "etc")          nodev, noexec (mount_setattr); the same for /run
//   mount_setattr(tree, RDONLY); fchdir(tree); chroot("."); chdir("/")
// Attaching mounts under a detached tree needs Linux 6.15; before that ("staged", 5.12+) the
// tree is assembled on a private temporary mount point, cloned with open_tree() and the
// original detached at once. Nothing appears in the host's mount table and nothing needs
// cleaning up: the tree goes away with the process. As the tree has no parent mount, ".." at
// its root stays there: the classic chroot escape ends inside the tree (measured). A directory
// fd open at chroot time would let openat(fd, "..") walk out, so enterTree refuses then.

import { cstring, errno, openLibc, SyscallError } from "./libc.ts";
import { EEXIST, EINVAL, errnoName } from "./errno.ts";

const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const AT_RECURSIVE = 0x8000;
const O_CLOEXEC = 0o2000000;
const OPEN_TREE_CLONE = 1;
const FSOPEN_CLOEXEC = 1;
const FSMOUNT_CLOEXEC = 1;
const FSCONFIG_SET_STRING = 1;
const FSCONFIG_CMD_CREATE = 6;
const MOVE_MOUNT_F_EMPTY_PATH = 4;
const MOUNT_ATTR_RDONLY = 0x1;
const MOUNT_ATTR_NOSUID = 0x2;
const MOUNT_ATTR_NODEV = 0x4;
const MOUNT_ATTR_NOEXEC = 0x8;
const MS_PRIVATE = 1 << 18;
const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MNT_DETACH = 2;
// unified syscall numbers (the same on x86_64 and aarch64)
const SYS_open_tree = 428;
const SYS_move_mount = 429;
const SYS_fsopen = 430;
const SYS_fsconfig = 431;
const SYS_fsmount = 432;
const SYS_mount_setattr = 442;

const libc = openLibc({
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  fchdir: { parameters: ["i32"], result: "i32" },
  chroot: { parameters: ["buffer"], result: "i32" },
  chdir: { parameters: ["buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
});

const ptr = (b: Uint8Array<ArrayBuffer> | BigUint64Array<ArrayBuffer>) =>
  BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));

/** A raw syscall that returns an fd or 0; throws a SyscallError naming `what`. */
function sys(what: string, nr: number, ...a: bigint[]): number {
  const r = libc.syscall(BigInt(nr), a[0] ?? 0n, a[1] ?? 0n, a[2] ?? 0n, a[3] ?? 0n, a[4] ?? 0n);
  if (r < 0n) throw new SyscallError(what, errno());
  return Number(r);
}

function setAttr(fd: number, flags: number, what: string, recursive: boolean): void {
  // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }
  const attr = new BigUint64Array(4);
  attr[0] = BigInt(flags);
  attr[2] = BigInt(MS_PRIVATE);
  sys(
    `mount_setattr(${what})`,
    SYS_mount_setattr,
    BigInt(fd),
    ptr(cstring("")),
    BigInt(AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0)),
    ptr(attr),
    32n,
  );
}

export interface Bind {
  /** Absolute host path of a directory, mounted at the same path in the tree. */
  path: string;
  /** Default false: read-only (recursively). */
  writable?: boolean;
}

/** The default tree of slirp4netns --enable-sandbox: /etc and /run, read-only. */
export const DEFAULT_BINDS: Bind[] = [{ path: "/etc" }, { path: "/run" }];

export type TreeMode = "auto" | "detached" | "staged";

/**
 * Builds the tree and returns an fd of its root (close-on-exec), a mount tree attached to no
 * namespace. Nothing is visible to any thread until `chroot` into it. Needs CAP_SYS_ADMIN.
 * "detached" assembles it outside any namespace (Linux 6.15+); "staged" assembles it on a
 * private temporary mount point in the host namespace, clones it with open_tree() and
 * detaches the original at once (Linux 5.12+: open_tree 5.2, mount_setattr 5.12); "auto"
 * tries the first and falls back to the second.
 */
export function buildTree(binds: Bind[] = DEFAULT_BINDS, mode: TreeMode = "auto"): number {
  if (mode === "staged") return buildTreeStaged(binds);
  try {
    return buildTreeDetached(binds);
  } catch (e) {
    // EINVAL from move_mount under a detached tree: a kernel before 6.15.
    const old = e instanceof SyscallError && e.call.startsWith("move_mount") &&
      e.errno === EINVAL;
    if (mode === "auto" && old) {
      return buildTreeStaged(binds);
    }
    throw e;
  }
}

function checkBindPath(path: string): string[] {
  if (!path.startsWith("/") || path.split("/").includes("..")) {
    throw new Error(`sandbox: bind path must be absolute: ${path}`);
  }
  return path.split("/").filter((p) => p !== "");
}

function buildTreeStaged(binds: Bind[]): number {
  const stage = `/run/slirpd-sandbox-${Deno.pid}`;
  Deno.mkdirSync(stage, { mode: 0o700 });
  let mounted = false;
  try {
    if (
      libc.mount(
        cstring("tmpfs"),
        cstring(stage),
        cstring("tmpfs"),
        BigInt(MS_NOSUID | MS_NODEV | MS_NOEXEC),
        cstring("size=64k,mode=0755,nr_inodes=64"),
      ) !== 0
    ) {
      throw new SyscallError("mount", errno(), `tmpfs ${stage}`);
    }
    mounted = true;
    // private at once: the bind mounts below must not propagate anywhere
    if (libc.mount(cstring(""), cstring(stage), null, BigInt(MS_PRIVATE), null) !== 0) {
      throw new SyscallError("mount", errno(), `${stage} MS_PRIVATE`);
    }
    for (const b of binds) {
      const parts = checkBindPath(b.path);
      Deno.mkdirSync(`${stage}/${parts.join("/")}`, { recursive: true, mode: 0o755 });
      const dst = `${stage}/${parts.join("/")}`;
      if (libc.mount(cstring(b.path), cstring(dst), null, BigInt(MS_BIND | MS_REC), null) !== 0) {
        throw new SyscallError("mount", errno(), `--rbind ${b.path}`);
      }
      // read-only etc. on the staged copy: open_tree(CLONE) keeps each mount's flags
      const a = new BigUint64Array(4);
      a[0] = BigInt(
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
          (b.writable ? 0 : MOUNT_ATTR_RDONLY),
      );
      a[2] = BigInt(MS_PRIVATE);
      sys(
        `mount_setattr(${dst})`,
        SYS_mount_setattr,
        BigInt(AT_FDCWD),
        ptr(cstring(dst)),
        BigInt(AT_RECURSIVE),
        ptr(a),
        32n,
      );
    }
    const t = sys(
      `open_tree(${stage}, CLONE|RECURSIVE)`,
      SYS_open_tree,
      BigInt(AT_FDCWD),
      ptr(cstring(stage)),
      BigInt(OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE),
    );
    try {
      setAttr(
        t,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        "/",
        false,
      );
      return t;
    } catch (e) {
      libc.close(t);
      throw e;
    }
  } finally {
    if (mounted && libc.umount2(cstring(stage), MNT_DETACH) !== 0) {
      console.error(`[!] sandbox: umount2(${stage}, MNT_DETACH): ${errnoName(errno())}`);
    }
    try {
      Deno.removeSync(stage);
    } catch { /* best effort */ }
  }
}

function buildTreeDetached(binds: Bind[]): number {
  const fs = sys("fsopen(tmpfs)", SYS_fsopen, ptr(cstring("tmpfs")), BigInt(FSOPEN_CLOEXEC));
  let root = -1;
  try {
    for (const [k, v] of [["size", "64k"], ["mode", "0755"], ["nr_inodes", "64"]]) {
      sys(
        `fsconfig(tmpfs, ${k}=${v})`,
        SYS_fsconfig,
        BigInt(fs),
        BigInt(FSCONFIG_SET_STRING),
        ptr(cstring(k)),
        ptr(cstring(v)),
        0n,
      );
    }
    sys(
      "fsconfig(tmpfs, create)",
      SYS_fsconfig,
      BigInt(fs),
      BigInt(FSCONFIG_CMD_CREATE),
      0n,
      0n,
      0n,
    );
    root = sys(
      "fsmount(tmpfs)",
      SYS_fsmount,
      BigInt(fs),
      BigInt(FSMOUNT_CLOEXEC),
      BigInt(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC),
    );
  } finally {
    libc.close(fs);
  }
  try {
    for (const b of binds) {
      // mkdir -p inside the tree
      const parts = checkBindPath(b.path);
      for (let i = 1; i <= parts.length; i++) {
        const rel = parts.slice(0, i).join("/");
        if (libc.mkdirat(root, cstring(rel), 0o755) !== 0 && errno() !== EEXIST) {
          throw new SyscallError("mkdirat", errno(), `<tree>, ${rel}`);
        }
      }
      const t = sys(
        `open_tree(${b.path}, CLONE|RECURSIVE)`,
        SYS_open_tree,
        BigInt(AT_FDCWD),
        ptr(cstring(b.path)),
        BigInt(OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE),
      );
      try {
        setAttr(
          t,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
            (b.writable ? 0 : MOUNT_ATTR_RDONLY),
          b.path,
          true,
        );
        sys(
          `move_mount(${b.path} -> <tree>${b.path})`,
          SYS_move_mount,
          BigInt(t),
          ptr(cstring("")),
          BigInt(root),
          ptr(cstring(parts.join("/"))),
          BigInt(MOVE_MOUNT_F_EMPTY_PATH),
        );
      } finally {
        libc.close(t);
      }
    }
    setAttr(
      root,
      MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
      "/",
      false,
    );
    return root;
  } catch (e) {
    libc.close(root);
    throw e;
  }
}

/** Directory fds of this process (ways out of a chroot), as "fd->path". */
export function openDirectoryFds(): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.statSync(`/proc/self/fd/${e.name}`).isDirectory) {
        out.push(`${e.name}->${Deno.readLinkSync(`/proc/self/fd/${e.name}`)}`);
      }
    } catch { /* the fd of the readDir itself, closed meanwhile */ }
  }
  return out;
}

/**
 * Re-roots every thread of the process at the tree (chroot on the shared fs_struct) and
 * closes the tree's fd. Needs CAP_SYS_CHROOT.
 */
export function enterTree(treeFd: number): void {
  try {
    const dirs = openDirectoryFds().filter((d) => !d.startsWith(`${treeFd}->`));
    if (dirs.length > 0) {
      throw new Error(`directory fds are open (a way out of the tree): ${dirs.join(", ")}`);
    }
    if (libc.fchdir(treeFd) !== 0) throw new SyscallError("fchdir", errno(), "<tree>");
    if (libc.chroot(cstring(".")) !== 0) throw new SyscallError("chroot", errno(), "<tree>");
    if (libc.chdir(cstring("/")) !== 0) throw new SyscallError("chdir", errno(), "/");
  } finally {
    libc.close(treeFd);
  }
}
