// Test harness: real network namespaces, a real slirpd process, real tools inside.
//
// Everything a test makes is disposable with `await using`, so it is torn down even when the
// test fails:
//
//   await using guest = await makeNetns("ping");
//   await using slirpd = await startSlirpd({ guest, args: ["--configure"] });
//   const r = await guest.exec(["ping", "-c1", "10.0.2.2"]);
//
// Routing tests run slirpd inside an isolated "host" namespace (makeHostNetns) that has its own
// test addresses and a "remote" peer namespace behind a veth pair; nothing reaches the real
// host network. All names start with NS_PREFIX.
//
// Leftovers are checked where they are made, never by scanning the machine: a Netns checks
// on dispose that its namespace is gone, and every process a Background starts carries an
// environment tag of its own (SLIRPD_TEST_TAG), inherited by whatever it spawns, so on dispose
// the Background finds exactly its own descendants still running (a leaked helper, a daemon
// that forked), kills them and fails the test that leaked them.

export const NS_PREFIX = "sdt-";
const REPO = new URL("../..", import.meta.url).pathname;
export const MAIN_TS = `${REPO}main.ts`;

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by timeoutMs; killed after that). */
export async function run(
  cmd: string[],
  opts: { timeoutMs?: number; stdin?: string; env?: Record<string, string> } = {},
): Promise<CmdResult> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a command and throws with its output when it fails. */
export async function must(
  cmd: string[],
  opts: { timeoutMs?: number } = {},
): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd.join(" ")} → exit ${r.code}\n${r.stdout}${r.stderr}`,
    );
  }
  return r.stdout;
}

/**
 * The Debian package that brings each tool a test may need (for the summary line
 * scripts/test.ts prints: `apt-get install -y PACKAGES`). A tool not listed is its own package.
 */
export const TOOL_PACKAGES: Record<string, string> = {
  ping: "iputils-ping",
  dumpcap: "tshark",
  tshark: "tshark",
  dig: "dnsutils",
  pasta: "passt",
  unshare: "util-linux",
  nsenter: "util-linux",
  setpriv: "util-linux",
  ip: "iproute2",
  ss: "iproute2",
  tc: "iproute2",
  sysctl: "procps",
  ps: "procps",
  ldd: "libc-bin",
  man: "man-db",
};

/**
 * Where skips are written, one a line, when the suite runs under scripts/test.ts: "tool NAME"
 * for a missing tool, "other REASON" for anything else (DENORT_BIN, not root, ...).
 */
const SKIP_LOG = Deno.env.get("SLIRPD_SKIP_LOG");

function logSkip(line: string): void {
  if (SKIP_LOG) Deno.writeTextFileSync(SKIP_LOG, line + "\n", { append: true });
}

/** null when every tool is on PATH, else the skip reason ("skipped: needs X, Y"). */
export function needs(...tools: string[]): string | null {
  const path = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  const missing = tools.filter((t) =>
    !path.some((d) => {
      try {
        return Deno.statSync(`${d}/${t}`).isFile;
      } catch {
        return false;
      }
    })
  );
  if (missing.length === 0) return null;
  for (const t of missing) logSkip(`tool ${t}`);
  const reason = `skipped: needs ${missing.join(", ")}`;
  toolReasons.add(reason);
  return reason;
}

/** Debian's python3, the one python3-scapy is for (`python3` on PATH may be another build). */
export const SCAPY_PY = "/usr/bin/python3";

/** needs(...tools), and scapy importable by SCAPY_PY: null when all are there, else why not. */
export function needsScapy(...tools: string[]): string | null {
  const n = needs(...tools);
  if (n !== null) return n;
  try {
    const r = new Deno.Command(SCAPY_PY, {
      args: ["-c", "import scapy.all"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return r.success ? null : "skipped: needs python3-scapy";
  } catch {
    return "skipped: needs /usr/bin/python3";
  }
}

/** Reasons needs() returned: skip() logs every other reason ("needs root", DENORT_BIN). */
const toolReasons = new Set<string>();

/**
 * For `Deno.test({ ignore: skip(reason) })`: prints "skipped: needs X — <test>" once so a skip
 * is never silent, and returns whether to skip.
 */
export function skip(reason: string | null, what: string): boolean {
  if (reason !== null) console.log(`${reason} — ${what}`);
  // A missing tool was logged by needs(); anything else is logged here.
  if (reason !== null && !toolReasons.has(reason)) {
    logSkip(`other ${reason.replace(/^skipped: /, "")} (${what})`);
  }
  return reason !== null;
}

function randomSuffix(): string {
  return Math.random().toString(36).slice(2, 8);
}

/** A network namespace made with `ip netns add`, removed on dispose. */
export class Netns implements AsyncDisposable {
  readonly path: string;
  constructor(readonly name: string) {
    this.path = `/run/netns/${name}`;
  }

  /** argv prefix that runs a command inside this namespace (network only). */
  prefix(): string[] {
    return ["nsenter", `--net=${this.path}`, "--"];
  }

  exec(
    cmd: string[],
    opts: { timeoutMs?: number; stdin?: string } = {},
  ): Promise<CmdResult> {
    return run([...this.prefix(), ...cmd], opts);
  }

  must(cmd: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    return must([...this.prefix(), ...cmd], opts);
  }

  /** Starts a long-running command inside; the caller kills it (or uses `using`). */
  spawn(cmd: string[]): Background {
    return new Background([...this.prefix(), ...cmd]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Kill anything still running inside, then remove the namespace.
    const pids = await run(["ip", "netns", "pids", this.name]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await run(["ip", "netns", "del", this.name]);
    try {
      Deno.statSync(this.path);
      throw new Error(`leftover: network namespace ${this.name} still exists after dispose`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** The environment variable that marks every process a Background started (and its children). */
export const TAG_VAR = "SLIRPD_TEST_TAG";
let tagCount = 0;

/** Processes whose environment carries TAG_VAR=tag: pid and command line. */
export function taggedProcesses(tag: string): { pid: number; args: string }[] {
  const want = new TextEncoder().encode(`${TAG_VAR}=${tag}\0`);
  const out: { pid: number; args: string }[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const env = Deno.readFileSync(`/proc/${pid}/environ`);
      if (!containsBytes(env, want)) continue;
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue; // exited, unreaped
      const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
      out.push({ pid, args });
    } catch { /* gone meanwhile, or not ours to read */ }
  }
  return out;
}

function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  // environ is NUL-separated: a match must start at the beginning or after a NUL.
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    if (i > 0 && hay[i - 1] !== 0) continue;
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** A background process whose output is collected; killed on dispose. */
export class Background implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;
  /** This process tree's TAG_VAR value (see the header). */
  readonly tag = `${Deno.pid}-${++tagCount}`;
  #waiters: Array<() => void> = [];

  constructor(readonly cmd: string[], env?: Record<string, string>) {
    this.child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { ...env, [TAG_VAR]: this.tag },
    }).spawn();
    const pump = async (
      s: ReadableStream<Uint8Array>,
      which: "stdout" | "stderr",
    ) => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        this[which] += dec.decode(chunk, { stream: true });
        for (const w of this.#waiters.splice(0)) w();
      }
    };
    const pumps = Promise.all([
      pump(this.child.stdout, "stdout"),
      pump(this.child.stderr, "stderr"),
    ]);
    this.done = pumps.then(() => this.child.status);
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Resolves when `pred` holds for the output so far; rejects after timeoutMs or on exit. */
  async waitFor(
    pred: (b: Background) => boolean,
    timeoutMs = 20_000,
    what = "output",
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.done.then(() => {
      exited = true;
      for (const w of this.#waiters.splice(0)) w();
    });
    while (!pred(this)) {
      if (exited) {
        throw new Error(
          `process exited before ${what}:\n${this.stdout}${this.stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out waiting for ${what}:\n${this.stdout}${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends a signal and waits (bounded) for the exit; SIGKILL after graceMs. */
  async stop(
    signal: Deno.Signal = "SIGTERM",
    graceMs = 5_000,
  ): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* already exited */ }
    const t = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    try {
      const status = await this.child.status;
      // The output pumps end when every writer has closed the pipes: wait a little for them,
      // but not for a descendant that still holds them (dispose reports that one).
      await Promise.race([this.done, new Promise((r) => setTimeout(r, 1_000))]);
      return status;
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * Stops the process (SIGTERM, then SIGKILL); then its descendants get a short grace to exit on their own (a helper
   * sees its parent's pipe close); any still running are killed and reported as leftovers.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    // SIGTERM first: a tool that has children of its own (tshark and its dumpcap) stops them;
    // SIGKILL after the grace.
    await this.stop("SIGTERM", 2_000);
    let strays = taggedProcesses(this.tag);
    for (let i = 0; i < 20 && strays.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      strays = taggedProcesses(this.tag);
    }
    if (strays.length === 0) return;
    for (const s of strays) {
      try {
        Deno.kill(s.pid, "SIGKILL");
      } catch { /* gone */ }
    }
    for (let i = 0; i < 20 && taggedProcesses(this.tag).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50)); // SIGKILL is not instant
    }
    throw new Error(
      `leftover processes of "${this.cmd.join(" ")}": ${
        strays.map((s) => `${s.pid} ${s.args}`).join("; ")
      }`,
    );
  }
}

