// `deno task install [--root DIR]`: installs a `slirpd` command from this checkout, offline
// (everything slirpd imports is in the checkout or built into Deno). The command is deno's
// install shim, `exec deno run PERMISSIONS main.ts "$@"`: exec, so signals reach slirpd itself
// and its exit code is the command's (SIGTERM and SIGINT: 0; `-- CMD`: CMD's).

import { PERMISSION_FLAGS } from "./permissions.ts";

const REPO = new URL("..", import.meta.url).pathname;
const r = await new Deno.Command(Deno.execPath(), {
  args: [
    "install",
    "--global",
    "--force",
    "--name",
    "slirpd",
    "--config",
    `${REPO}deno.json`,
    ...PERMISSION_FLAGS,
    ...Deno.args,
    `${REPO}main.ts`,
  ],
  stdin: "null",
}).output();
Deno.exit(r.code);
