// Forward targets given as DNS labels, with slirpnetstack's SRV extension (net.go
// FullResolve): `name@srv-PORT` asks the DNS server 127.0.0.1:PORT, `name@srv-HOST:PORT`
// (inside [...] in a forward spec, IPv6 as [::1]:PORT) asks HOST:PORT, for the SRV
// records of `name`; the first record after RFC 2782 ordering gives target and port.
//
// No DNS wire code here: Deno.resolveDns(name, "SRV", { nameServer: { ipAddr, port } })
// works in Deno 2.9.6 without --unstable flags (needs --allow-net) and returns
// { priority, weight, port, target } in answer order, target with its trailing dot,
// compression already resolved. Without a signal a dead server costs ~15 s, so every
// query here carries an AbortSignal.timeout.

export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export interface SrvLabel {
  /** The name whose SRV records are asked for, as written. */
  query: string;
  /** DNS server host (IP literal or name, IPv6 without brackets) and UDP port. */
  host: string;
  port: number;
  /** host:port as slirpnetstack prints it in errors ("127.0.0.1:8600", "[::1]:53"). */
  server: string;
}

export type ParsedLabel =
  | { kind: "plain"; name: string }
  | { kind: "srv"; srv: SrvLabel }
  | { kind: "error"; reason: string };

/**
 * Splits a forward-target label. No "@": a plain host name. Otherwise the part after the
 * first "@" must start with "srv-" (else `unknown dns type "..."`, upstream's message);
 * what follows is PORT (server 127.0.0.1) or HOST:PORT.
 */
export function parseSrvLabel(label: string): ParsedLabel {
  const at = label.indexOf("@");
  if (at < 0) return { kind: "plain", name: label };
  const query = label.slice(0, at), kind = label.slice(at + 1);
  if (!kind.startsWith("srv-")) return { kind: "error", reason: `unknown dns type "${kind}"` };
  let addr = kind.slice(4);
  if (!addr.includes(":")) addr = `127.0.0.1:${addr}`;
  let host: string, portText: string;
  if (addr.startsWith("[")) {
    const close = addr.indexOf("]");
    if (close < 0 || addr[close + 1] !== ":") {
      return { kind: "error", reason: `bad dns server address "${addr}"` };
    }
    host = addr.slice(1, close);
    portText = addr.slice(close + 2);
  } else {
    const colon = addr.lastIndexOf(":");
    host = addr.slice(0, colon);
    portText = addr.slice(colon + 1);
    // Go's Dial wants IPv6 in brackets; a bare "::1:53" is ambiguous, reject it too.
    if (host.includes(":")) return { kind: "error", reason: `bad dns server address "${addr}"` };
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535 || host === "" || query === "") {
    return { kind: "error", reason: `bad dns server address "${addr}"` };
  }
  return { kind: "srv", srv: { query, host, port: Number(portText), server: addr } };
}

/**
 * RFC 2782 order, as Go's LookupSRV returns it: priority ascending, then within each
 * priority a weighted shuffle (weight-0 records last unless alone). Sorts a copy.
 */
export function orderSrv(records: SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const out = records.slice().sort((a, b) => a.priority - b.priority);
  for (let i = 0; i < out.length;) {
    let j = i;
    while (j < out.length && out[j].priority === out[i].priority) j++;
    let sum = 0;
    for (let k = i; k < j; k++) sum += out[k].weight;
    for (let k = i; k < j - 1 && sum > 0; k++) {
      let s = Math.floor(random() * sum);
      for (let m = k; m < j; m++) {
        s -= out[m].weight;
        if (s < 0) {
          sum -= out[m].weight;
          [out[k], out[m]] = [out[m], out[k]];
          break;
        }
      }
    }
    i = j;
  }
  return out;
}

export interface ResolveOptions {
  /** Per query (SRV, A, AAAA each). Default 3000, like upstream's dial timeout. */
  timeoutMs?: number;
  /** Injected for tests. */
  resolveDns?: typeof Deno.resolveDns;
  random?: () => number;
}

export interface Resolved {
  ip: string;
  /** SRV port, or 0 when the label was plain (or the record said 0): keep the spec's port. */
  port: number;
}

/**
 * Resolves a target label like upstream FullResolve: SRV at the given server, then the
 * target's A (else AAAA) at that same server, then, failing that, A/AAAA through the
 * system resolver (which reads /etc/hosts: the upstream tests point SRV at "localhost").
 * Plain labels go to the system resolver, IPv4 first. Throws Error with upstream's text.
 */
export async function resolveLabel(label: string, opts: ResolveOptions = {}): Promise<Resolved> {
  const p = parseSrvLabel(label);
  if (p.kind === "error") throw new Error(p.reason);
  if (p.kind === "plain") return { ip: await lookupHost(p.name, undefined, opts), port: 0 };
  const { srv } = p;
  const resolve = opts.resolveDns ?? Deno.resolveDns;
  const timeout = opts.timeoutMs ?? 3000;
  let records: SrvRecord[] = [];
  let nameServer: { ipAddr: string; port: number } | undefined;
  try {
    nameServer = { ipAddr: await serverIp(srv.host, opts), port: srv.port };
    records = await resolve(srv.query, "SRV", { nameServer, signal: AbortSignal.timeout(timeout) });
  } catch { /* reported below, like upstream: one message for every failure */ }
  if (!nameServer || records.length === 0) {
    throw new Error(`failed to lookup SRV "${srv.query}" on "${srv.server}"`);
  }
  const best = orderSrv(records, opts.random)[0];
  const target = best.target.replace(/\.$/, "");
  let ip: string;
  try {
    ip = await lookupHost(target, nameServer, opts);
  } catch {
    ip = await lookupHost(target, undefined, opts);
  }
  return { ip, port: best.port };
}

/** First A record, else first AAAA; nameServer undefined means the system resolver. */
async function lookupHost(
  name: string,
  nameServer: { ipAddr: string; port: number } | undefined,
  opts: ResolveOptions,
): Promise<string> {
  const resolve = opts.resolveDns ?? Deno.resolveDns;
  const timeout = opts.timeoutMs ?? 3000;
  for (const type of ["A", "AAAA"] as const) {
    try {
      const r = await resolve(name, type, { nameServer, signal: AbortSignal.timeout(timeout) });
      if (r.length > 0) return r[0];
    } catch { /* try the next type */ }
  }
  throw new Error(`lookup ${name}: no such host`);
}

/** The DNS server may be named by host name; Deno's nameServer needs an IP. */
async function serverIp(host: string, opts: ResolveOptions): Promise<string> {
  if (/^[\d.]+$/.test(host) || host.includes(":")) return host;
  return await lookupHost(host, undefined, opts);
}