/** Makes an empty network namespace with lo up. */
export async function makeNetns(label: string): Promise<Netns> {
  const name = `${NS_PREFIX}${label.slice(0, 8)}-${randomSuffix()}`;
  await must(["ip", "netns", "add", name]);
  const ns = new Netns(name);
  try {
    await must(["ip", "-n", name, "link", "set", "lo", "up"]);
  } catch (e) {
    await ns[Symbol.asyncDispose]();
    throw e;
  }
  return ns;
}

/**
 * An isolated "host" namespace for routing tests. It has
 *   - `hostNs`: where slirpd runs: lo, and veth 192.0.2.1/24 + 2001:db8::1/64
 *   - `remote`: the peer behind the veth: 192.0.2.2/24 + 2001:db8::2/64 (test servers live here)
 * No route leads anywhere else, so nothing a test does can leave these namespaces.
 */
export class HostNet implements AsyncDisposable {
  static readonly HOST4 = "192.0.2.1";
  static readonly REMOTE4 = "192.0.2.2";
  static readonly HOST6 = "2001:db8::1";
  static readonly REMOTE6 = "2001:db8::2";
  constructor(readonly host: Netns, readonly remote: Netns) {}
  async [Symbol.asyncDispose](): Promise<void> {
    await this.remote[Symbol.asyncDispose]();
    await this.host[Symbol.asyncDispose]();
  }
}

