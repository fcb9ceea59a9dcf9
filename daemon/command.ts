// `slirpd [OPTIONS] -- CMD [ARGS...]` (pasta's most used form): slirpd makes a network
// namespace (and, when not root, a user namespace owning it), serves and configures it as
// `--configure` does, runs CMD inside with slirpd's stdin/stdout/stderr, and exits with CMD's
// status when CMD exits (128+N when a signal N ended it, as shells report it).
//
// Deno cannot fork, and a multithreaded process cannot unshare a user namespace, so CMD is
// started by `unshare [--user --map-root-user] --net --mount -- sh -c GATE slirpd FIFO RESOLV
// CMD...`: the little sh script opens a FIFO slirpd made (and holds open for writing, so the
// open never blocks), removes it (telling slirpd "I am in my namespaces"), bind-mounts RESOLV
// (nameserver 10.0.2.3 and fd00::3, slirpd's DNS forwarder; none with --disable-dns) over
// /etc/resolv.conf in its private mount namespace, since the host's file often names a
// loopback resolver (127.0.0.53) that CMD's namespace cannot reach; waits for "go", then execs
// CMD. slirpd attaches to /proc/PID/ns/net (rootless: through ffi/userns.ts's helper), writes
// "go" once the guest is configured and forwards are listening, and stops when CMD exits. If
// slirpd fails or dies first, the FIFO reaches EOF and the script exits 125 without running
// CMD. CMD stays slirpd's child, in slirpd's process group: a terminal's Ctrl-C reaches both,
// so slirpd passes SIGINT on only when it did not come from its terminal (SIGTERM and SIGHUP
// always).

import { type Config, parseConfig, type ParseResult, UsageError } from "./config.ts";
import { FLAGS } from "./options.ts";
import { type Embedding, runDaemon } from "./run.ts";
import { inTerminalForeground, makeFifo, writeAndClose } from "../ffi/fd.ts";
import { closeFd, O_CLOEXEC, O_NONBLOCK, O_RDWR, openPath } from "../ffi/netns.ts";
import { findOnPath } from "../ffi/userns.ts";
import { netPlanFrom } from "../stack/base/netplan.ts";
import { formatIp } from "../stack/wire/bytes.ts";

/** The options before `--` and the command after it. */
export interface CommandLine {
  options: string[];
  command: string[];
}

const GATE = `exec 3<"$1" || exit 125
rm -f "$1"
if [ -n "$2" ] && ! mount --bind "$2" /etc/resolv.conf 2>/dev/null; then
  echo "slirpd: could not bind-mount $2 over /etc/resolv.conf: CMD uses the host's" >&2
fi
read -r go <&3 || exit 125
exec 3<&-
[ "$go" = go ] || exit 125
shift 2
exec "$@"`;

/** How long unshare may take to make the namespaces. */
const NAMESPACE_TIMEOUT_MS = 10_000;
/** How long CMD may take to exit after slirpd passed it SIGTERM (then SIGKILL). */
const CMD_GRACE_MS = 5_000;

/** Splits argv at the `--` that starts CMD (not one that is a flag's value); null without. */
export function splitCommand(argv: string[]): CommandLine | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") return { options: argv.slice(0, i), command: argv.slice(i + 1) };
    if (takesValue(a)) i++;
  }
  return null;
}

/** `-flag`/`--flag`/`-f` of a string flag given without `=VALUE`: the next word is its value. */
function takesValue(arg: string): boolean {
  const long = arg.match(/^--?([a-z0-9][a-z0-9-]+)$/i);
  if (long) return FLAGS[long[1]]?.type === "string";
  const short = arg.match(/^-([a-z0-9])$/i);
  if (!short) return false;
  return Object.values(FLAGS).some((f) => f.short === short[1] && f.type === "string");
}

/** The options of the command form: every flag applies, --configure is implied. */
export function parseCommandLine(cl: CommandLine): ParseResult {
  for (let i = 0; i < cl.options.length; i++) {
    const a = cl.options[i];
    if (/^--?netns(=|$)/.test(a)) {
      throw new UsageError(`--netns: not with -- CMD (slirpd makes CMD's namespace itself)`);
    }
    if (!a.startsWith("-") || a === "-") {
      throw new UsageError(
        `unexpected argument "${a}": the PID|PATH form takes no -- CMD ` +
          "(slirpd makes CMD's namespace itself)",
      );
    }
    if (takesValue(a)) i++;
  }
  // The namespace is made later (runCommand); any path does for parsing.
  const parsed = parseConfig([...cl.options, "--configure", "--netns", "/proc/self/ns/net"]);
  if (!parsed.help && cl.command.length === 0) {
    throw new UsageError("-- needs a command: slirpd [OPTIONS] -- CMD [ARGS...]");
  }
  return parsed;
}

