// Port forward throughput: iperf3 through slirpd -L, slirp4netns add_hostfwd (its
// --api-socket) and pasta -t, side by side, from two kinds of client.
//
//   deno run --allow-all scripts/bench/forward.ts [--runs N] [--quick] [--mtu 1500,65520]
//                                                 [--only slirpd,slirp4netns,pasta]
//                                                 [--clients loopback,remote]
//
// Per tool × MTU, made fresh and torn down afterwards (also on Ctrl-C): an isolated host
// namespace (tests/support/harness.ts makeHostNet: 192.0.2.1 on a veth to the "remote" peer
// namespace, no route anywhere else), a guest namespace the tool is attached to with the
// iperf3 server in it, and the tool forwarding port 15201 on every host address to
// 10.0.2.100:5201 (each tool with its defaults otherwise). Two clients, two tables:
//
// - loopback: iperf3 -c 127.0.0.1 in the host namespace. What most users do (`-p 8080`, `-L`
//   reached from the same host). pasta splices such connections between two host-kernel
//   sockets (its tap is not used), and so does slirpd with --forward-splice=auto (its
//   default); slirp4netns carries them over its tap. The "tap" column says how much of the
//   payload crossed the guest's tap.
// - remote: iperf3 -c 192.0.2.1 from the peer namespace. A non-loopback client: no tool can
//   splice it (the guest would lose the client's address), every tool carries the bytes over
//   the guest's tap; a run counts only if ≥ 90% of the bytes crossed it.
//
// Directions: h→g (client sends into the guest) and g→h (iperf3 -R). Every run has a process
// timeout. Output: the two tables on stdout (receiver Gbit/s, median of the runs, and the
// sender's retransmits); progress on stderr.

import { parseArgs } from "node:util";
import {
  Background,
  MAIN_TS,
  makeHostNet,
  makeNetns,
  type Netns,
  READY_LINE,
  run,
} from "../../tests/support/harness.ts";

type Tool = "slirpd" | "slirp4netns" | "pasta";
const TOOLS: Tool[] = ["slirpd", "slirp4netns", "pasta"];
const HOST4 = "192.0.2.1";
const GUEST4 = "10.0.2.100";
const FWD_PORT = 15201;
const IPERF_PORT = 5201;
const ENV = { DENO_NO_UPDATE_CHECK: "1" };

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
    mtu: { type: "string", default: "1500,65520" },
    only: { type: "string" },
    clients: { type: "string", default: "loopback,remote" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "usage: forward.ts [--runs N] [--quick] [--mtu 1500,65520] [--only TOOLS] " +
      "[--clients loopback,remote]",
  );
  Deno.exit(0);
}
const runs = Math.max(1, Math.min(10, Number(values.runs) || 1));
const seconds = values.quick ? 2 : 5;
const mtus = values.mtu.split(",").map(Number).filter((m) => m >= 1280 && m <= 65520);
const tools = values.only ? TOOLS.filter((t) => values.only!.split(",").includes(t)) : TOOLS;
type Client = "loopback" | "remote";
const clients = (["loopback", "remote"] as Client[]).filter((c) =>
  values.clients.split(",").includes(c)
);
const log = (s: string) => console.error(`bench_forward: ${s}`);

/** What one cell made, newest first: disposed in reverse (and on a signal). */
const scope: AsyncDisposable[] = [];
async function disposeAll(): Promise<void> {
  for (const d of scope.splice(0).reverse()) {
    try {
      await d[Symbol.asyncDispose]();
    } catch (e) {
      log(`cleanup: ${e instanceof Error ? e.message : e}`);
    }
  }
}
const onSignal = async () => {
  log("interrupted: cleaning up");
  await disposeAll();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

function installed(tool: Tool): boolean {
  if (tool === "slirpd") return true;
  return (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").some((d) => {
    try {
      return Deno.statSync(`${d}/${tool}`).isFile;
    } catch {
      return false;
    }
  });
}

async function hostIf(host: Netns): Promise<string> {
  const r = await host.exec(["ip", "-4", "-o", "addr", "show"]);
  const line = r.stdout.split("\n").find((l) => l.includes(`${HOST4}/`));
  return (line?.trim().split(/\s+/)[1] ?? "").split("@")[0];
}

