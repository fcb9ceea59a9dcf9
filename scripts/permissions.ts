// The Deno permissions slirpd runs with when compiled (`deno task compile`) or installed
// (`deno task install`): the narrowest set that works, each with why (README repeats this).
// tests/unit/workflows.test.ts checks that README names each one.
//
// Honest caveat: --allow-ffi lets slirpd make any syscall (that is how it reaches taps, netns
// and sockets), so these are a statement of what slirpd uses, not a sandbox.

export const PERMISSIONS: { flag: string; why: string }[] = [
  {
    flag: "--allow-ffi",
    why: "libc through Deno.dlopen: the tap, setns, netlink, epoll and every host socket",
  },
  {
    flag: "--allow-run=nsenter,unshare",
    why: "nsenter starts the rootless helper (ffi/userns.ts); unshare starts `-- CMD` " +
      "in its new namespaces",
  },
  {
    flag: "--allow-read",
    why: "paths given on the command line (--netns, --resolv-conf, --api-socket, " +
      "--userns-path) and /proc (namespace inodes, the helper's descriptors)",
  },
  {
    flag: "--allow-write",
    why: "the --api-socket and -m unix:// socket files, and the FIFO and resolv.conf of " +
      "`-- CMD` (in a private directory in $TMPDIR); -pcap files are opened through libc",
  },
  {
    flag: "--allow-net",
    why: "resolving host names in --allow/--deny and SRV targets (Deno.resolveDns), the " +
      "unix API socket, the -m metrics endpoint",
  },
  {
    flag: "--allow-sys=uid",
    why: "`-- CMD` makes a user namespace too when slirpd is not root (Deno.uid)",
  },
  {
    flag: "--allow-env=PATH,TMPDIR,SLIRPD_VERSION,SLIRPD_COMMIT,SLIRPD_BUILD_TIME",
    why: "PATH to find nsenter/ip/unshare, TMPDIR for the FIFO, the version stamp (--version)",
  },
];

/**
 * V8's young generation at 1 MiB: slirpd's hot paths allocate nothing, so the default 16 MiB
 * semi-spaces mostly cost resident memory (peak RSS per bench cell 82-100 vs 104-127 MiB,
 * throughput the same within noise).
 */
export const V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--no-memory-reducer";

/** The flags alone, for `deno compile` / `deno install` (with V8_FLAGS). */
export const PERMISSION_FLAGS: string[] = [...PERMISSIONS.map((p) => p.flag), V8_FLAGS];

if (import.meta.main) {
  for (const p of PERMISSIONS) console.log(`${p.flag}\n    ${p.why}`);
}
