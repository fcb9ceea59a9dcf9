// `deno task bench-startup`: how soon after exec the tap exists and the ready fd says "1", for
// slirp4netns and slirpd, rootful and rootless. Scripts start slirp4netns in the background
// and touch the tap a few milliseconds later, so both numbers matter.
//
//   deno run --allow-all scripts/bench/startup.ts [--runs N] [--only slirpd,slirp4netns]
//
// Each run: a fresh guest netns (`unshare -n sleep`), the tool started with podman's argv
// (`--mtu=65520 --enable-ipv6 -c -e 3 -r 4 --netns-type=path PATH tap0`, fds 3/4 pipes as podman
// passes them), a thread of the timer set into the guest netns polls if_nametoindex("tap0");
// the main thread waits for the ready byte; then the exit fd is closed and the exit timed.
// "rootless" runs the same inside `unshare -Ur`, where the guest netns belongs to that user
// namespace and the tool's own netns to the parent one: rootless podman's situation, in which
// slirpd has to use its helper process. Times are from just before fork/exec (Python's
// monotonic clock), min / median / max over the runs. slirpd runs as `deno run -A main.ts`
// (Deno itself needs ~13 ms to run the first line of an empty script here, ~20 ms to exit).
// Warm start: each mode begins with one run that is not counted, so Deno's caches in DENO_DIR
// (transpiled modules, V8 code cache) hold this checkout's modules, as for every start but the
// first one (with an empty DENO_DIR every module is transpiled: tap ~200 ms and ready ~310 ms
// here; after an edit, the edited modules). Needs python3 and unshare; a tool that is not
// installed is skipped.

import { parseArgs } from "node:util";

const TIMER_PY = String.raw`
import ctypes, json, os, select, subprocess, sys, threading, time, socket
libc = ctypes.CDLL(None, use_errno=True)
argv = json.loads(sys.argv[1])
runs = int(sys.argv[2])
# Run 0 is not counted: it warms Deno's caches (see the header).
for i in range(runs + 1):
    holder = subprocess.Popen(["unshare", "-n", "sleep", "30"])
    path = "/proc/%d/ns/net" % holder.pid
    for _ in range(500):
        if os.readlink(path) != os.readlink("/proc/self/ns/net"):
            break
        time.sleep(0.002)
    res = {}
    armed = threading.Event()
    stop = threading.Event()
    def poll():
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:
            res["err"] = "setns %d" % ctypes.get_errno()
            armed.set()
            return
        armed.set()
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                socket.if_nametoindex("tap0")
                res["tap"] = time.monotonic_ns()
                return
            except OSError:
                pass
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    armed.wait(5)
    exit_r, exit_w = os.pipe()
    ready_r, ready_w = os.pipe()
    def pre():
        os.dup2(exit_r, 3)
        os.dup2(ready_w, 4)
    cmd = argv + ["--mtu=65520", "--enable-ipv6", "-c", "-e", "3", "-r", "4",
                  "--netns-type=path", path, "tap0"]
    t0 = time.monotonic_ns()
    p = subprocess.Popen(cmd, preexec_fn=pre, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(exit_r)
    os.close(ready_w)
    r, _, _ = select.select([ready_r], [], [], 10)
    t_ready = time.monotonic_ns() if r and os.read(ready_r, 8) == b"1" else None
    th.join(10)
    stop.set()
    t_close = time.monotonic_ns()
    os.close(exit_w)
    try:
        p.wait(10)
        t_exit = time.monotonic_ns()
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        t_exit = None
    err = p.stderr.read().decode(errors="replace").strip().splitlines()
    os.close(ready_r)
    holder.kill()
    holder.wait()
    ms = lambda t, base: None if t is None else round((t - base) / 1e6, 2)
    if i == 0:
        continue
    print(json.dumps({"tap": ms(res.get("tap"), t0), "ready": ms(t_ready, t0),
                      "exit": ms(t_exit, t_close), "rc": p.returncode,
                      "err": res.get("err") or (err[-1] if p.returncode else None)}), flush=True)
`;

const REPO = new URL("../..", import.meta.url).pathname;
const TOOLS: Record<string, () => string[] | null> = {
  slirp4netns: () => which("slirp4netns") ? ["slirp4netns"] : null,
  slirpd: () => [Deno.execPath(), "run", "--allow-all", `${REPO}main.ts`],
};

function which(cmd: string): boolean {
  for (const d of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin", "/usr/sbin"])) {
    try {
      if (Deno.statSync(`${d}/${cmd}`).isFile) return true;
    } catch { /* not there */ }
  }
  return false;
}

interface Row {
  tap: number | null;
  ready: number | null;
  exit: number | null;
  rc: number;
  err: string | null;
}

function stats(v: number[]): string {
  if (v.length === 0) return "-";
  const s = [...v].sort((a, b) => a - b);
  const med = s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return `${s[0].toFixed(1)} / ${med.toFixed(1)} / ${s[s.length - 1].toFixed(1)}`;
}

async function measure(argv: string[], rootless: boolean, runs: number): Promise<Row[]> {
  const py = await Deno.makeTempFile({ prefix: "slirpd-startup-", suffix: ".py" });
  try {
    await Deno.writeTextFile(py, TIMER_PY);
    const cmd = [...(rootless ? ["unshare", "-Ur"] : []), "python3", py, JSON.stringify(argv)];
    const out = await new Deno.Command(cmd[0], {
      args: [...cmd.slice(1), String(runs)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    return new TextDecoder().decode(out.stdout).trim().split("\n").filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Row);
  } finally {
    await Deno.remove(py);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { runs: { type: "string", default: "10" }, only: { type: "string" } },
  });
  const runs = Math.max(1, Math.min(200, Number(values.runs) || 10));
  const only = values.only ? values.only.split(",") : Object.keys(TOOLS);
  const lines = [
    "tool         mode       exec→tap ms (min/med/max)  exec→ready ms (min/med/max)  " +
    "exit-fd→exit ms (min/med/max)  failures",
  ];
  for (const name of only) {
    const argv = TOOLS[name]?.();
    if (!argv) {
      lines.push(`${name.padEnd(12)} not installed`);
      continue;
    }
    for (const rootless of [false, true]) {
      const rows = await measure(argv, rootless, runs);
      const ok = rows.filter((r) => r.rc === 0 && r.ready !== null);
      const pick = (k: "tap" | "ready" | "exit") =>
        stats(ok.map((r) => r[k]).filter((x): x is number => x !== null));
      const bad = rows.filter((r) => !ok.includes(r));
      lines.push(
        `${name.padEnd(12)} ${(rootless ? "rootless" : "rootful").padEnd(10)} ${
          pick("tap").padEnd(26)
        } ${pick("ready").padEnd(28)} ${pick("exit").padEnd(30)} ${bad.length}/${rows.length}${
          bad[0]?.err ? ` (${bad[0].err})` : ""
        }`,
      );
      console.error(lines[lines.length - 1]);
    }
  }
  console.log(lines.join("\n"));
}
