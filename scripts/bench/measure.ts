// One measurement each: an iperf3 run, a probe run (TCP_RR / TCP_CRR / check), a VmHWM read.
// Every function returns a Sample (a number, or the reason it failed); none throws for a
// failure of the thing measured, so a broken tool turns into "fail" cells, not a crash.

import { Background, type Netns, run } from "../../tests/support/harness.ts";

export const HOST4 = "192.0.2.1";
export const IPERF_PORT = 5201;
export const ECHO_PORT = 5301;
export const PROBE_TS = new URL("./probe.ts", import.meta.url).pathname;
const ENV = { DENO_NO_UPDATE_CHECK: "1" };

export type Sample = { ok: true; value: number } | { ok: false; reason: string };

export const fail = (reason: string): Sample => ({ ok: false, reason });
const okv = (value: number): Sample => ({ ok: true, value });

function oneLine(s: string, max = 240): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

// ---------------------------------------------------------------------------------- iperf3

export interface IperfResult {
  gbps: Sample;
  retransmits: Sample;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_sent?: { bits_per_second?: number; retransmits?: number };
    sum_received?: { bits_per_second?: number; bytes?: number };
  };
}

/** Polls until something listens on `port` in `ns` (bounded). */
async function listening(ns: Netns, port: number, server: Background, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 500 && Date.now() < deadline; i++) {
    const r = await ns.exec(["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.includes(`:${port}`)) return;
    const exited = await Promise.race([
      server.done.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 50)),
    ]);
    if (exited) throw new Error(`server exited: ${oneLine(server.stdout + server.stderr)}`);
  }
  throw new Error(`nothing listening on :${port} after ${ms} ms`);
}

/** Bytes the guest's interface sent (tx) or received (rx) so far; NaN when unreadable. */
async function ifBytes(guest: Netns, ifname: string, dir: "rx" | "tx"): Promise<number> {
  const r = await guest.exec(["ip", "-j", "-s", "link", "show", "dev", ifname]);
  try {
    const j = JSON.parse(r.stdout) as { stats64?: Record<string, { bytes: number }> }[];
    return j[0]?.stats64?.[dir]?.bytes ?? NaN;
  } catch {
    return NaN;
  }
}

/**
 * One bounded iperf3 run from the guest to the server on HOST4 in the host namespace.
 * A fresh one-off server (`-s -1`) per run: a client that died mid-test cannot leave a busy
 * server behind for the next run. Gbit/s is what the receiver got; retransmits are the
 * sender's (the guest kernel for guest→host, the host-side iperf3 for -R).
 */
export async function iperf(
  host: Netns,
  guest: Netns,
  ifname: string,
  seconds: number,
  reverse: boolean,
  udp = false,
): Promise<IperfResult> {
  const failed = (reason: string): IperfResult => ({
    gbps: fail(reason),
    retransmits: fail(reason),
  });
  await using server = new Background([
    ...host.prefix(),
    "iperf3",
    "-s",
    "-1",
    "-B",
    HOST4,
    "-p",
    String(IPERF_PORT),
  ]);
  try {
    await listening(host, IPERF_PORT, server);
  } catch (e) {
    return failed(`iperf3 server: ${e instanceof Error ? e.message : e}`);
  }
  const args = [
    "iperf3",
    "-c",
    HOST4,
    "-p",
    String(IPERF_PORT),
    "-t",
    String(seconds),
    "-J",
    "--connect-timeout",
    "5000",
    ...(reverse ? ["-R"] : []),
    // UDP: 1400-byte datagrams as fast as the sender can; the rate is what arrived.
    ...(udp ? ["-u", "-b", "0", "-l", "1400"] : []),
  ];
  const dir = reverse ? "rx" : "tx";
  const before = await ifBytes(guest, ifname, dir);
  const r = await run([...guest.prefix(), ...args], { timeoutMs: (seconds + 20) * 1000 });
  const through = await ifBytes(guest, ifname, dir) - before;
  let j: IperfJson = {};
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch { /* not JSON: killed by the timeout, or crashed */ }
  if (j.error) return failed(`iperf3: ${oneLine(j.error)}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (r.code !== 0 || bps === undefined) {
    return failed(`iperf3 exit ${r.code}: ${oneLine(r.stderr || r.stdout) || "timed out"}`);
  }
  // The data must have crossed the guest's tap, i.e. the tool: a guest that reached the server
  // some other way would make any number meaningless.
  const bytes = j.end?.sum_received?.bytes ?? 0;
  if (!(through >= bytes * 0.9)) {
    return failed(`only ${through} of ${bytes} bytes crossed the guest's ${ifname}`);
  }
  const retr = j.end?.sum_sent?.retransmits;
  if (udp) return { gbps: okv(Math.round(bps / 1e7) / 100), retransmits: okv(0) };
  return {
    gbps: okv(Math.round(bps / 1e7) / 100),
    retransmits: retr === undefined ? fail("iperf3 reported no retransmit count") : okv(retr),
  };
}

