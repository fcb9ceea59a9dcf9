// `deno task bench`: slirpd against slirp4netns and pasta, side by side, in one run.
//
//   deno run --allow-all scripts/bench/main.ts [--runs N] [--quick] [--only slirpd,pasta]
//                                         [--mtu 1500,65520] [--out FILE] [--budget SECONDS]
//                                         [--burst N] [--cost] [--cost-seconds S]
//                                         [--sections tcp,udp,rr,cost,burst]
//
// Per tool × MTU ("cell"), all made fresh and torn down afterwards:
//   - an isolated host namespace (tests/support/harness.ts makeHostNet: 192.0.2.1 on a veth to a peer
//     namespace, no route anywhere else) where the tool, the iperf3 server and a TCP echo
//     server run, and a fresh guest namespace the tool is attached to (how each tool is
//     started, and why that is a fair comparison: scripts/bench/tools.ts);
//   - iperf3 -J guest→host and host→guest (-R) to 192.0.2.1, `-t 5` (`--quick`: 2), each run
//     under a process timeout: receiver Gbit/s and the sender's retransmits; a run counts only
//     if the bytes crossed the guest's tap (interface counters), i.e. went through the tool;
//   - the tool's VmHWM from /proc/PID/status right after the iperf3 runs (peak RSS), and its
//     VmRSS just after start;
//   - iperf3 -u -b 0 -l 1400 both ways: UDP Gbit/s delivered to the receiver;
//   - TCP_RR: 20,000 1-byte round trips on one connection after 1,000 unmeasured ones (p50/p99
//     µs; 2,000 made p99 the 20th-worst of ~150 ms, mostly noise), and 2,000 more each 1 ms
//     after the last answer (interactive traffic: the tool has gone idle; after 4,000 such
//     unmeasured ones, see probe.ts), TCP_CRR: connect, 1-byte
//     echo, close, for 3 s (conn/s), alone and with 64 clients at once; a burst of --burst N
//     (10,000) connections opened at once and held: time to the last SYN-ACK, to the last
//     echo, and the tool's RSS growth per open connection; all by scripts/bench/probe.ts (Deno)
//     in the guest against its echo server in the host namespace;
//   - peak RSS (VmHWM) at the end of the cell, and the peak of RssAnon sampled every 100 ms
//     (private memory: what each more container costs; VmHWM also counts the binary's
//     file-backed pages, which all processes of one binary share);
//   - with --cost: the tool's CPU seconds over 20 s idle, and while the guest makes 10
//     connections per second for --cost-seconds (60);
//   - per MTU after the cells, the floor: TCP_CRR, TCP_RR p50 and UDP both ways over a plain
//     veth, no user-mode stack (scripts/bench/floor.ts), what no tool can beat here.
// --sections picks which of these run (tcp: the TCP iperf3 rows; udp; rr: TCP_RR and TCP_CRR;
// cost; burst), e.g. `--sections udp` or `--sections cost`, to measure one change without the
// rest (the start-up RSS and peak RSS rows are always there).
// Traffic goes only between the namespaces the bench made. A tool that is not installed gets
// "not installed" cells; a tool that fails (slirpd while its TCP is being written) gets
// "fail[n]" cells with the reason underneath; neither stops the bench.
//
// pasta's guest→host rate swings a lot between runs here (0.3..8 Gbit/s, with ~1000s of
// retransmits at MTU 1500): use `--runs 3` or more (medians) before reading much into a ratio.
//
// Output: one table on stdout (progress goes to stderr), and the same as JSON in
// bench-results/latest.json with the date, machine, and tool versions. Ctrl-C, SIGTERM and the
// time budget all tear down every namespace and process made so far and still print what was
// measured.

import { parseArgs } from "node:util";
import { makeHostNet, makeNetns } from "../../tests/support/harness.ts";
import {
  aggregate,
  cellKey,
  type MetricKey,
  METRICS,
  ratiosJson,
  REFERENCE,
  renderTable,
  type Results,
  resultsJson,
  type Value,
} from "./report.ts";
import {
  burst,
  checkTcp,
  crr,
  crrPar,
  fail,
  idleCpu,
  iperf,
  rr,
  rssMiB,
  type Sample,
  sampleAnon,
  startEcho,
  trickleCpu,
} from "./measure.ts";
import {
  guestIf,
  startTool,
  toolCommand,
  type ToolName,
  TOOLS,
  unavailable,
  versions,
} from "./tools.ts";
import { type Floor, floorJson, measureFloor, renderFloor } from "./floor.ts";

