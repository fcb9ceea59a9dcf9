// Results → one text table (stdout) and one JSON record (bench-results/latest.json).
//
// A cell is a number (the median of the runs), "fail[n]" with the reason as footnote n, or a
// word saying why there is no number ("not installed", "not run"). Ratios are slirpd/peer for
// every row as is: for Gbit/s and conn/s above 1 is better for slirpd, for µs and MiB below 1.

import type { Sample } from "./measure.ts";
import type { ToolName } from "./tools.ts";

export type MetricKey =
  | "g2h"
  | "g2hRetr"
  | "h2g"
  | "h2gRetr"
  | "rrP50"
  | "rrP99"
  | "rrGapP50"
  | "rrGapP99"
  | "crr"
  | "crrChurn"
  | "crr64"
  | "burstConnect"
  | "burstServed"
  | "burstBytesPerConn"
  | "udpG2h"
  | "udpH2g"
  | "idleCpu"
  | "trickleCpu"
  | "rssIdle"
  | "rssPeak"
  | "anonPeak";

export interface MetricDef {
  key: MetricKey;
  label: string;
  better: "higher" | "lower" | "";
  digits: number;
  /** Whether slirpd/peer means anything (not for event counts, which are often 0). */
  ratio: boolean;
}

export const METRICS: MetricDef[] = [
  { key: "g2h", label: "guest→host TCP Gbit/s", better: "higher", digits: 2, ratio: true },
  { key: "g2hRetr", label: "guest→host retransmits", better: "lower", digits: 0, ratio: false },
  { key: "h2g", label: "host→guest TCP Gbit/s (-R)", better: "higher", digits: 2, ratio: true },
  { key: "h2gRetr", label: "host→guest retransmits", better: "lower", digits: 0, ratio: false },
  { key: "rrP50", label: "TCP_RR 1 B p50 µs", better: "lower", digits: 0, ratio: true },
  { key: "rrP99", label: "TCP_RR 1 B p99 µs", better: "lower", digits: 0, ratio: true },
  {
    key: "rrGapP50",
    label: "TCP_RR 1 B, 1 ms apart, p50 µs",
    better: "lower",
    digits: 0,
    ratio: true,
  },
  {
    key: "rrGapP99",
    label: "TCP_RR 1 B, 1 ms apart, p99 µs",
    better: "lower",
    digits: 0,
    ratio: true,
  },
  { key: "crr", label: "TCP_CRR conn/s, run 1", better: "higher", digits: 0, ratio: true },
  {
    key: "crrChurn",
    label: "TCP_CRR conn/s, runs 2+ (churned)",
    better: "higher",
    digits: 0,
    ratio: true,
  },
  { key: "crr64", label: "TCP_CRR conn/s, 64 clients", better: "higher", digits: 0, ratio: true },
  {
    key: "burstConnect",
    label: "burst (--burst N): last SYN-ACK ms",
    better: "lower",
    digits: 0,
    ratio: true,
  },
  {
    key: "burstServed",
    label: "burst (--burst N): all served ms",
    better: "lower",
    digits: 0,
    ratio: true,
  },
  {
    key: "burstBytesPerConn",
    label: "RSS per open conn (burst) bytes",
    better: "lower",
    digits: 0,
    ratio: true,
  },
  {
    key: "udpG2h",
    label: "guest→host UDP 1400 B Gbit/s",
    better: "higher",
    digits: 2,
    ratio: true,
  },
  {
    key: "udpH2g",
    label: "host→guest UDP 1400 B Gbit/s",
    better: "higher",
    digits: 2,
    ratio: true,
  },
  { key: "idleCpu", label: "idle CPU-s (--cost, 20 s)", better: "lower", digits: 2, ratio: false },
  { key: "trickleCpu", label: "CPU-s 10 conn/s (--cost)", better: "lower", digits: 2, ratio: true },
  { key: "rssIdle", label: "RSS after start MiB", better: "lower", digits: 1, ratio: true },
  {
    key: "rssPeak",
    label: "peak RSS MiB (VmHWM, whole cell)",
    better: "lower",
    digits: 1,
    ratio: true,
  },
  {
    key: "anonPeak",
    label: "peak private MiB (RssAnon, 100 ms)",
    better: "lower",
    digits: 1,
    ratio: true,
  },
];

/** The reference numbers (Gbit/s, 2-core VM) the table is read against. */
export const REFERENCE: Record<string, { slirp4netns: number; pasta: number }> = {
  "g2h@65520": { slirp4netns: 2.4, pasta: 1.9 },
  "g2h@1500": { slirp4netns: 0.58, pasta: 3.6 },
  "h2g@65520": { slirp4netns: 2.8, pasta: 7.8 },
  "h2g@1500": { slirp4netns: 1.4, pasta: 0.8 },
};

