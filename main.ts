// slirpd entry point: flags → Config → daemon. Usage errors are one line and exit 2 (as Go's
// flag package does for slirpnetstack); a failure to start is one line and exit 1.

import { helpText, parseConfig, UsageError } from "./daemon/config.ts";
import { runDaemon } from "./daemon/run.ts";
import { versionLines } from "./daemon/version.ts";
import { parseCommandLine, runCommand, splitCommand } from "./daemon/command.ts";
import { withRemedy } from "./daemon/remedy.ts";

async function main(): Promise<number> {
  // `slirpd [OPTIONS] -- CMD [ARGS...]`: slirpd makes CMD's namespace (daemon/command.ts).
  const commandLine = splitCommand(Deno.args);
  let parsed;
  try {
    parsed = commandLine ? parseCommandLine(commandLine) : parseConfig(Deno.args);
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
      ? await runCommand(parsed.config, commandLine.command)
      : await runDaemon(parsed.config);
  } catch (e) {
    console.error(`slirpd: ${withRemedy(e, parsed.config)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
