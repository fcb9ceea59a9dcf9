// The three user-mode networking tools the bench compares, and how each is started so that
// the comparison is fair.
//
// Every tool runs inside the bench's isolated host namespace (tests/support/harness.ts makeHostNet:
// 192.0.2.1 on a veth to a "remote" peer namespace, no other routes) and is attached to a
// fresh guest namespace made for that one tool × MTU cell. The guest always talks to
// 192.0.2.1, the host namespace's own address, where the iperf3 and echo servers listen. For
// all three tools that means: guest SYN → the tool's own TCP endpoint → a host connect() to
// 192.0.2.1 inside the host namespace. No address mapping is involved, so no tool gets a
// shortcut the others lack:
//
// - slirpd: `--netns G --configure --mtu M --enable-host --quiet` (--enable-host lets the
//   guest reach the host's own addresses). Guest 10.0.2.100/24 via 10.0.2.2.
// - slirp4netns: `--configure --mtu=M --netns-type=path G tap0`. Same guest addressing. Its
//   10.0.2.2 → host-loopback mapping stays at its default but is not used: the guest
//   connects to 192.0.2.1 like the others.
// - pasta: `--config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 -I tap0 -i VETH --netns G`, with
//   all port forwarding off (`-t none -u none -T none -U none`), so there is no splice(2)
//   shortcut: pasta's splice path only serves loopback port forwards, and traffic to
//   192.0.2.1 goes through its tap path like everyone else's. `-i VETH` because the isolated
//   host namespace has no default route for pasta to pick an interface from; `-4` because the
//   host namespace has no IPv6 default route either (nothing in the bench uses IPv6).
//   `--runas 0`: as root pasta would switch to `nobody`, which cannot join a netns owned by
//   the initial user namespace ("Couldn't switch to pasta namespaces"). `-f` keeps its PID
//   (for VmHWM); without it pasta forks into a detached PID namespace.
//   This pasta build (Debian 0.0~git20230309) predates --map-host-loopback; its default
//   --map-gw would map 10.0.2.2 to host loopback, which we do not use either.

import {
  Background,
  type HostNet,
  MAIN_TS,
  needs,
  type Netns,
  READY_LINE,
  run,
  SLIRPD_V8_FLAGS,
} from "../../tests/support/harness.ts";

export type ToolName = "slirpd" | "slirp4netns" | "pasta";
export const TOOLS: ToolName[] = ["slirpd", "slirp4netns", "pasta"];

export const GUEST4 = "10.0.2.100";

/** The guest's tap: slirpd keeps its own default (tun0), the others are told tap0. */
export function guestIf(tool: ToolName): string {
  return tool === "slirpd" ? "tun0" : "tap0";
}

/** A running tool attached to a guest; `pid` is the process whose VmHWM is read. */
export interface RunningTool extends AsyncDisposable {
  readonly pid: number;
  /** Its output so far (for failure reasons). */
  output(): string;
  /** Whether the process is still running. */
  alive(): boolean;
}

/** null when the tool can run here, else why not ("not installed"). */
export function unavailable(tool: ToolName): string | null {
  if (tool === "slirpd") {
    try {
      Deno.statSync(MAIN_TS);
      return null;
    } catch {
      return "not installed (no main.ts)";
    }
  }
  return needs(tool) === null ? null : "not installed";
}

async function firstLine(cmd: string[]): Promise<string> {
  try {
    const r = await run(cmd, { timeoutMs: 10_000 });
    return (r.stdout || r.stderr).trim().split("\n")[0] ?? "";
  } catch (e) {
    return `unknown (${e instanceof Error ? e.message : e})`;
  }
}

/** A version string per tool (and deno, iperf3), for the JSON record. */
export async function versions(tools: ToolName[]): Promise<Record<string, string>> {
  const v: Record<string, string> = {
    deno: `${Deno.version.deno} (v8 ${Deno.version.v8})`,
    iperf3: await firstLine(["iperf3", "--version"]),
  };
  for (const t of tools) {
    if (unavailable(t)) continue;
    if (t === "slirpd") {
      const repo = new URL(".", `file://${MAIN_TS}`).pathname;
      const rev = await firstLine(["git", "-C", repo, "rev-parse", "--short", "HEAD"]);
      const dirty = (await run(["git", "-C", repo, "status", "--porcelain"])).stdout.trim();
      const bin = Deno.env.get("SLIRPD_BIN");
      v.slirpd = `git ${rev}${dirty ? "+dirty" : ""}${bin ? ` (SLIRPD_BIN=${bin})` : ""}`;
    } else if (t === "slirp4netns") {
      const r = await run(["slirp4netns", "--version"]);
      v.slirp4netns = r.stdout.trim().split("\n").filter((l) => /version|libslirp/.test(l))
        .join(", ");
    } else {
      // pasta --version says "unknown version" for Debian builds; the package knows better.
      const own = await firstLine(["pasta", "--version"]);
      const pkg = await firstLine(["dpkg-query", "-W", "-f", "${Version}", "passt"]);
      v.pasta = `${own}${pkg ? ` (passt ${pkg})` : ""}`;
    }
  }
  return v;
}

