// Process-level calls Deno has no API for: the parent-death signal (slirpnetstack's
// -exit-with-parent) and the parent's pid as the kernel sees it now.

import { check, openLibc } from "./libc.ts";

const libc = openLibc({
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  getppid: { parameters: [], result: "i32" },
});

const PR_SET_PDEATHSIG = 1;
export const SIGTERM = 15;

/** The parent's pid now (1 or a subreaper once the parent has died). */
export function parentPid(): number {
  return libc.getppid();
}

/**
 * Asks the kernel to send `sig` when the parent dies. The kernel ties it to the parent
 * *thread* that forked slirpd (prctl(2)); a parent that died before the call is caught by
 * comparing parentPid() with the pid seen at start, which the caller does.
 */
export function setParentDeathSignal(sig: number): void {
  check(libc.prctl(PR_SET_PDEATHSIG, BigInt(sig), 0n, 0n, 0n), "prctl", "PR_SET_PDEATHSIG");
}