const REPO = new URL("../..", import.meta.url).pathname;
/** The floor per MTU (floor.ts), measured after that MTU's cells. */
const floors = new Map<number, Floor>();

interface Options {
  runs: number;
  seconds: number;
  crrMs: number;
  rrN: number;
  tools: ToolName[];
  mtus: number[];
  out: string;
  budgetS: number;
  /** Connections of the burst (0: none). */
  burstN: number;
  /** The idle and trickle CPU section: seconds of the trickle (0: not run). */
  costS: number;
  /** Sections to run (--sections; all by default, cost only with --cost or when named). */
  sections: Set<Section>;
}

const SECTIONS = ["tcp", "udp", "rr", "cost", "burst"] as const;
type Section = typeof SECTIONS[number];

const USAGE = `usage: deno task bench [--runs N] [--quick] [--only slirpd|slirp4netns|pasta[,...]]
                       [--mtu 1500,65520] [--out FILE] [--budget SECONDS] [--burst N]
                       [--cost] [--cost-seconds S] [--sections tcp,udp,rr,cost,burst]`;

function parseOptions(argv: string[]): Options {
  const bad = (msg: string): never => {
    console.error(`bench: ${msg}\n${USAGE}`);
    Deno.exit(2);
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        runs: { type: "string", default: "1" },
        quick: { type: "boolean", default: false },
        only: { type: "string", multiple: true },
        mtu: { type: "string", default: "1500,65520" },
        out: { type: "string", default: `${REPO}bench-results/latest.json` },
        budget: { type: "string", default: "1200" },
        burst: { type: "string", default: "10000" },
        cost: { type: "boolean", default: false },
        "cost-seconds": { type: "string", default: "60" },
        sections: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    });
  } catch (e) {
    return bad(e instanceof Error ? e.message : String(e));
  }
  const values = parsed.values;
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) bad(`--runs: 1..20, got ${values.runs}`);
  const mtus = values.mtu.split(",").map((s) => Number(s.trim()));
  for (const m of mtus) if (!Number.isInteger(m) || m < 1280 || m > 65520) bad(`--mtu: ${m}`);
  const only = (values.only ?? []).flatMap((s) => s.split(",")).map((s) => s.trim());
  for (const t of only) if (!TOOLS.includes(t as ToolName)) bad(`--only: unknown tool ${t}`);
  const budgetS = Number(values.budget);
  if (!(budgetS > 0)) bad(`--budget: ${values.budget}`);
  const burstN = Number(values.burst);
  if (!Number.isInteger(burstN) || burstN < 0 || burstN > 20_000) {
    bad(`--burst: 0..20000, got ${values.burst}`);
  }
  const costS = Number(values["cost-seconds"]);
  if (!Number.isInteger(costS) || costS < 1 || costS > 600) {
    bad(`--cost-seconds: 1..600, got ${values["cost-seconds"]}`);
  }
  const named = values.sections?.split(",").map((x) => x.trim()) ?? null;
  for (const x of named ?? []) {
    if (!SECTIONS.includes(x as Section)) bad(`--sections: unknown section ${x}`);
  }
  const sections = new Set<Section>(
    (named ?? SECTIONS.filter((x) => x !== "cost" || values.cost)) as Section[],
  );
  return {
    runs,
    seconds: values.quick ? 2 : 5,
    crrMs: values.quick ? 2_000 : 3_000,
    rrN: 20_000,
    tools: only.length ? TOOLS.filter((t) => only.includes(t)) : TOOLS,
    mtus,
    out: values.out,
    budgetS,
    burstN,
    costS: sections.has("cost") ? costS : 0,
    sections,
  };
}

// ------------------------------------------------------------------------- cleanup on exit

/** Disposables of the cell being measured, newest first; also disposed on a signal. */
class Scope {
  #items: AsyncDisposable[] = [];
  add<T extends AsyncDisposable>(x: T): T {
    this.#items.push(x);
    // Made while an abort was tearing things down: do not let it outlive the bench.
    if (aborting) throw new Error(`aborted: ${aborting}`);
    return x;
  }
  async dispose(): Promise<void> {
    for (const x of this.#items.splice(0).reverse()) {
      try {
        await x[Symbol.asyncDispose]();
      } catch (e) {
        console.error(`bench: cleanup: ${e instanceof Error ? e.message : e}`);
      }
    }
  }
}

const live = new Set<Scope>();
/** The exact command line each tool ran with, per cell (for the JSON record). */
const commands: Record<string, string> = {};
let aborting: string | null = null;

// ------------------------------------------------------------------------------- one cell

