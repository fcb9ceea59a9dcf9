// Running a container with gVisor's runsc, bounded in time and always cleaned up.
//
// Two things make runsc work against a namespace slirpd serves, on this kernel:
//
//   1. --network=sandbox: gVisor's own netstack drives the links of the container's network
//      namespace. runsc opens an AF_PACKET socket on every up, addressed link (our tap), moves
//      the addresses and routes into gVisor, and deletes them from the kernel. Frames gVisor
//      sends on that packet socket come out of the tap fd slirpd reads, and frames slirpd writes
//      to the tap reach the packet socket: a tap works, no veth is needed.
//   2. Only where needed (coreWorkaroundNeeded: an old runsc on a kernel that shows
//      rmem_default in every netns): a tmpfs over /proc/sys/net/core, in a private mount
//      namespace (`unshare -m`). runsc
//      refuses ("cannot run with network enabled in root network namespace") when, after joining
//      the container's netns, /proc/sys/net/core/rmem_default exists: its isRootNS() test (in
//      runsc/sandbox/network.go) assumes only the init netns has that file. Recent kernels (6.11
//      in the issue, 6.18 here) show rmem_default in every netns, so the test always says
//      "root" (gVisor issue 10704, reported 2024-07 and fixed in later releases; Debian's
//      0.0~20221219 predates it). Hiding the directory in runsc's own mount namespace makes
//      the test answer correctly; nothing outside that mount namespace sees the tmpfs.
//      The mount must be made from *inside* the container's netns (`nsenter --net mount`):
//      /proc/sys/net/* dentries belong to the netns of whoever looked them up, so a tmpfs
//      mounted from the host netns covers the host's "core" directory only, and runsc, once in
//      the container's netns, looks up a different dentry and still finds rmem_default. runsc
//      itself stays in the host netns; only its mount namespace is private.

import { run } from "../../tests/support/harness.ts";

export interface RunscResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export class Runsc {
  /**
   * @param root   runsc's --root state directory (ours alone, removed by the caller)
   * @param flags  global flags, e.g. --platform=ptrace --network=sandbox
   */
  constructor(readonly root: string, readonly flags: string[]) {}

  argv(args: string[]): string[] {
    return ["runsc", `--root=${this.root}`, ...this.flags, ...args];
  }

  /**
   * `runsc run`; with `hideCore` inside `unshare -m` with /proc/sys/net/core hidden (see the
   * top of the file). `stdio: "inherit"` passes ours to the container (output then is "").
   */
  async runContainer(
    bundle: string,
    id: string,
    netnsPath: string,
    opts: { timeoutMs: number; hideCore: boolean; stdio: "piped" | "inherit" },
  ): Promise<RunscResult> {
    const runsc = this.argv(["run", `--bundle=${bundle}`, id]);
    const cmd = !opts.hideCore ? runsc : [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'nsenter --net="$0" mount -t tmpfs -o size=4k,mode=0555 slirpd-runsc /proc/sys/net/core ' +
      '&& exec "$@"',
      netnsPath,
      ...runsc,
    ];
    const child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: opts.stdio === "inherit" ? "inherit" : "null",
      stdout: opts.stdio,
      stderr: opts.stdio,
    }).spawn();
    let timedOut = false;
    // On timeout kill the container through runsc too: the sandbox and gofer processes hold
    // copies of our stdout/stderr pipes, and the output would never end while they live.
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      void this.remove(id);
    }, opts.timeoutMs);
    try {
      if (opts.stdio === "inherit") {
        return { code: (await child.status).code, stdout: "", stderr: "", timedOut };
      }
      const out = await child.output();
      const dec = new TextDecoder();
      return {
        code: out.code,
        stdout: dec.decode(out.stdout),
        stderr: dec.decode(out.stderr),
        timedOut,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Force-deletes the container (kills its sandbox and gofer); quiet if it is already gone. */
  async remove(id: string): Promise<void> {
    await run(this.argv(["delete", "--force", id]), { timeoutMs: 15_000 });
  }
}

/** `runsc --version`'s first line, or null when runsc is not installed / does not run. */
export async function runscVersion(): Promise<string | null> {
  try {
    const r = await run(["runsc", "--version"], { timeoutMs: 10_000 });
    return r.code === 0 ? r.stdout.split("\n")[0].trim() : null;
  } catch {
    return null;
  }
}

/** The first release of gVisor after the fix of issue 10704 (reported 2024-07-30). */
const FIXED_RELEASE = "20240801";

/**
 * Whether runsc needs /proc/sys/net/core hidden: the kernel shows rmem_default inside a
 * non-initial netns (Linux 6.11+), and runsc predates the fix (its version carries a date:
 * "release-20240807.0", Debian's "0.0~20221219.0"; no date: assume old, the tmpfs is harmless).
 */
export function coreWorkaroundNeeded(version: string, rmemInNetns: boolean): boolean {
  if (!rmemInNetns) return false;
  const date = version.match(/(20\d{6})/);
  return date === null || date[1] < FIXED_RELEASE;
}

/** Whether /proc/sys/net/core/rmem_default exists as seen from inside the netns. */
export async function rmemVisibleIn(netnsPath: string): Promise<boolean> {
  const r = await run([
    "nsenter",
    `--net=${netnsPath}`,
    "test",
    "-e",
    "/proc/sys/net/core/rmem_default",
  ]);
  return r.code === 0;
}

/** A line on what blocks runsc, for the errors this setup is known to meet; else null. */
export function explain(stderr: string): string | null {
  if (stderr.includes("cannot run with network enabled in root network namespace")) {
    return "runsc saw /proc/sys/net/core/rmem_default in the container's netns and took it for " +
      "the init netns (gVisor issue 10704); the tmpfs that hides it must be mounted while in " +
      "that netns (sysctl dentries are per netns), as runContainer does";
  }
  if (stderr.includes("more than one default route")) {
    return "runsc accepts one default route per family and link; the guest must not accept " +
      "router advertisements besides slirpd's static `default via fd00::2`";
  }
  if (/ptrace/i.test(stderr)) {
    return "the ptrace platform needs ptrace(2), which this machine (seccomp, Yama) may forbid";
  }
  return null;
}
