// slirpd entry point: flags → Config → daemon. Usage errors are one line and exit 2 (as Go's
// flag package does for slirpnetstack); a failure to start is one line and exit 1.

import { helpText, parseConfig, UsageError } from "./daemon/config.ts";
import { runDaemon } from "./daemon/run.ts";
import { versionLines } from "./daemon/version.ts";

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseConfig(Deno.args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`slirpd: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    console.log(helpText());
    return 0;
  }
  if (parsed.version !== undefined) {
    console.log(versionLines(parsed.version).join("\n"));
    return 0;
  }
  try {
    return await runDaemon(parsed.config);
  } catch (e) {
    console.error(`slirpd: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
