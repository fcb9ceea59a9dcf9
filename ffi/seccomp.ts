// --enable-seccomp: a seccomp-BPF deny list on EVERY thread of the running process.
//
// Deno is multithreaded before any of slirpd's code runs, and seccomp(2) without flags filters
// only the calling thread. With SECCOMP_FILTER_FLAG_TSYNC the kernel puts the filter on all
// threads of the thread group at once and copies the caller's no_new_privs to them (measured:
// every /proc/self/task/*/status then shows NoNewPrivs 1, Seccomp 2); threads made later
// inherit it. So one call from the main thread confines the whole process, for good.
//
// Policy: allow by default, deny what a slirp never needs once it runs (slirp4netns' list,
// extended): exec, ptrace, process_vm_*, the mount family (old and new API), pivot_root,
// chroot, setns/unshare, kexec, modules, bpf, keyrings, reboot, swap, clock setting, hostname,
// quotas, syslog, perf, userfaultfd, file handles, pidfd_getfd, io_uring (its requests bypass
// seccomp), x86 iopl/ioperm → EPERM. clone with a CLONE_NEW* flag → EPERM (threads still work);
// clone3 → ENOSYS, since its flags sit in memory a filter cannot read and glibc then falls back
// to clone, whose flags are checked (Docker's default profile does the same). prctl: only a
// few harmless options (thread and VMA names, getters). A call from another ABI (i386 int 0x80,
// x32) kills the process: its numbers differ, so a deny list keyed on ours would not hold.
//
// Install it after everything that needs these calls: the setns windows and the rootless
// helper (execve, pidfd_getfd) of start-up, and the sandbox (chroot, mount API, uid switch).
// Deno.Command fails afterwards (execve: EPERM), as it should. Cost: ~40-100 ns per syscall.

import { errno, openLibc, SyscallError } from "./libc.ts";

const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_GET_SECCOMP = 21;

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const X32_SYSCALL_BIT = 0x40000000;

// classic BPF opcodes
const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K
// struct seccomp_data offsets
const OFF_NR = 0;
const OFF_ARCH = 4;
const offArgLo = (i: number) => 16 + 8 * i; // little-endian: low 32 bits first

/** CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET. */
const CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 |
  0x20000000 | 0x40000000;

export type SeccompArch = "x86_64" | "aarch64";

/**
 * Denied syscalls: name -> [x86_64, aarch64] number (null: the ABI has no such call).
 * Numbers >= 424 come from the unified table and are equal on both.
 */
export const DENIED: Record<string, [number | null, number | null]> = {
  execve: [59, 221],
  execveat: [322, 281],
  ptrace: [101, 117],
  process_vm_readv: [310, 270],
  process_vm_writev: [311, 271],
  kcmp: [312, 272],
  pidfd_getfd: [438, 438],
  mount: [165, 40],
  umount2: [166, 39],
  pivot_root: [155, 41],
  chroot: [161, 51],
  open_tree: [428, 428],
  move_mount: [429, 429],
  fsopen: [430, 430],
  fsconfig: [431, 431],
  fsmount: [432, 432],
  fspick: [433, 433],
  mount_setattr: [442, 442],
  open_tree_attr: [467, 467],
  setns: [308, 268],
  unshare: [272, 97],
  kexec_load: [246, 104],
  kexec_file_load: [320, 294],
  init_module: [175, 105],
  finit_module: [313, 273],
  delete_module: [176, 106],
  bpf: [321, 280],
  keyctl: [250, 219],
  add_key: [248, 217],
  request_key: [249, 218],
  reboot: [169, 142],
  swapon: [167, 224],
  swapoff: [168, 225],
  open_by_handle_at: [304, 265],
  name_to_handle_at: [303, 264],
  perf_event_open: [298, 241],
  userfaultfd: [323, 282],
  acct: [163, 89],
  settimeofday: [164, 170],
  clock_settime: [227, 112],
  clock_adjtime: [305, 266],
  adjtimex: [159, 171],
  sethostname: [170, 161],
  setdomainname: [171, 162],
  quotactl: [179, 60],
  quotactl_fd: [443, 443],
  syslog: [103, 116],
  vhangup: [153, 58],
  lookup_dcookie: [212, 18],
  fanotify_init: [300, 262],
  io_uring_setup: [425, 425],
  io_uring_enter: [426, 426],
  io_uring_register: [427, 427],
  nfsservctl: [180, 42], // removed from the kernel long ago (ENOSYS)
  // x86_64 only
  iopl: [172, null],
  ioperm: [173, null],
  uselib: [134, null],
  _sysctl: [156, null],
  create_module: [174, null],
  get_kernel_syms: [177, null],
  query_module: [178, null],
};

const SYS: Record<SeccompArch, { clone: number; clone3: number; prctl: number; seccomp: number }> =
  {
    x86_64: { clone: 56, clone3: 435, prctl: 157, seccomp: 317 },
    aarch64: { clone: 220, clone3: 435, prctl: 167, seccomp: 277 },
  };

/** prctl options still allowed (everything else: EPERM). */
export const PRCTL_ALLOWED: Record<string, number> = {
  PR_GET_DUMPABLE: 3,
  PR_GET_KEEPCAPS: 7,
  PR_SET_NAME: 15, // Rust/glibc name every new thread (pthread_setname_np)
  PR_GET_NAME: 16,
  PR_GET_SECCOMP: 21,
  PR_CAPBSET_READ: 23,
  PR_GET_SECUREBITS: 27,
  PR_GET_TIMERSLACK: 30,
  PR_GET_NO_NEW_PRIVS: 39,
  PR_SET_VMA: 0x53564d41, // PR_SET_VMA_ANON_NAME, used by V8/abseil allocators
};

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}
const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k });
const jump = (code: number, k: number, jt: number, jf: number): Insn => ({ code, jt, jf, k });
const ret = (k: number) => stmt(BPF_RET_K, k);