export async function makeHostNet(): Promise<HostNet> {
  const host = await makeNetns("host");
  let remote: Netns | undefined;
  try {
    remote = await makeNetns("remote");
    const a = `sdh${randomSuffix()}`;
    const b = `sdr${randomSuffix()}`;
    await must([
      "ip",
      "-n",
      host.name,
      "link",
      "add",
      a,
      "type",
      "veth",
      "peer",
      "name",
      b,
      "netns",
      remote.name,
    ]);
    const cfg: [Netns, string, string, string][] = [
      [host, a, HostNet.HOST4, HostNet.HOST6],
      [remote, b, HostNet.REMOTE4, HostNet.REMOTE6],
    ];
    for (const [ns, dev, v4, v6] of cfg) {
      await must(["ip", "-n", ns.name, "addr", "add", `${v4}/24`, "dev", dev]);
      await must([
        "ip",
        "-n",
        ns.name,
        "addr",
        "add",
        `${v6}/64`,
        "dev",
        dev,
        "nodad",
      ]);
      await must(["ip", "-n", ns.name, "link", "set", dev, "up"]);
    }
    return new HostNet(host, remote);
  } catch (e) {
    await remote?.[Symbol.asyncDispose]();
    await host[Symbol.asyncDispose]();
    throw e;
  }
}

export const READY_LINE = "Slirpnetstack started";

/**
 * The V8 flags slirpd ships with (deno.json's slirpd and compile tasks): a 1 MiB young
 * generation. slirpd's hot paths allocate nothing, so the default 16 MiB semi-spaces mostly
 * hold garbage of start-up and connection setup; measured (issue 14): peak RSS 82 vs 106 MiB
 * over a bench cell, ~3.7 vs ~5.9 KB per open connection, throughput the same within noise.
 */
export const SLIRPD_V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--no-memory-reducer";

/** The command that runs slirpd: SLIRPD_BIN (a compiled binary) or `deno run main.ts`. */
export function slirpdCommand(): string[] {
  const bin = Deno.env.get("SLIRPD_BIN");
  return bin ? [bin] : [Deno.execPath(), "run", "--allow-all", SLIRPD_V8_FLAGS, MAIN_TS];
}

export interface SlirpdOptions {
  guest: Netns;
  /** Run slirpd inside this namespace (the isolated host); default: the test's own. */
  hostNs?: Netns;
  args?: string[];
  /** Don't wait for readiness (for tests of startup failures). */
  noWait?: boolean;
  env?: Record<string, string>;
  /** A command that execs slirpd (e.g. `prlimit --nofile=... --`), inside hostNs. */
  wrap?: string[];
}

/** A running slirpd; `stop()` sends SIGTERM and returns the exit status. */
export class Slirpd extends Background {
  async ready(timeoutMs = 30_000): Promise<void> {
    await this.waitFor(
      (b) => b.stderr.includes(READY_LINE),
      timeoutMs,
      "slirpd readiness",
    );
  }
}

export async function startSlirpd(opts: SlirpdOptions): Promise<Slirpd> {
  const args = opts.args ?? ["--configure"];
  const hasTarget = args.includes("--netns") ||
    args.some((a) => a.startsWith("--netns="));
  const cmd = [
    ...opts.wrap ?? [],
    ...slirpdCommand(),
    ...(hasTarget ? [] : ["--netns", opts.guest.path]),
    ...args,
  ];
  const full = opts.hostNs ? [...opts.hostNs.prefix(), ...cmd] : cmd;
  const s = new Slirpd(full, opts.env);
  if (!opts.noWait) {
    try {
      await s.ready();
    } catch (e) {
      await s.stop("SIGKILL");
      throw e;
    }
  }
  return s;
}

/** Polls `fn` until it returns true (bounded). */
export async function eventually(
  fn: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    if (await fn()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
