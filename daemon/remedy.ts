// First-run errors with their remedy: what a new user meets (no such namespace, no tap without
// -c, no /dev/net/tun, a root-owned namespace as an ordinary user) becomes one line that says
// what to do. The lower layers keep their exact messages (`setns(PATH): EPERM`, tests match
// them); this maps them at the top, where the command line is known.

import type { Config } from "./config.ts";
import { SyscallError } from "../ffi/libc.ts";
import { EACCES, EINVAL, ENODEV, ENOENT, EPERM } from "../ffi/errno.ts";

const TUN = "/dev/net/tun";

/** The message of a start failure, with what to do about it when slirpd knows. */
export function withRemedy(e: unknown, cfg: Config | null): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (/: no such tap in the namespace /.test(msg)) {
    return `${msg}: -c (--configure) creates it and configures the guest`;
  }
  // The rootless helper's shell says it in its own words.
  if (new RegExp(`${TUN}: Permission denied`).test(msg)) return `${msg}: ${tunAccess()}`;
  if (new RegExp(`${TUN}: (No such file|Directory nonexistent)`).test(msg)) {
    return `${msg}: ${tunMissing()}`;
  }
  if (!(e instanceof SyscallError)) return msg;
  const ns = cfg?.netns ?? "";
  const flag = cfg?.form === "slirp4netns" ? targetName(ns) : `--netns ${ns}`;
  if (e.subject === TUN || e.subject.startsWith(`${TUN} `)) {
    if (e.errno === ENOENT || e.errno === ENODEV) return `${msg}: ${tunMissing()}`;
    if (e.errno === EACCES || e.errno === EPERM) return `${msg}: ${tunAccess()}`;
  }
  if (ns === "" || e.subject !== ns) return msg;
  if (e.call === "open" && e.errno === ENOENT) {
    const pid = ns.match(/^\/proc\/(\d+)\/ns\/net$/);
    if (pid) return `PID ${pid[1]}: no such process (${msg})`;
    return `${flag}: no such network namespace (${msg}); a process's is /proc/PID/ns/net, ` +
      "`ip netns add NAME` makes /run/netns/NAME, or let slirpd make one: slirpd -- CMD";
  }
  if (e.call === "open" && e.errno === EACCES) {
    return `${flag}: not readable by this user (${msg}); run slirpd as the namespace's owner ` +
      "or as root";
  }
  if (e.call === "setns" && e.errno === EINVAL) {
    return `${flag}: not a network namespace (${msg}); expected /proc/PID/ns/net or ` +
      "/run/netns/NAME";
  }
  if (e.call === "setns" && e.errno === EPERM) {
    return `${flag}: not permitted (${msg}): the namespace belongs to the host's user ` +
      "namespace; run slirpd as root, make the namespace as this user (unshare -Urn), or let " +
      "slirpd make one: slirpd -- CMD";
  }
  return msg;
}

function tunMissing(): string {
  return `the tun driver is missing: modprobe tun (or mknod ${TUN} c 10 200)`;
}

function tunAccess(): string {
  return `this user may not use ${TUN}: chmod 0666 ${TUN} (as distributions ship it), or run ` +
    "slirpd as root";
}

function targetName(ns: string): string {
  const pid = ns.match(/^\/proc\/(\d+)\/ns\/net$/);
  return pid ? `PID ${pid[1]}` : ns;
}
