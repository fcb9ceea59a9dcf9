// A tiny Prometheus text exposition (format 0.0.4) formatter for slirpd's -m endpoint.
// Upstream slirpnetstack serves only /health ("ok") and Go's /debug/pprof/ there; a
// /metrics page is slirpd's own addition, so only counters and gauges are supported.
//
// Output per family: "# HELP", "# TYPE", then one line per sample, families in the order
// given. Names are validated (a bad one is a programming error, so it throws); label
// values and HELP text are escaped as the format requires.

export type MetricType = "counter" | "gauge";

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

/** What to send as Content-Type with formatMetrics output. */
export const PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Formats families into exposition text (ends with a newline; "" for no families). */
export function formatMetrics(families: Iterable<MetricFamily>): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    if (!METRIC_NAME.test(f.name)) throw new Error(`prom: bad metric name "${f.name}"`);
    if (seen.has(f.name)) throw new Error(`prom: duplicate metric family "${f.name}"`);
    seen.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      if (f.type === "counter" && !(s.value >= 0)) {
        // Counters only go up from zero; a negative or NaN one is a bug upstream of us.
        throw new Error(`prom: counter ${f.name} has value ${s.value}`);
      }
      out.push(`${f.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    }
  }
  return out.length ? out.join("\n") + "\n" : "";
}

/** Go-style float text: integers plain, +Inf/-Inf/NaN spelled as Prometheus expects. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Object.is(v, -0) ? "-0" : String(v);
}

function formatLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL_NAME.test(k) || k.startsWith("__")) throw new Error(`prom: bad label name "${k}"`);
    parts.push(`${k}="${escapeLabel(v)}"`);
  }
  return parts.length ? `{${parts.join(",")}}` : "";
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/**
 * A minimal registry: counters and gauges keyed by a label set, rendered on demand. Kept
 * next to the formatter so the hot path is a Map lookup and an add, nothing else.
 */
export class Registry {
  #families = new Map<string, { help: string; type: MetricType; series: Map<string, Series> }>();

  counter(name: string, help: string): Metric {
    return this.#get(name, help, "counter");
  }
  gauge(name: string, help: string): Metric {
    return this.#get(name, help, "gauge");
  }

  /** Exposition text for every registered family, in registration order. */
  render(): string {
    const fams: MetricFamily[] = [];
    for (const [name, f] of this.#families) {
      fams.push({ name, help: f.help, type: f.type, samples: [...f.series.values()] });
    }
    return formatMetrics(fams);
  }

  #get(name: string, help: string, type: MetricType): Metric {
    if (!METRIC_NAME.test(name)) throw new Error(`prom: bad metric name "${name}"`);
    let f = this.#families.get(name);
    if (!f) this.#families.set(name, f = { help, type, series: new Map() });
    else if (f.type !== type) throw new Error(`prom: ${name} is already a ${f.type}`);
    return new Metric(type, f.series);
  }
}

interface Series {
  labels?: Record<string, string>;
  value: number;
}

export class Metric {
  #type: MetricType;
  #series: Map<string, Series>;

  constructor(type: MetricType, series: Map<string, Series>) {
    this.#type = type;
    this.#series = series;
  }

  /** Adds n (default 1); counters refuse negative steps. */
  inc(labels?: Record<string, string>, n = 1): void {
    if (this.#type === "counter" && !(n >= 0)) throw new Error(`prom: counter step ${n}`);
    this.#at(labels).value += n;
  }
  /** Gauges only. */
  set(labels: Record<string, string> | undefined, v: number): void {
    if (this.#type !== "gauge") throw new Error("prom: set() on a counter");
    this.#at(labels).value = v;
  }

  #at(labels?: Record<string, string>): Series {
    // Key on sorted pairs so {a,b} and {b,a} are one series.
    const key = labels ? JSON.stringify(Object.entries(labels).sort()) : "";
    let s = this.#series.get(key);
    if (!s) this.#series.set(key, s = { labels, value: 0 });
    return s;
  }
}
