// One gVisor sandbox behind slirpd, made and torn down as a unit: a fresh guest netns, slirpd
// serving it (--configure plus the caller's flags), a copy of the bundle's config.json whose
// network namespace is that netns (the caller's bundle is never modified), `runsc
// --network=sandbox run`, and then everything removed again: the container (runsc delete
// --force), slirpd (SIGTERM), the netns and the temporary directory. SIGINT/SIGTERM during the
// run remove the container first, so the cleanup still runs.
//
// Both the self-test (main.ts without arguments) and a user's own bundle or rootfs go through
// runSandbox.

import { makeNetns, type Netns, startSlirpd } from "../../tests/support/harness.ts";
import {
  coreWorkaroundNeeded,
  rmemVisibleIn,
  Runsc,
  type RunscResult,
  runscVersion,
} from "./runsc.ts";

export interface SandboxOptions {
  /** The OCI config to run (a bundle's config.json, parsed). */
  config: Record<string, unknown>;
  /** Where a relative root.path of `config` is relative to (the bundle directory). */
  bundleDir: string;
  /** Container id (default slirpd-<netns name>). */
  id?: string;
  /** slirpd's flags besides --configure (e.g. --enable-routing). */
  slirpdArgs: string[];
  /** Run slirpd inside this namespace (the self-test's isolated host); default: here. */
  hostNs?: Netns;
  /** runsc's global flags besides --root and --network=sandbox. */
  runscFlags: string[];
  /** "inherit": the container gets our stdin/stdout/stderr. */
  stdio: "piped" | "inherit";
  timeoutMs: number;
  log: (line: string) => void;
  /** Called with the guest netns and the temporary directory before runsc starts. */
  beforeRun?: (guest: Netns, tmp: string) => Promise<void>;
  /** Called with the guest netns after runsc ended (before teardown). */
  afterRun?: (guest: Netns) => Promise<void>;
}

export interface SandboxResult extends RunscResult {
  /** Whether /proc/sys/net/core was hidden (gVisor issue 10704). */
  hidCore: boolean;
  /** slirpd's exit code after SIGTERM (0 when it stopped cleanly). */
  slirpdCode: number;
  slirpdStderr: string;
}

/** The bundle's config with an absolute root.path and `netnsPath` as its network namespace. */
export function pointConfig(
  config: Record<string, unknown>,
  bundleDir: string,
  netnsPath: string,
): Record<string, unknown> {
  const c = structuredClone(config) as {
    root?: { path?: string };
    linux?: { namespaces?: { type: string; path?: string }[] };
  };
  const root = c.root?.path ?? "rootfs";
  c.root = { ...c.root, path: root.startsWith("/") ? root : `${bundleDir}/${root}` };
  c.linux ??= {};
  const others = (c.linux.namespaces ?? []).filter((n) => n.type !== "network");
  c.linux.namespaces = [...others, { type: "network", path: netnsPath }];
  return c as Record<string, unknown>;
}

export async function runSandbox(o: SandboxOptions): Promise<SandboxResult> {
  const version = await runscVersion();
  if (version === null) throw new Error("needs gVisor's runsc on PATH (apt-get install runsc)");
  await using guest = await makeNetns("runsc");
  await using slirpd = await startSlirpd({
    guest,
    hostNs: o.hostNs,
    args: ["--configure", ...o.slirpdArgs],
  });
  const tmp = await Deno.makeTempDir({ prefix: "slirpd-runsc-" });
  try {
    const bundle = `${tmp}/bundle`;
    await Deno.mkdir(bundle);
    const config = pointConfig(o.config, o.bundleDir, guest.path);
    await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(config, null, 2));
    const hidCore = coreWorkaroundNeeded(version, await rmemVisibleIn(guest.path));
    o.log(
      hidCore
        ? `${version} on Linux ${Deno.osRelease()}: hiding /proc/sys/net/core for runsc ` +
          "(gVisor issue 10704)"
        : `${version}: no workaround needed`,
    );
    await o.beforeRun?.(guest, tmp);
    const runsc = new Runsc(`${tmp}/state`, ["--network=sandbox", ...o.runscFlags]);
    const id = o.id ?? `slirpd-${guest.name}`;
    o.log(`runsc ${runsc.flags.join(" ")} run (bundle and --root in ${tmp})`);
    const interrupt = () => {
      o.log("interrupted: removing the container, then cleaning up");
      void runsc.remove(id);
    };
    Deno.addSignalListener("SIGINT", interrupt);
    Deno.addSignalListener("SIGTERM", interrupt);
    let r: RunscResult;
    try {
      r = await runsc.runContainer(bundle, id, guest.path, {
        timeoutMs: o.timeoutMs,
        hideCore: hidCore,
        stdio: o.stdio,
      });
    } finally {
      Deno.removeSignalListener("SIGINT", interrupt);
      Deno.removeSignalListener("SIGTERM", interrupt);
      await runsc.remove(id);
    }
    await o.afterRun?.(guest);
    const st = await slirpd.stop("SIGTERM");
    return { ...r, hidCore, slirpdCode: st.code, slirpdStderr: slirpd.stderr };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
