// Capabilities of the WHOLE process, not just the calling thread (--enable-sandbox).
//
// Capabilities live in each thread's credentials. capset(2), PR_CAPBSET_DROP, PR_CAP_AMBIENT
// and PR_SET_KEEPCAPS change only the calling thread, and Deno has V8 platform workers and
// tokio threads before any of slirpd's code runs: after a capset() on the main thread those
// threads keep the full set (measured: a nonblocking FFI call, which runs on a tokio thread,
// could still open an AF_PACKET socket).
//
// What does reach every thread is glibc's set*id family: setgroups/setresgid/setresuid are
// run on every thread (nptl's SIGSETXID broadcast), and the kernel clears the permitted,
// effective and ambient sets of a thread whose uids all leave 0 (unless that thread set
// PR_SET_KEEPCAPS, which is per thread). So, from the main thread:
//   1. drop the bounding set except what the main thread still needs, clear ambient,
//      PR_SET_KEEPCAPS on the main thread only;
//   2. setgroups([]), setresgid(gid), setresuid(uid): every thread switches; every thread but
//      the main one is left with no capability at all;
//   3. capset the main thread down to exactly what it keeps.
// glibc aborts the process when the broadcast call gives different results on different
// threads (measured), so the main thread keeps CAP_SETUID/SETGID until the switch is over.
// Threads made later inherit from their creator: at most what the main thread kept.

import { check, errno, openLibc, SyscallError } from "./libc.ts";
import { EINVAL } from "./errno.ts";

export const CAP_SETPCAP = 8;
export const CAP_NET_BIND_SERVICE = 10;
export const CAP_SYS_CHROOT = 18;

const PR_SET_KEEPCAPS = 8;
const PR_CAPBSET_DROP = 24;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

const libc = openLibc({
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  capget: { parameters: ["buffer", "buffer"], result: "i32" },
  capset: { parameters: ["buffer", "buffer"], result: "i32" },
  setresuid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setresgid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setgroups: { parameters: ["usize", "pointer"], result: "i32" },
  geteuid: { parameters: [], result: "u32" },
  gettid: { parameters: [], result: "i32" },
});

/** Bit mask of capability numbers. */
export function capMask(caps: number[]): bigint {
  return caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);
}

export function geteuid(): number {
  return libc.geteuid();
}

function capHeader(): Uint8Array<ArrayBuffer> {
  const hdr = new Uint8Array(8); // struct __user_cap_header_struct { version; pid = 0 (self) }
  new DataView(hdr.buffer).setUint32(0, LINUX_CAPABILITY_VERSION_3, true);
  return hdr;
}

/** The calling thread's sets (capget). */
export function threadCaps(): { effective: bigint; permitted: bigint } {
  const data = new Uint8Array(24); // two struct __user_cap_data_struct (low, high 32 bits)
  check(libc.capget(capHeader(), data), "capget");
  const v = new DataView(data.buffer);
  const get = (off: number) =>
    BigInt(v.getUint32(off, true)) | (BigInt(v.getUint32(12 + off, true)) << 32n);
  return { effective: get(0), permitted: get(4) };
}

/** capset on the calling thread only: effective and permitted, inheritable empty. */
export function setThreadCaps(effective: bigint, permitted: bigint): void {
  const data = new Uint8Array(24);
  const v = new DataView(data.buffer);
  const put = (off: number, m: bigint) => {
    v.setUint32(off, Number(m & 0xffffffffn), true);
    v.setUint32(12 + off, Number(m >> 32n), true);
  };
  put(0, effective);
  put(4, permitted);
  check(libc.capset(capHeader(), data), "capset");
}

/** Drops every bounding-set capability but `keep` on the calling thread (needs CAP_SETPCAP). */
export function dropBounding(keep: number[]): void {
  for (let cap = 0; cap < 64; cap++) {
    if (keep.includes(cap)) continue;
    if (libc.prctl(PR_CAPBSET_DROP, BigInt(cap), 0n, 0n, 0n) !== 0) {
      if (errno() === EINVAL) break; // past the kernel's last capability
      throw new SyscallError("prctl", errno(), `PR_CAPBSET_DROP ${cap}`);
    }
  }
}

