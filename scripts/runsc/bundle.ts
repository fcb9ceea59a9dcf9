// The OCI bundle for the gVisor check: a rootfs with nothing but busybox and the libraries it
// links against, and a config.json whose network namespace is the one slirpd serves.
//
// Why copy libraries instead of using busybox-static: the Debian `busybox` package (the one on
// the machine) is dynamically linked, and `ldd` names exactly what it needs, so the rootfs stays
// a few MB and needs no image download.

import { run } from "../../tests/support/harness.ts";

/** Shared libraries of `bin` as absolute paths, from `ldd` (the loader included). */
export async function lddLibraries(bin: string): Promise<string[]> {
  const r = await run(["ldd", bin]);
  if (r.code !== 0) {
    // "not a dynamic executable" (a static busybox) means there is nothing to copy.
    if (/not a dynamic executable/.test(r.stdout + r.stderr)) return [];
    throw new Error(`ldd ${bin} failed: ${r.stdout}${r.stderr}`);
  }
  const libs: string[] = [];
  for (const line of r.stdout.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/** Copies `src` (symlinks followed) to the same absolute path under `root`. */
async function copyInto(root: string, src: string, mode = 0o755): Promise<void> {
  const dst = `${root}${src}`;
  await Deno.mkdir(dst.slice(0, dst.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(src, dst);
  await Deno.chmod(dst, mode);
}

export interface BundleOptions {
  /** The bundle directory (made; rootfs/ and config.json go inside). */
  dir: string;
  /** The guest network namespace path the container joins (e.g. /run/netns/NAME). */
  netnsPath: string;
  /** Shell script run by `/usr/bin/busybox sh -c` as the container's process. */
  script: string;
  /** Host path of busybox (default: found on PATH as /usr/bin/busybox or /bin/busybox). */
  busybox?: string;
  hostname?: string;
}

/** Writes rootfs/ and config.json into opts.dir. */
export async function makeBundle(opts: BundleOptions): Promise<void> {
  const rootfs = `${opts.dir}/rootfs`;
  const busybox = opts.busybox ?? await findBusybox();
  await Deno.mkdir(rootfs, { recursive: true });
  for (const d of ["proc", "dev", "sys", "tmp", "etc", "usr/bin"]) {
    await Deno.mkdir(`${rootfs}/${d}`, { recursive: true });
  }
  // Inside the container busybox is always /usr/bin/busybox, whatever its host path.
  await Deno.copyFile(busybox, `${rootfs}/usr/bin/busybox`);
  await Deno.chmod(`${rootfs}/usr/bin/busybox`, 0o755);
  for (const lib of await lddLibraries(busybox)) await copyInto(rootfs, lib);
  // Name lookups are not needed (the URL is a literal), but keep libc's resolver quiet.
  await Deno.writeTextFile(`${rootfs}/etc/hosts`, "127.0.0.1 localhost\n");
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, "root:x:0:0:root:/:/bin/sh\n");
  const config = ociConfig({
    rootPath: "rootfs",
    args: ["/usr/bin/busybox", "sh", "-c", opts.script],
    netnsPath: opts.netnsPath,
    hostname: opts.hostname,
  });
  await Deno.writeTextFile(`${opts.dir}/config.json`, JSON.stringify(config, null, 2));
}

async function findBusybox(): Promise<string> {
  for (const p of ["/usr/bin/busybox", "/bin/busybox", "/usr/sbin/busybox"]) {
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* next */ }
  }
  throw new Error("busybox not found (install the busybox package)");
}

export interface ConfigOptions {
  /** The rootfs: absolute, or relative to the bundle directory. */
  rootPath: string;
  /** The container's process (argv). */
  args: string[];
  /** The network namespace the container joins (the one slirpd serves). */
  netnsPath: string;
  hostname?: string;
  readonly?: boolean;
}

/** The OCI runtime config: `runsc spec`'s defaults, a process, and the guest netns path. */
export function ociConfig(opts: ConfigOptions): Record<string, unknown> {
  // CAP_NET_RAW so busybox ping can open its raw ICMP socket inside gVisor (with --net-raw).
  const caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
  return {
    ociVersion: "1.0.0",
    process: {
      user: { uid: 0, gid: 0 },
      args: opts.args,
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"],
      cwd: "/",
      capabilities: {
        bounding: caps,
        effective: caps,
        inheritable: caps,
        permitted: caps,
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
    },
    root: { path: opts.rootPath, readonly: opts.readonly ?? true },
    hostname: opts.hostname ?? "gvisor",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs" },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs" },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
    ],
    linux: {
      // The network namespace is *joined* (path), not made: it is the one slirpd serves. With
      // --network=sandbox runsc starts its sandbox process in it, takes over its links and
      // addresses, and gVisor's netstack then speaks Ethernet on slirpd's tap.
      namespaces: [
        { type: "pid" },
        { type: "network", path: opts.netnsPath },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
      ],
    },
  };
}