/** The BPF program for `arch` (default: the running one). Exported for tests/inspection. */
export function buildFilter(arch: SeccompArch = hostArch()): Insn[] {
  const sys = SYS[arch];
  const auditArch = arch === "x86_64" ? AUDIT_ARCH_X86_64 : AUDIT_ARCH_AARCH64;
  const denyNrs = [
    ...new Set(
      Object.values(DENIED)
        .map(([x, a]) => arch === "x86_64" ? x : a)
        .filter((n): n is number => n !== null),
    ),
  ].sort((a, b) => a - b);
  const prctlOpts = Object.values(PRCTL_ALLOWED);

  const p: Insn[] = [];
  // 1. the ABI: anything else is killed
  p.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
  p.push(jump(BPF_JEQ_K, auditArch, 1, 0));
  p.push(ret(SECCOMP_RET_KILL_PROCESS));
  p.push(stmt(BPF_LD_W_ABS, OFF_NR));
  if (arch === "x86_64") {
    // x32 calls carry AUDIT_ARCH_X86_64 too, with bit 30 set in the number
    p.push(jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1));
    p.push(ret(SECCOMP_RET_KILL_PROCESS));
  }
  // 2. the deny list: "jeq nr; ret EPERM" pairs (no long jumps, no 255-offset limit)
  for (const nr of denyNrs) {
    p.push(jump(BPF_JEQ_K, nr, 0, 1));
    p.push(ret(SECCOMP_RET_ERRNO | EPERM));
  }
  // 3. clone3 -> ENOSYS (glibc falls back to clone)
  p.push(jump(BPF_JEQ_K, sys.clone3, 0, 1));
  p.push(ret(SECCOMP_RET_ERRNO | ENOSYS));
  // 4. clone: no namespace flags (flags are arg 0 on both arches; the kernel uses the low 32)
  p.push(jump(BPF_JEQ_K, sys.clone, 0, 4));
  p.push(stmt(BPF_LD_W_ABS, offArgLo(0)));
  p.push(jump(BPF_JSET_K, CLONE_NS_FLAGS, 0, 1));
  p.push(ret(SECCOMP_RET_ERRNO | EPERM));
  p.push(ret(SECCOMP_RET_ALLOW));
  // 5. prctl: an allow list of options (the kernel reads option as int: low 32 bits)
  p.push(jump(BPF_JEQ_K, sys.prctl, 0, prctlOpts.length + 2));
  p.push(stmt(BPF_LD_W_ABS, offArgLo(0)));
  prctlOpts.forEach((opt, i) => {
    // match: jump to the ALLOW after the final ERRNO
    p.push(jump(BPF_JEQ_K, opt, prctlOpts.length - i, 0));
  });
  p.push(ret(SECCOMP_RET_ERRNO | EPERM));
  p.push(ret(SECCOMP_RET_ALLOW));
  // 6. everything else
  p.push(ret(SECCOMP_RET_ALLOW));
  if (p.length > 4096) throw new Error(`seccomp: filter too long (${p.length})`);
  return p;
}

function hostArch(): SeccompArch {
  const a = Deno.build.arch;
  if (a !== "x86_64" && a !== "aarch64") throw new Error(`seccomp: unsupported arch ${a}`);
  return a;
}

const libc = openLibc({
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
});

/** Seccomp mode of the calling thread (0 none, 1 strict, 2 filter). */
export function seccompMode(): number {
  return libc.prctl(PR_GET_SECCOMP, 0n, 0n, 0n, 0n);
}

/**
 * Sets no_new_privs and installs the filter on every thread (TSYNC). Throws a SyscallError
 * naming the failed step; TSYNC is all-or-nothing, so on failure no thread has the filter.
 */
export function installSeccompFilter(): void {
  const arch = hostArch();
  const insns = buildFilter(arch);
  if (libc.prctl(PR_SET_NO_NEW_PRIVS, 1n, 0n, 0n, 0n) !== 0) {
    throw new SyscallError("prctl", errno(), "PR_SET_NO_NEW_PRIVS");
  }
  // struct sock_filter[] and struct sock_fprog { u16 len; (pad); sock_filter *filter }
  const code = new Uint8Array(insns.length * 8);
  const dv = new DataView(code.buffer);
  insns.forEach((ins, i) => {
    dv.setUint16(i * 8, ins.code, true);
    dv.setUint8(i * 8 + 2, ins.jt);
    dv.setUint8(i * 8 + 3, ins.jf);
    dv.setUint32(i * 8 + 4, ins.k >>> 0, true);
  });
  const prog = new Uint8Array(16);
  const pv = new DataView(prog.buffer);
  pv.setUint16(0, insns.length, true);
  pv.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(code))), true);
  const r = libc.syscall(
    BigInt(SYS[arch].seccomp),
    BigInt(SECCOMP_SET_MODE_FILTER),
    BigInt(SECCOMP_FILTER_FLAG_TSYNC),
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(prog))),
  );
  if (r < 0n) throw new SyscallError("seccomp", errno(), "SECCOMP_SET_MODE_FILTER, TSYNC");
  // r > 0: the id of a thread that could not be synchronized (another filter tree).
  if (r > 0n) throw new Error(`seccomp: thread ${r} could not be synchronized (TSYNC)`);
  void code.length; // the kernel copied the program during the call; keep it alive until here
}
