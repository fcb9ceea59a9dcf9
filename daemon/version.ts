// Version data for `-version` (slirpnetstack's two lines) and `--version` (slirp4netns'
// form). A release build stamps SLIRPD_VERSION, SLIRPD_COMMIT and SLIRPD_BUILD_TIME into the
// binary with an env file, which `deno compile --env-file=FILE` embeds:
//   printf 'SLIRPD_COMMIT=%s\nSLIRPD_BUILD_TIME=%s\n' "$(git rev-parse HEAD)" \
//     "$(date -u +%Y-%m-%d-%H:%MUTC)" > build.env
//   deno compile --allow-all --env-file=build.env --output slirpd main.ts
// A dev checkout asks git for the commit, only when the lines are printed (a subprocess at
// every start would be waste).

/** The release this source is; SLIRPD_VERSION overrides it. */
const BASE_VERSION = "0.1.0";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: the fallbacks
  }
}

export const VERSION: string = env("SLIRPD_VERSION") ?? BASE_VERSION;
/** The git commit, or "unknown" (see gitCommit for a dev checkout). */
export const COMMIT: string = env("SLIRPD_COMMIT") ?? "unknown";
/** UTC, slirpnetstack's format: 2026-12-04-19:10UTC; "unknown" when not stamped. */
export const BUILD_TIME: string = env("SLIRPD_BUILD_TIME") ?? "unknown";

/** COMMIT, or `git rev-parse HEAD` of the checkout this file is in (dev runs). */
function gitCommit(): string {
  if (COMMIT !== "unknown") return COMMIT;
  const url = new URL(".", import.meta.url);
  if (url.protocol !== "file:") return COMMIT;
  try {
    const out = new Deno.Command("git", {
      args: ["-C", url.pathname, "rev-parse", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const c = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^[0-9a-f]{40}$/.test(c) ? c : COMMIT;
  } catch {
    return COMMIT;
  }
}

/**
 * The lines `-version` prints (stdout, exit 0):
 *   slirpnetstack: "slirpnetstack version V (slirpd)" and "build time T" (scripts written for
 *     slirpnetstack grep for "slirpnetstack version" and "build time");
 *   slirp4netns: "slirpd version V", "commit: C", "SLIRP_CONFIG_VERSION_MAX: 4".
 */
export function versionLines(form: "slirpnetstack" | "slirp4netns"): string[] {
  if (form === "slirpnetstack") {
    return [`slirpnetstack version ${VERSION} (slirpd)`, `build time ${BUILD_TIME}`];
  }
  return [`slirpd version ${VERSION}`, `commit: ${gitCommit()}`, "SLIRP_CONFIG_VERSION_MAX: 4"];
}