// ---------------------------------------------------------------------------------- probes

/** The echo server the probes talk to, in the host namespace. */
export async function startEcho(host: Netns): Promise<Background> {
  const b = new Background(
    [...host.prefix(), Deno.execPath(), "run", "-A", PROBE_TS, "server", HOST4, String(ECHO_PORT)],
    ENV,
  );
  try {
    await b.waitFor((x) => x.stdout.includes("listening"), 30_000, "echo server");
  } catch (e) {
    await b.stop("SIGKILL");
    throw e;
  }
  return b;
}

type ProbeJson = Record<string, number | string | boolean>;

async function probe(guest: Netns, args: string[], timeoutMs: number): Promise<ProbeJson> {
  const r = await run(
    [...guest.prefix(), Deno.execPath(), "run", "-A", PROBE_TS, args[0], HOST4, String(ECHO_PORT)]
      .concat(args.slice(1)),
    { timeoutMs, env: ENV },
  );
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as ProbeJson;
  } catch {
    return {
      ok: false,
      error: `probe ${args[0]} exit ${r.code}: ${oneLine(r.stderr || r.stdout) || "timed out"}`,
    };
  }
}

/** One connect + 1-byte echo: does TCP from the guest to the host work at all? */
export async function checkTcp(guest: Netns): Promise<string | null> {
  const j = await probe(guest, ["check", "5000"], 30_000);
  return j.ok ? null : `guest→${HOST4}:${ECHO_PORT} TCP: ${oneLine(String(j.error))}`;
}

export interface RrResult {
  p50: Sample;
  p99: Sample;
}

/** TCP_RR: n 1-byte round trips on one connection, at most maxMs, gapMs apart (0: back to back). */
export async function rr(guest: Netns, n: number, maxMs: number, gapMs = 0): Promise<RrResult> {
  const j = await probe(guest, ["rr", String(n), String(maxMs), String(gapMs)], maxMs + 30_000);
  if (!j.ok) {
    const reason = `rr: ${oneLine(String(j.error))}`;
    return { p50: fail(reason), p99: fail(reason) };
  }
  return { p50: okv(Number(j.p50)), p99: okv(Number(j.p99)) };
}

/** TCP_CRR: connect, 1-byte echo, close, as fast as possible for ms. */
export async function crr(guest: Netns, ms: number): Promise<Sample> {
  const j = await probe(guest, ["crr", String(ms)], ms + 30_000);
  if (!j.ok) {
    return fail(`crr: ${oneLine(String(j.error ?? j.lastError ?? "no connection completed"))}`);
  }
  return okv(Number(j.perSec));
}

// ---------------------------------------------------------------------------------- memory