class ToolProcess implements RunningTool {
  constructor(readonly proc: Background) {}
  get pid(): number {
    return this.proc.pid;
  }
  output(): string {
    return (this.proc.stdout + this.proc.stderr).trim();
  }
  #exited = false;
  watch(): this {
    this.proc.done.then(() => this.#exited = true, () => this.#exited = true);
    return this;
  }
  alive(): boolean {
    return !this.#exited;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.proc.stop("SIGTERM", 3_000);
  }
}

/** Polls the guest until the tool configured it: address on tap0 and a default route. */
async function guestConfigured(
  guest: Netns,
  ifname: string,
  tool: ToolProcess,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    const addr = await guest.exec(["ip", "-4", "-o", "addr", "show", "dev", ifname]);
    const route = await guest.exec(["ip", "-4", "route", "show", "default"]);
    if (addr.stdout.includes(`${GUEST4}/`) && route.stdout.includes("default")) return;
    if (!tool.alive()) throw new Error(`exited before configuring the guest: ${tool.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`guest not configured after ${timeoutMs} ms: ${tool.output()}`);
}

/** Name of the host namespace's veth (pasta needs it: there is no default route). */
async function hostIf(net: HostNet): Promise<string> {
  const r = await net.host.exec(["ip", "-4", "-o", "addr", "show"]);
  const line = r.stdout.split("\n").find((l) => l.includes("192.0.2.1/"));
  const name = line?.trim().split(/\s+/)[1];
  if (!name) throw new Error(`no 192.0.2.1 interface in ${net.host.name}`);
  return name.split("@")[0];
}

/** The exact argv each tool is started with (inside the host namespace). */
export async function toolCommand(
  tool: ToolName,
  net: HostNet,
  guest: Netns,
  mtu: number,
): Promise<string[]> {
  switch (tool) {
    case "slirpd": {
      const bin = Deno.env.get("SLIRPD_BIN");
      const base = bin ? [bin] : [Deno.execPath(), "run", "--allow-all", SLIRPD_V8_FLAGS, MAIN_TS];
      return [
        ...base,
        "--netns",
        guest.path,
        "--configure",
        "--mtu",
        String(mtu),
        "--enable-host",
        "--quiet",
      ];
    }
    case "slirp4netns":
      return [
        "slirp4netns",
        "--configure",
        `--mtu=${mtu}`,
        "--netns-type=path",
        guest.path,
        guestIf(tool),
      ];
    case "pasta":
      return [
        "pasta",
        "-f",
        "-q",
        "--runas",
        "0",
        "--config-net",
        "-m",
        String(mtu),
        "-a",
        GUEST4,
        "-n",
        "24",
        "-g",
        "10.0.2.2",
        "-I",
        guestIf(tool),
        "-i",
        await hostIf(net),
        "-4",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--netns",
        guest.path,
      ];
  }
}

/**
 * Starts `tool` in the host namespace for `guest` and waits until it is ready: the guest has
 * its address and default route (and for slirpd, its readiness line is out).
 */
export async function startTool(
  tool: ToolName,
  net: HostNet,
  guest: Netns,
  mtu: number,
  timeoutMs = 30_000,
): Promise<RunningTool> {
  const argv = await toolCommand(tool, net, guest, mtu);
  const env = { DENO_NO_UPDATE_CHECK: "1" };
  const proc = new ToolProcess(new Background([...net.host.prefix(), ...argv], env)).watch();
  try {
    if (tool === "slirpd") {
      await proc.proc.waitFor((b) => b.stderr.includes(READY_LINE), timeoutMs, "slirpd readiness");
    }
    await guestConfigured(guest, guestIf(tool), proc, timeoutMs);
  } catch (e) {
    await proc[Symbol.asyncDispose]();
    throw e;
  }
  return proc;
}