const log = (s: string) => console.error(`bench: ${s}`);

/** Measures one tool at one MTU; every metric ends up as a list of samples. */
async function benchCell(
  tool: ToolName,
  mtu: number,
  opt: Options,
  samples: Map<MetricKey, Sample[]>,
): Promise<Map<MetricKey, Sample[]>> {
  // After an abort, clients fail because their namespaces are gone: not the tool's fault.
  const put = (k: MetricKey, s: Sample) => aborting || samples.get(k)!.push(s);
  const failAll = (reason: string, except: MetricKey[] = []) => {
    for (const m of METRICS) if (!except.includes(m.key)) put(m.key, fail(reason));
  };
  const scope = new Scope();
  live.add(scope);
  try {
    const net = scope.add(await makeHostNet());
    // Labels of our own (the harness names host/remote alike for everyone): bslirpd, bs4n, bpasta.
    const label = { slirpd: "bslirpd", slirp4netns: "bs4n", pasta: "bpasta" }[tool];
    const guest = scope.add(await makeNetns(label));
    // The guest's own connect()s: with thousands of its TIME-WAIT entries to the echo port
    // (TCP_CRR, the burst) the kernel searches the port range for ms per connect unless it may
    // reuse them; that is the client's cost, the same for every tool, and would swamp theirs.
    await guest.exec(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
    scope.add(await startEcho(net.host));
    const argv = (await toolCommand(tool, net, guest, mtu)).join(" ");
    commands[`${tool}@${mtu}`] = `nsenter --net=${net.host.path} -- ${argv}`;
    log(`${tool} mtu ${mtu}: ${argv}`);
    let proc;
    try {
      proc = scope.add(await startTool(tool, net, guest, mtu));
    } catch (e) {
      failAll(`${tool} did not start: ${e instanceof Error ? e.message : e}`);
      return samples;
    }
    put("rssIdle", rssMiB(proc.pid, "VmRSS"));
    const anon = sampleAnon(proc.pid);
    const dead = () =>
      proc.alive() ? null : `${tool} exited: ${proc.output().split("\n").slice(-3).join(" ")}`;
    // A failure after the tool died is the tool's death, whatever the client saw.
    const blame = (s: Sample): Sample => {
      const gone = s.ok ? null : dead();
      return gone ? fail(gone) : s;
    };
    const broken = await checkTcp(guest) ?? dead();
    if (broken) {
      log(`${tool} mtu ${mtu}: ${broken}`);
      await anon.stop();
      failAll(broken, ["rssIdle"]);
      return samples;
    }
    for (let i = 0; i < opt.runs && opt.sections.has("tcp") && !aborting; i++) {
      for (const reverse of [false, true]) {
        const r = await iperf(net.host, guest, guestIf(tool), opt.seconds, reverse);
        put(reverse ? "h2g" : "g2h", blame(r.gbps));
        put(reverse ? "h2gRetr" : "g2hRetr", blame(r.retransmits));
        const dirn = reverse ? "h→g" : "g→h";
        const got = `${show(r.gbps, "Gbit/s")}, retr ${show(r.retransmits, "")}`;
        log(`${tool} mtu ${mtu} ${dirn} run ${i + 1}: ${got}`);
      }
    }
    for (let i = 0; i < opt.runs && opt.sections.has("udp") && !aborting; i++) {
      for (const reverse of [false, true]) {
        const r = await iperf(net.host, guest, guestIf(tool), opt.seconds, reverse, true);
        put(reverse ? "udpH2g" : "udpG2h", blame(r.gbps));
        log(
          `${tool} mtu ${mtu} UDP ${reverse ? "h→g" : "g→h"} run ${i + 1}: ${
            show(r.gbps, "Gbit/s")
          }`,
        );
      }
    }
    for (let i = 0; i < opt.runs && opt.sections.has("rr") && !aborting; i++) {
      const r = await rr(guest, opt.rrN, 10_000);
      put("rrP50", blame(r.p50));
      put("rrP99", blame(r.p99));
      // Interactive traffic: a request 1 ms after the last answer finds the tool idle.
      const g = await rr(guest, 2_000, 10_000, 1);
      put("rrGapP50", blame(g.p50));
      put("rrGapP99", blame(g.p99));
      log(
        `${tool} mtu ${mtu} rr 1 ms apart run ${i + 1}: p50 ${show(g.p50, "µs")} p99 ${
          show(g.p99, "µs")
        }`,
      );
      const c = blame(await crr(guest, opt.crrMs));
      // Run 1 finds the host's ports free; later runs follow ~35,000 connections (this TCP_CRR
      // and the 64-client one), whose host sockets sit in TIME-WAIT for 60 s and fill the
      // ephemeral range: the churn the issue is about. Two regimes, two rows.
      put(i === 0 ? "crr" : "crrChurn", c);
      log(
        `${tool} mtu ${mtu} rr run ${i + 1}: p50 ${show(r.p50, "µs")} p99 ${show(r.p99, "µs")}, ` +
          `crr ${show(c, "conn/s")}`,
      );
      const c64 = blame(await crrPar(guest, opt.crrMs, 64));
      put("crr64", c64);
      log(`${tool} mtu ${mtu} crr 64 clients run ${i + 1}: ${show(c64, "conn/s")}`);
    }
    if (opt.costS > 0 && !aborting) {
      // Let TCP_CRR's connections drain first (slirpd's TIME-WAIT is 5 s):
      // idle means idle.
      await new Promise((r) => setTimeout(r, 8_000));
      const idle = blame(await idleCpu(proc.pid, 20));
      put("idleCpu", idle);
      const tr = blame(await trickleCpu(guest, proc.pid, 10, opt.costS));
      put("trickleCpu", tr);
      log(
        `${tool} mtu ${mtu} cost: idle 20 s ${show(idle, "CPU-s")}, 10 conn/s for ${opt.costS} s ${
          show(tr, "CPU-s")
        }`,
      );
    }
    // The burst last: a tool it breaks (slirp4netns here: no fd left) must not fail the
    // rows before it.
    if (opt.burstN > 0 && opt.sections.has("burst") && !aborting) {
      const b = await burst(guest, proc.pid, opt.burstN);
      put("burstConnect", blame(b.lastConnectMs));
      put("burstServed", blame(b.allServedMs));
      put("burstBytesPerConn", blame(b.bytesPerConn));
      log(
        `${tool} mtu ${mtu} burst ${opt.burstN}: last connect ${show(b.lastConnectMs, "ms")}, ` +
          `all served ${show(b.allServedMs, "ms")}, ${show(b.bytesPerConn, "B/conn")}`,
      );
    }
    put("rssPeak", dead() ? fail(dead()!) : rssMiB(proc.pid, "VmHWM"));
    put("anonPeak", blame(await anon.stop()));
    return samples;
  } catch (e) {
    // Setting up the namespaces or the echo server failed: the bench's fault, not the tool's.
    failAll(`bench setup: ${e instanceof Error ? e.message : e}`);
    return samples;
  } finally {
    await scope.dispose();
    live.delete(scope);
  }
}

function show(s: Sample, unit: string): string {
  return s.ok ? `${s.value}${unit ? " " + unit : ""}` : `FAIL (${s.reason})`;
}

// ------------------------------------------------------------------------------- machine

function machine(): Record<string, string | number> {
  let cpu = "unknown";
  try {
    cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? cpu;
  } catch { /* not Linux? the bench would not get here */ }
  return {
    nproc: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    cpu,
    hostname: Deno.hostname(),
  };
}

// ---------------------------------------------------------------------------------- main

const opt = parseOptions(Deno.args);
if (Deno.uid() !== 0) {
  console.error("bench: needs root (it makes network namespaces)");
  Deno.exit(1);
}
const started = Date.now();
const results: Results = new Map();
for (const t of opt.tools) results.set(t, new Map());
const record = (t: ToolName, k: string, v: Value) => results.get(t)!.set(k, v);

function recordCell(tool: ToolName, mtu: number, samples: Map<MetricKey, Sample[]>) {
  for (const [k, s] of samples) {
    if (s.length) record(tool, cellKey(k, mtu), aggregate(s));
  }
}
/** The cell being measured, so an abort can still report what it had. */
let partial: { tool: ToolName; mtu: number; samples: Map<MetricKey, Sample[]> } | null = null;

let finished = false;
let current: Promise<unknown> = Promise.resolve();
/** The firewall's decision rate at 0..10k rules (scripts/bench/firewall.ts, its own process). */
async function firewallBench(): Promise<Record<string, unknown>[] | string> {
  const script = new URL("./firewall.ts", import.meta.url).pathname;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", script, "--json"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) return `failed: ${new TextDecoder().decode(out.stderr).trim()}`;
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "[]");
  } catch (e) {
    return `failed: ${e instanceof Error ? e.message : e}`;
  }
}