/** One thread's credentials as /proc shows them. */
export interface ThreadCreds {
  tid: number;
  name: string;
  uids: number[];
  eff: bigint;
  prm: bigint;
  amb: bigint;
  bnd: bigint;
  noNewPrivs: number;
  seccomp: number;
}

/** Credentials of every thread of process `pid` (default: this one), from /proc. */
export function threadCreds(pid: number | "self" = "self"): ThreadCreds[] {
  const out: ThreadCreds[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    let s: string;
    try {
      s = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/status`);
    } catch {
      continue; // the thread exited meanwhile
    }
    const f = (k: string) => s.match(new RegExp(`^${k}:[ \\t]*(.*)$`, "m"))?.[1]?.trim() ?? "";
    const hex = (k: string) => BigInt("0x" + (f(k) || "0"));
    out.push({
      tid: Number(e.name),
      name: f("Name"),
      uids: f("Uid").split(/\s+/).filter((x) => x !== "").map(Number),
      eff: hex("CapEff"),
      prm: hex("CapPrm"),
      amb: hex("CapAmb"),
      bnd: hex("CapBnd"),
      noNewPrivs: Number(f("NoNewPrivs") || 0),
      seccomp: Number(f("Seccomp") || 0),
    });
  }
  return out.sort((a, b) => a.tid - b.tid);
}

/**
 * Throws unless no thread holds a capability outside `keep` (the calling thread may also
 * hold `mainAlso`) and, when `uid` is given, every thread runs as it.
 */
export function verifyAllThreads(keep: number[], uid?: number, mainAlso: number[] = []): void {
  const mainTid = libc.gettid();
  const bad = threadCreds().filter((t) => {
    const m = capMask(t.tid === mainTid ? [...keep, ...mainAlso] : keep);
    return (t.eff & ~m) !== 0n || (t.prm & ~m) !== 0n || (t.amb & ~m) !== 0n ||
      (uid !== undefined && t.uids.some((u) => u !== uid));
  });
  if (bad.length > 0) {
    throw new Error(
      `threads still privileged: ${
        bad.map((t) => `${t.tid}(${t.name}) uid=${t.uids.join("/")} prm=${t.prm.toString(16)}`)
          .join(", ")
      }`,
    );
  }
}

/**
 * Steps 1 and 2 of the header: every thread becomes uid/gid with no supplementary groups and
 * no capability, except the calling (main) thread, which keeps `mainKeeps` in its permitted
 * set (raise them with setThreadCaps). Call from the main thread with euid 0; uid must not
 * be 0 (that would keep every capability on every thread) and must be mapped in our user
 * namespace.
 */
export function switchUserAllThreads(uid: number, gid: number, mainKeeps: number[]): void {
  if (libc.geteuid() !== 0) throw new Error("the uid switch needs euid 0");
  if (uid === 0) throw new Error("uid 0 would keep every capability on every thread");
  dropBounding(mainKeeps);
  check(libc.prctl(PR_CAP_AMBIENT, BigInt(PR_CAP_AMBIENT_CLEAR_ALL), 0n, 0n, 0n), "prctl");
  check(libc.prctl(PR_SET_KEEPCAPS, 1n, 0n, 0n, 0n), "prctl", "PR_SET_KEEPCAPS");
  check(libc.setgroups(0n, null), "setgroups");
  check(libc.setresgid(gid, gid, gid), "setresgid", String(gid));
  check(libc.setresuid(uid, uid, uid), "setresuid", String(uid));
  check(libc.prctl(PR_SET_KEEPCAPS, 0n, 0n, 0n, 0n), "prctl", "PR_SET_KEEPCAPS 0");
  setThreadCaps(0n, threadCaps().permitted & capMask(mainKeeps));
}

/** Is `id` mapped in this process's user namespace (/proc/self/uid_map or gid_map)? */
export function idMapped(id: number, which: "uid" | "gid"): boolean {
  const map = Deno.readTextFileSync(`/proc/self/${which}_map`);
  return map.split("\n").some((l) => {
    const [inside, , count] = l.trim().split(/\s+/).map(Number);
    return Number.isFinite(count) && id >= inside && id < inside + count;
  });
}
