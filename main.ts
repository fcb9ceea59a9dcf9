// slirpd entry point: flags → Config → daemon. Usage errors are one line and exit 2 (as Go's
// flag package does for slirpnetstack); a failure to start is one line and exit 1.
//
// Start-up speed: scripts touch the tap a few milliseconds after starting slirp4netns, so this
// module's static imports are only the flags and the ffi that makes the tap
// (tests/unit/startup_graph.test.ts). The daemon (stack, firewall) loads, as a dynamic import,
// while the tap is made; `-- CMD` loads its module only when the command line has `--`.

import { type Config, parseConfig, type ParseResult, UsageError } from "./daemon/config.ts";
import { helpText } from "./daemon/options.ts";
import { versionLines } from "./daemon/version.ts";
import { attachGuest, lookupsFirst } from "./daemon/attach.ts";
import { withRemedy } from "./daemon/remedy.ts";

async function main(): Promise<number> {
  // `slirpd [OPTIONS] -- CMD [ARGS...]`: slirpd makes CMD's namespace (daemon/command.ts).
  const cmd = Deno.args.includes("--") ? await import("./daemon/command.ts") : null;
  const commandLine = cmd?.splitCommand(Deno.args) ?? null;
  let parsed: ParseResult;
  try {
    parsed = commandLine ? cmd!.parseCommandLine(commandLine) : parseConfig(Deno.args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`slirpd: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    console.log(parsed.version ? versionLines(parsed.version).join("\n") : helpText());
    return 0;
  }
  try {
    return commandLine
      ? await cmd!.runCommand(parsed.config, commandLine.command)
      : await daemon(parsed.config);
  } catch (e) {
    console.error(`slirpd: ${withRemedy(e, parsed.config)}`);
    return 1;
  }
}

/** The daemon, its tap first (see the header). */
async function daemon(cfg: Config): Promise<number> {
  const run = import("./daemon/run.ts");
  run.catch(() => {}); // awaited below; a load error is reported there
  // -m: slirpnetstack prints the metrics line before the netns lines; -fd has no tap to make.
  if (cfg.metrics !== null || cfg.linkFd !== null) return await (await run).runDaemon(cfg);
  let prepared;
  if (lookupsFirst(cfg)) {
    const p = await (await run).prepare(cfg);
    if (typeof p === "number") return p;
    prepared = p;
  }
  const tap = await attachGuest(cfg);
  let mod;
  try {
    mod = await run;
  } catch (e) {
    tap.close();
    throw e;
  }
  return await mod.runDaemon(cfg, undefined, { tap, prepared });
}

if (import.meta.main) Deno.exit(await main());