async function finish(note: string | null): Promise<void> {
  if (finished) return;
  finished = true;
  const elapsed = (Date.now() - started) / 1000;
  const input = { tools: opt.tools, mtus: opt.mtus, results };
  const table = renderTable(input);
  console.log(
    `\nslirpd bench — ${new Date().toISOString()}, iperf3 -t ${opt.seconds}, runs ${opt.runs}`,
  );
  console.log(table);
  if (floors.size > 0) {
    console.log(
      "\nfloor: the same probes over a plain veth, no user-mode stack (scripts/bench/floor.ts)",
    );
    console.log(renderFloor(floors));
  }
  const vers = await versions(opt.tools);
  console.log("\nversions:");
  for (const [k, v] of Object.entries(vers)) console.log(`  ${k}: ${v}`);
  const firewall = await firewallBench();
  console.log("\nfirewall decisions (one new flow each):");
  if (typeof firewall === "string") console.log(`  ${firewall}`);
  else {
    console.log("  rules   decisions/s   ns each   vs linear scan");
    for (const r of firewall) {
      console.log(
        `  ${String(r["rules"]).padStart(5)}  ${String(r["decisions/s"]).padStart(12)}  ${
          String(r["ns/decision"]).padStart(8)
        }   ${r["speedup"]}x`,
      );
    }
  }
  console.log(`\nelapsed ${elapsed.toFixed(1)} s${note ? ` (${note})` : ""}`);
  const json = {
    date: new Date(started).toISOString(),
    elapsedSeconds: Math.round(elapsed * 10) / 10,
    ...(note ? { incomplete: note } : {}),
    machine: machine(),
    versions: vers,
    options: { ...opt, out: undefined },
    commands,
    results: resultsJson(results),
    ratios: ratiosJson(input),
    reference: REFERENCE,
    firewall,
    floor: floorJson(floors),
    table,
  };
  try {
    Deno.mkdirSync(new URL(".", `file://${opt.out}`).pathname, { recursive: true });
    Deno.writeTextFileSync(opt.out, JSON.stringify(json, null, 2) + "\n");
    console.log(`wrote ${opt.out}`);
  } catch (e) {
    console.error(`bench: could not write ${opt.out}: ${e instanceof Error ? e.message : e}`);
  }
}