export type Value =
  | { kind: "num"; median: number; samples: number[]; failures: string[] }
  | { kind: "fail"; reason: string }
  | { kind: "none"; reason: string };

/** Median of the successful samples; a failure only when every run failed. */
export function aggregate(samples: Sample[]): Value {
  const nums = samples.filter((s) => s.ok).map((s) => (s as { value: number }).value);
  const failures = samples.filter((s) => !s.ok).map((s) => (s as { reason: string }).reason);
  if (nums.length === 0) return { kind: "fail", reason: failures[0] ?? "no sample" };
  const sorted = [...nums].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { kind: "num", median, samples: nums, failures };
}

/** All results: tool → "metric@mtu" → value. */
export type Results = Map<ToolName, Map<string, Value>>;

export const cellKey = (m: MetricKey, mtu: number) => `${m}@${mtu}`;

function fmtNum(x: number, digits: number): string {
  return digits === 0 ? String(Math.round(x)) : x.toFixed(digits);
}

function ratio(a: Value | undefined, b: Value | undefined): string {
  if (a?.kind !== "num" || b?.kind !== "num") return "-";
  if (b.median === 0) return "-";
  return `${(a.median / b.median).toFixed(2)}x`;
}

export interface TableInput {
  tools: ToolName[];
  mtus: number[];
  results: Results;
}

/** The text table plus its footnotes (failure reasons). */
export function renderTable({ tools, mtus, results }: TableInput): string {
  const notes: string[] = [];
  const noteFor = (reason: string) => {
    let i = notes.indexOf(reason);
    if (i < 0) i = notes.push(reason) - 1;
    return `fail[${i + 1}]`;
  };
  const peers = (["slirp4netns", "pasta"] as ToolName[]).filter((p) => tools.includes(p));
  const withRatios = tools.includes("slirpd") ? peers : [];
  const header = [
    "metric",
    "MTU",
    ...tools,
    ...withRatios.map((p) => `slirpd/${p}`),
    "ref s4n / pasta",
  ];
  const rows: string[][] = [];
  for (const m of METRICS) {
    for (const mtu of mtus) {
      const key = cellKey(m.key, mtu);
      const cells = tools.map((t) => {
        const v = results.get(t)?.get(key);
        if (!v) return "not run";
        if (v.kind === "num") {
          return fmtNum(v.median, m.digits) + (v.failures.length ? "*" : "");
        }
        if (v.kind === "fail") return noteFor(v.reason);
        return v.reason;
      });
      const ratios = withRatios.map((p) =>
        m.ratio ? ratio(results.get("slirpd")?.get(key), results.get(p)?.get(key)) : ""
      );
      const ref = REFERENCE[key];
      rows.push([
        `${m.label}${m.better === "higher" ? " ↑" : m.better === "lower" ? " ↓" : ""}`,
        String(mtu),
        ...cells,
        ...ratios,
        ref ? `${ref.slirp4netns} / ${ref.pasta}` : "",
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const r of rows) out.push(line(r));
  out.push("");
  out.push(
    "↑ higher is better, ↓ lower is better; ratios are slirpd/peer as is (none for counts).",
  );
  out.push("* = median of the runs that worked; some runs failed (see JSON).");
  if (notes.length) {
    out.push("");
    notes.forEach((n, i) => out.push(`[${i + 1}] ${n}`));
  }
  return out.join("\n");
}

/** Results as plain JSON: tool → metric@mtu → {median, samples} | {fail} | {none}. */
export function resultsJson(results: Results): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [tool, cells] of results) {
    out[tool] = {};
    for (const [k, v] of cells) {
      out[tool][k] = v.kind === "num"
        ? {
          median: v.median,
          samples: v.samples,
          ...(v.failures.length ? { failures: v.failures } : {}),
        }
        : v.kind === "fail"
        ? { fail: v.reason }
        : { none: v.reason };
    }
  }
  return out;
}

/** slirpd/peer ratios for the JSON record. */
export function ratiosJson(
  { tools, mtus, results }: TableInput,
): Record<string, Record<string, number | null>> {
  const out: Record<string, Record<string, number | null>> = {};
  if (!tools.includes("slirpd")) return out;
  for (const p of ["slirp4netns", "pasta"] as ToolName[]) {
    if (!tools.includes(p)) continue;
    const r: Record<string, number | null> = {};
    for (const m of METRICS.filter((m) => m.ratio)) {
      for (const mtu of mtus) {
        const k = cellKey(m.key, mtu);
        const a = results.get("slirpd")?.get(k);
        const b = results.get(p)?.get(k);
        r[k] = a?.kind === "num" && b?.kind === "num" && b.median !== 0
          ? Math.round((a.median / b.median) * 1000) / 1000
          : null;
      }
    }
    out[`slirpd/${p}`] = r;
  }
  return out;
}