/** VmHWM (peak) or VmRSS (now) of pid, in MiB. */
export function rssMiB(pid: number, field: "VmHWM" | "VmRSS"): Sample {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    if (!m) return fail(`no ${field} in /proc/${pid}/status`);
    return okv(Math.round(Number(m[1]) / 1024 * 10) / 10);
  } catch (e) {
    return fail(`/proc/${pid}/status: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * The tool's private memory (RssAnon: heap, stacks, its own buffers; not the file-backed pages
 * of its binary, which every process running that binary shares), sampled every 100 ms until
 * stop() (VmHWM counts those shared pages and has no anonymous-only peak). Resolves to the
 * peak in MiB.
 */
export function sampleAnon(pid: number): { stop(): Promise<Sample> } {
  let running = true;
  let peak = 0;
  let error = "";
  const loop = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      try {
        const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^RssAnon:\s+(\d+) kB/m);
        if (m && Number(m[1]) > peak) peak = Number(m[1]);
      } catch (e) {
        error ||= e instanceof Error ? e.message : String(e);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop(): Promise<Sample> {
      running = false;
      await loop;
      if (peak === 0) return fail(error ? `/proc/${pid}/status: ${error}` : "no RssAnon");
      return okv(Math.round(peak / 1024 * 10) / 10);
    },
  };
}

/** TCP_CRR with conc clients at once. */
export async function crrPar(guest: Netns, ms: number, conc: number): Promise<Sample> {
  const j = await probe(guest, ["crrpar", String(ms), String(conc)], ms + 30_000);
  if (!j.ok) return fail(`crrpar: ${oneLine(String(j.error ?? j.lastError ?? "none done"))}`);
  return okv(Number(j.perSec));
}

export interface BurstResult {
  /** Time until the last of the n connects completed, and until all were served (ms). */
  lastConnectMs: Sample;
  allServedMs: Sample;
  /** The tool's RSS growth with all n connections open, per connection (bytes). */
  bytesPerConn: Sample;
}

/** n connections at once (held open together), with the tool's VmRSS sampled meanwhile. */
export async function burst(guest: Netns, pid: number, n: number): Promise<BurstResult> {
  const rssKiB = () => {
    try {
      const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
      return m ? Number(m[1]) : NaN;
    } catch {
      return NaN;
    }
  };
  const base = rssKiB();
  let peak = base;
  let running = true;
  const sampler = (async () => {
    for (let i = 0; i < 10_000 && running; i++) {
      const v = rssKiB();
      if (v > peak) peak = v;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const j = await probe(guest, ["burst", String(n), "1000"], 120_000);
  running = false;
  await sampler;
  if (!j.ok) {
    const why = fail(
      `burst: ${j.served ?? 0}/${n} served: ${
        oneLine(j.errors ? JSON.stringify(j.errors) : String(j.error ?? j.lastError))
      }`,
    );
    return { lastConnectMs: why, allServedMs: why, bytesPerConn: why };
  }
  return {
    lastConnectMs: okv(Number(j.lastConnectMs)),
    allServedMs: okv(Number(j.allServedMs)),
    bytesPerConn: Number.isFinite(base)
      ? okv(Math.round(((peak - base) * 1024) / n))
      : fail("no RSS"),
  };
}

/** CPU seconds (user + system, all threads) a process has used so far; NaN when gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // clock ticks (USER_HZ 100)
  } catch {
    return NaN;
  }
}

/** The tool's CPU seconds over secs of doing nothing (the guest idle). */
export async function idleCpu(pid: number, secs: number): Promise<Sample> {
  const c0 = cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, secs * 1000));
  const c = cpuSeconds(pid) - c0;
  return Number.isFinite(c) ? okv(Math.round(c * 100) / 100) : fail("tool gone");
}

/** The tool's CPU seconds while the guest makes rate connections per second for secs. */
export async function trickleCpu(
  guest: Netns,
  pid: number,
  rate: number,
  secs: number,
): Promise<Sample> {
  const c0 = cpuSeconds(pid);
  const j = await probe(guest, ["trickle", String(rate), String(secs)], secs * 1000 + 30_000);
  const c = cpuSeconds(pid) - c0;
  if (!j.ok) return fail(`trickle: ${oneLine(String(j.error ?? `${j.errors} errors`))}`);
  return Number.isFinite(c) ? okv(Math.round(c * 100) / 100) : fail("tool gone");
}