/** Ctrl-C, SIGTERM or the time budget: tear everything down, report what we have, exit. */
async function abort(why: string, code: number): Promise<void> {
  if (aborting) return;
  aborting = why;
  if (partial) recordCell(partial.tool, partial.mtu, partial.samples);
  log(`${why}: cleaning up`);
  await Promise.all([...live].map((s) => s.dispose()));
  await finish(`stopped early: ${why}`);
  // A cell that was making a namespace at that moment adds it to its scope and then throws
  // (Scope.add); give it a moment to get there, and dispose whatever is left.
  await Promise.race([current, new Promise((r) => setTimeout(r, 3_000))]);
  await Promise.all([...live].map((s) => s.dispose()));
  Deno.exit(code);
}
const onInt = () => abort("interrupted (SIGINT)", 130);
const onTerm = () => abort("terminated (SIGTERM)", 143);
Deno.addSignalListener("SIGINT", onInt);
Deno.addSignalListener("SIGTERM", onTerm);
const budgetTimer = setTimeout(
  () => abort(`time budget of ${opt.budgetS} s used up`, 124),
  opt.budgetS * 1000,
);

// MTU outermost, so the tools at one MTU are measured close together in time.
for (const mtu of opt.mtus) {
  for (const tool of opt.tools) {
    if (aborting) break;
    const why = unavailable(tool);
    if (why) {
      for (const m of METRICS) record(tool, cellKey(m.key, mtu), { kind: "none", reason: why });
      continue;
    }
    const samples = new Map<MetricKey, Sample[]>(METRICS.map((m) => [m.key, []]));
    partial = { tool, mtu, samples };
    const cell = benchCell(tool, mtu, opt, samples);
    current = cell;
    await cell;
    if (aborting) break;
    recordCell(tool, mtu, samples);
    partial = null;
  }
  if (!aborting && (opt.sections.has("rr") || opt.sections.has("udp"))) {
    log(`floor mtu ${mtu}: the same probes over a plain veth, no user-mode stack`);
    const scope = new Scope();
    live.add(scope);
    const f = measureFloor(mtu, opt.seconds, opt.crrMs, (x) => scope.add(x));
    current = f;
    try {
      floors.set(mtu, await f);
    } catch (e) {
      log(`floor mtu ${mtu}: ${e instanceof Error ? e.message : e}`);
    } finally {
      await scope.dispose();
      live.delete(scope);
    }
  }
}
if (!aborting) {
  clearTimeout(budgetTimer);
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  await finish(null);
}
