// slirpd entry point: flags → Config → daemon. Usage errors are one line and exit 2 (as Go's
// flag package does for slirpnetstack); a failure to start is one line and exit 1.

import { helpText, parseConfig, UsageError } from "./daemon/config.ts";
import { versionLines } from "./daemon/version.ts";
import { attachGuest, lookupsFirst } from "./daemon/attach.ts";

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
  // The tap first: the daemon's modules (the stack, the firewall) load while it is made.
  const cfg = parsed.config;
  const daemon = import("./daemon/run.ts");
  daemon.catch(() => {}); // awaited below; a load error is reported there
  try {
    let prepared;
    if (lookupsFirst(cfg)) {
      const p = await (await daemon).prepare(cfg);
      if (typeof p === "number") return p;
      prepared = p;
    }
    const tap = await attachGuest(cfg);
    let runDaemon;
    try {
      ({ runDaemon } = await daemon);
    } catch (e) {
      tap.close();
      throw e;
    }
    return await runDaemon(cfg, tap, prepared);
  } catch (e) {
    console.error(`slirpd: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