async function waitFor(what: string, ms: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** slirp4netns' API: one request, the client shuts down its side, the answer to EOF. */
async function s4nApi(path: string, req: object): Promise<string> {
  const c = await Deno.connect({ transport: "unix", path });
  await c.write(new TextEncoder().encode(JSON.stringify(req)));
  await c.closeWrite();
  return await new Response(c.readable).text();
}

/** Starts `tool` in the host namespace for `guest` with the forward in place; its tap name. */
async function startTool(tool: Tool, host: Netns, guest: Netns, mtu: number, dir: string) {
  let argv: string[];
  const ifname = tool === "slirpd" ? "tun0" : "tap0";
  const api = `${dir}/s4n.sock`;
  if (tool === "slirpd") {
    const bin = Deno.env.get("SLIRPD_BIN");
    argv = [
      ...(bin ? [bin] : [Deno.execPath(), "run", "--allow-all", MAIN_TS]),
      ...["--netns", guest.path, "--configure", "--mtu", String(mtu), "--quiet"],
      ...["-L", `0.0.0.0:${FWD_PORT}:${GUEST4}:${IPERF_PORT}`],
    ];
  } else if (tool === "slirp4netns") {
    argv = [
      "slirp4netns",
      "--configure",
      `--mtu=${mtu}`,
      `--api-socket=${api}`,
      "--netns-type=path",
      guest.path,
      ifname,
    ];
  } else {
    argv = [
      ...["pasta", "-f", "-q", "--runas", "0", "--config-net", "-m", String(mtu)],
      ...["-a", GUEST4, "-n", "24", "-g", "10.0.2.2", "-I", ifname, "-i", await hostIf(host)],
      ...["-4", "-t", `${FWD_PORT}:${IPERF_PORT}`, "-u", "none", "-T", "none"],
      ...["-U", "none", "--netns", guest.path],
    ];
  }
  log(`${tool} mtu ${mtu}: ${argv.join(" ")}`);
  const p = new Background([...host.prefix(), ...argv], ENV);
  scope.push(p);
  if (tool === "slirpd") {
    await p.waitFor((b) => b.stderr.includes(READY_LINE), 30_000, "slirpd readiness");
  }
  await waitFor("the guest's address", 30_000, async () => {
    const r = await guest.exec(["ip", "-4", "-o", "addr", "show", "dev", ifname]);
    return r.stdout.includes(`${GUEST4}/`);
  });
  if (tool === "slirp4netns") {
    await waitFor("the API socket", 10_000, async () => {
      try {
        return (await Deno.lstat(api)).isSocket === true;
      } catch {
        return false;
      }
    });
    const ans = await s4nApi(api, {
      execute: "add_hostfwd",
      arguments: {
        proto: "tcp",
        host_addr: "0.0.0.0",
        host_port: FWD_PORT,
        guest_addr: GUEST4,
        guest_port: IPERF_PORT,
      },
    });
    if (!ans.includes('"return"')) throw new Error(`add_hostfwd: ${ans}`);
  }
  return ifname;
}

async function tapBytes(guest: Netns, ifname: string, dir: "rx" | "tx"): Promise<number> {
  const r = await guest.exec(["ip", "-j", "-s", "link", "show", "dev", ifname]);
  try {
    return JSON.parse(r.stdout)[0]?.stats64?.[dir]?.bytes ?? NaN;
  } catch {
    return NaN;
  }
}

interface Run {
  gbps: number;
  retr: number;
  /** Share of the payload that crossed the guest's tap (0..1). */
  tap: number;
}

/** One bounded iperf3 run through the forward, from `client` to `addr`. */
async function iperf(
  client: Netns,
  addr: string,
  guest: Netns,
  ifname: string,
  reverse: boolean,
  needTap: boolean,
): Promise<Run | string> {
  await using srv = guest.spawn(["iperf3", "-s", "-1", "-p", String(IPERF_PORT)]);
  await waitFor("the iperf3 server", 10_000, async () => {
    const r = await guest.exec(["ss", "-Hltn", `sport = :${IPERF_PORT}`]);
    return r.stdout.includes(`:${IPERF_PORT}`);
  });
  void srv;
  // h→g: the guest's interface receives what the tool wrote to the tap; g→h: it transmits.
  const dir = reverse ? "tx" : "rx";
  const before = await tapBytes(guest, ifname, dir);
  const r = await run([
    ...client.prefix(),
    ...["iperf3", "-c", addr, "-p", String(FWD_PORT), "-t", String(seconds), "-J"],
    ...["--connect-timeout", "5000", ...(reverse ? ["-R"] : [])],
  ], { timeoutMs: (seconds + 20) * 1000 });
  const through = await tapBytes(guest, ifname, dir) - before;
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    return `iperf3 exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 200) || "timeout"}`;
  }
  if (j.error) return `iperf3: ${j.error}`;
  const bps = j.end?.sum_received?.bits_per_second;
  const bytes = j.end?.sum_received?.bytes ?? 0;
  if (bps === undefined) return "iperf3 reported nothing";
  if (needTap && !(through >= bytes * 0.9)) {
    return `only ${through} of ${bytes} bytes crossed the tap`;
  }
  return {
    gbps: Math.round(bps / 1e7) / 100,
    retr: j.end?.sum_sent?.retransmits ?? NaN,
    tap: bytes > 0 ? Math.min(1, through / bytes) : NaN,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}

const HEAD = ["tool", "mtu", "h→g Gbit/s", "retr", "tap", "g→h Gbit/s", "retr", "tap"];
const tables = new Map<Client, string[][]>(clients.map((c) => [c, [HEAD]]));
const notes: string[] = [];
const pct = (x: number) => Number.isNaN(x) ? "?" : `${Math.round(x * 100)}%`;
for (const tool of tools) {
  for (const mtu of mtus) {
    const rows = new Map<Client, string[]>(clients.map((c) => [c, [tool, String(mtu)]]));
    if (!installed(tool)) {
      for (const c of clients) tables.get(c)!.push([tool, String(mtu), "not installed"]);
      continue;
    }
    const dir = await Deno.makeTempDir({ prefix: "bench-fwd-" });
    try {
      const net = await makeHostNet();
      scope.push(net);
      const guest = await makeNetns("bfwd");
      scope.push(guest);
      const ifname = await startTool(tool, net.host, guest, mtu, dir);
      for (const client of clients) {
        const row = rows.get(client)!;
        const [ns, addr] = client === "loopback" ? [net.host, "127.0.0.1"] : [net.remote, HOST4];
        for (const reverse of [false, true]) {
          const got: Run[] = [];
          let why = "";
          for (let i = 0; i < runs; i++) {
            const r = await iperf(ns, addr, guest, ifname, reverse, client === "remote");
            if (typeof r === "string") why = r;
            else got.push(r);
            log(`${tool} mtu ${mtu} ${client} ${reverse ? "g→h" : "h→g"}: ${JSON.stringify(r)}`);
          }
          if (got.length === 0) {
            row.push("fail", "", "");
            notes.push(`${tool} mtu ${mtu} ${client} ${reverse ? "g→h" : "h→g"}: ${why}`);
          } else {
            row.push(
              median(got.map((g) => g.gbps)).toFixed(2),
              String(median(got.map((g) => g.retr))),
              pct(median(got.map((g) => g.tap))),
            );
          }
        }
      }
    } catch (e) {
      notes.push(`${tool} mtu ${mtu}: ${e instanceof Error ? e.message : e}`);
    } finally {
      await disposeAll();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    for (const c of clients) {
      const row = rows.get(c)!;
      while (row.length < HEAD.length) row.push("fail");
      tables.get(c)!.push(row);
    }
  }
}

const WHAT: Record<Client, string> = {
  loopback: "client on the host's 127.0.0.1 (what most users do; splicing allowed)",
  remote: "client in a peer namespace via 192.0.2.1 (no splicing: the tap path)",
};
for (const c of clients) {
  const table = tables.get(c)!;
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => (r[i] ?? "").length)));
  console.log(`\nport forward throughput, ${WHAT[c]} (iperf3 -t ${seconds}, ${runs} run(s))`);
  for (const r of table) console.log(r.map((x, i) => (x ?? "").padEnd(widths[i])).join("  "));
}
for (const n of notes) console.log(`  ${n}`);
Deno.removeSignalListener("SIGINT", onSignal);
Deno.removeSignalListener("SIGTERM", onSignal);