/** Runs the daemon for a fresh namespace with CMD in it; returns CMD's exit code. */
export async function runCommand(cfg: Config, command: string[]): Promise<number> {
  const unshare = findOnPath("unshare");
  if (!unshare) {
    throw new Error("-- CMD needs unshare (util-linux): apt-get install util-linux");
  }
  const rootless = Deno.uid() !== 0;
  // A private directory (0700, random name) in $TMPDIR: no one else can plant a file there.
  // CMD's side runs as our uid (root in its user namespace maps to it), so it can enter.
  const dir = await Deno.makeTempDir({ prefix: "slirpd-cmd-" });
  const fifo = `${dir}/go`;
  const resolv = cfg.dns ? `${dir}/resolv.conf` : "";
  let gate = -1;
  let child: Deno.ChildProcess | undefined;
  // Set from callbacks: CMD's status once it exited, the loop's stop once it serves.
  const st: { status: Deno.CommandStatus | null; stop: (() => void) | null } = {
    status: null,
    stop: null,
  };
  try {
    if (resolv !== "") {
      const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
      const text = `# slirpd -- CMD: slirpd's DNS forwarder\n` +
        `nameserver ${formatIp(plan.dns4)}\nnameserver ${formatIp(plan.dns6)}\n`;
      await Deno.writeTextFile(resolv, text, { mode: 0o644 });
    }
    makeFifo(fifo);
    gate = openPath(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    child = new Deno.Command(unshare, {
      args: [
        ...(rootless ? ["--user", "--map-root-user"] : []),
        "--net",
        ...(resolv !== "" ? ["--mount"] : []),
        "--",
        "/bin/sh",
        "-c",
        GATE,
        "slirpd",
        fifo,
        resolv,
        ...command,
      ],
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const c = child;
    c.status.then((s) => {
      st.status = s;
      st.stop?.();
    });
    await inNamespace(fifo, () => st.status !== null);
    if (st.status !== null) {
      throw new Error(
        `-- CMD: unshare could not make the ${
          rootless ? "user and network namespaces" : "network namespace"
        } (exit ${st.status.code}); ${
          rootless
            ? "unprivileged user namespaces must be allowed (sysctl " +
              "kernel.unprivileged_userns_clone=1, or on Ubuntu " +
              "kernel.apparmor_restrict_unprivileged_userns=0), or run slirpd as root"
            : "see unshare's message above"
        }`,
      );
    }
    const embed: Embedding = {
      ready(stop) {
        writeAndClose(gate, "go\n", "-- CMD gate");
        gate = -1;
        st.stop = stop;
        if (st.status !== null) stop();
      },
      signal(sig) {
        // A terminal's Ctrl-C already reached CMD (it is in our process group): a second
        // SIGINT would make many programs skip their graceful stop.
        if (sig === "SIGINT" && inTerminalForeground(0)) return;
        try {
          c.kill(sig);
        } catch { /* exited meanwhile */ }
      },
    };
    const code = await runDaemon({ ...cfg, netns: `/proc/${c.pid}/ns/net` }, embed);
    if (st.stop === null) return code; // never served: CMD did not run (the gate saw EOF)
    // Deno reports a CMD ended by signal N as 128+N, as shells do.
    return (await ended(c)).code;
  } finally {
    closeFd(gate);
    if (child) await ended(child);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Until the gate script removed the FIFO (it is in its namespaces) or exited (bounded). */
async function inNamespace(fifo: string, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + NAMESPACE_TIMEOUT_MS;
  while (!exited()) {
    try {
      Deno.lstatSync(fifo);
    } catch {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`-- CMD: unshare did not start in ${NAMESPACE_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** CMD's status; if it is still running (the loop stopped for another reason), TERM then KILL. */
async function ended(c: Deno.ChildProcess): Promise<Deno.CommandStatus> {
  const t0 = setTimeout(() => kill(c, "SIGTERM"), 0);
  const t1 = setTimeout(() => kill(c, "SIGKILL"), CMD_GRACE_MS);
  try {
    return await c.status;
  } finally {
    clearTimeout(t0);
    clearTimeout(t1);
  }
}

function kill(c: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    c.kill(sig);
  } catch { /* exited */ }
}
