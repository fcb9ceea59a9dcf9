// -m ADDR (slirpnetstack) / --metrics: an HTTP endpoint with `/health` ("ok", as
// slirpnetstack's) and, slirpd's own, `/metrics` in the Prometheus text format. Everything is
// read from the counters the stack keeps anyway when a scrape comes: nothing on the packet
// path. Deno.serve runs on Deno's event loop, which the poller yields to (ffi/poller.ts).

import type { MetricsAddr } from "./config.ts";
import { formatMetrics, type MetricFamily, PROM_CONTENT_TYPE, type Sample } from "./prom.ts";
import type { Stack } from "../stack/mod.ts";
import type { FirewallStats } from "../firewall/policy.ts";

export class MetricsServer {
  private constructor(
    private readonly server: Deno.HttpServer,
    /** HOST:PORT (the real port when 0 was asked) or the socket path. */
    readonly where: string,
  ) {}

  /** Listens; throws with the reason when the address cannot be bound. */
  static start(addr: MetricsAddr, page: () => string): MetricsServer {
    const handler = (req: Request): Response => {
      const path = new URL(req.url).pathname;
      if (path === "/health") return new Response("ok");
      if (path === "/metrics") {
        return new Response(page(), { headers: { "content-type": PROM_CONTENT_TYPE } });
      }
      return new Response("404 page not found\n", { status: 404 });
    };
    const quiet = { onListen: () => {} };
    if (addr.kind === "unix") {
      const s = Deno.serve({ path: addr.path, ...quiet }, handler);
      return new MetricsServer(s, addr.path);
    }
    const s = Deno.serve({ hostname: addr.host, port: addr.port, ...quiet }, handler);
    const a = s.addr as Deno.NetAddr;
    const host = a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
    return new MetricsServer(s, `${host}:${a.port}`);
  }

  async close(): Promise<void> {
    await this.server.shutdown();
  }
}

const counter = (name: string, help: string, samples: Sample[]): MetricFamily => ({
  name,
  help,
  type: "counter",
  samples,
});
const gauge = (name: string, help: string, samples: Sample[]): MetricFamily => ({
  name,
  help,
  type: "gauge",
  samples,
});
const one = (value: number): Sample[] => [{ value }];

/** The /metrics page of a running stack. */
export function renderMetrics(stack: Stack, fw: FirewallStats): string {
  const c = stack.counters;
  const rss = Deno.memoryUsage().rss;
  const drops: Sample[] = [];
  for (const [k, v] of Object.entries(c)) {
    if (k.startsWith("drop") && typeof v === "number") {
      drops.push({ labels: { reason: k.slice(4, 5).toLowerCase() + k.slice(5) }, value: v });
    }
  }
  drops.push({ labels: { reason: "txQueueFull" }, value: c.txDrops });
  const tcp = stack.tcp.stats, udp = stack.udp.stats;
  const dns = stack.services?.dns?.stats;
  const fwds = stack.forwards.list();
  const byKind = new Map<string, number>();
  for (const f of fwds) {
    const k = `${f.dir}\0${f.network}`;
    byKind.set(k, (byKind.get(k) ?? 0) + 1);
  }
  const fwdBytes = stack.forwards.bytes();
  return formatMetrics([
    counter("slirpd_frames_total", "Ethernet frames on the guest link", [
      { labels: { direction: "in" }, value: c.framesIn },
      { labels: { direction: "out" }, value: c.framesOut },
    ]),
    counter("slirpd_bytes_total", "Ethernet bytes on the guest link", [
      { labels: { direction: "in" }, value: c.bytesIn },
      { labels: { direction: "out" }, value: c.bytesOut },
    ]),
    counter("slirpd_drops_total", "Frames or packets dropped, by reason", drops),
    gauge("slirpd_flows_open", "Flows open now, by protocol", [
      { labels: { proto: "tcp" }, value: stack.tcp.table.size },
      { labels: { proto: "udp" }, value: stack.udp.flows.size },
      { labels: { proto: "icmp" }, value: stack.ping.flows.size },
    ]),
    counter("slirpd_tcp_connections_total", "TCP connections by outcome", [
      { labels: { event: "created" }, value: tcp.opened + tcp.openedToGuest },
      { labels: { event: "established" }, value: tcp.established },
      { labels: { event: "refused" }, value: tcp.policyRefused + tcp.connectErrors },
      { labels: { event: "timeout" }, value: tcp.connectTimeouts },
      { labels: { event: "reset_sent" }, value: tcp.resetsSent },
      { labels: { event: "reset_received" }, value: tcp.resetsRcvd },
      { labels: { event: "closed" }, value: tcp.closed },
    ]),
    counter("slirpd_udp_flows_total", "UDP flows opened", one(udp.flowsOpened)),
    counter("slirpd_udp_datagrams_total", "UDP datagrams routed", [
      { labels: { direction: "from_guest" }, value: udp.fromGuest },
      { labels: { direction: "to_guest" }, value: udp.toGuest },
    ]),
    counter("slirpd_firewall_decisions_total", "Firewall decisions on new flows, by verdict", [
      { labels: { verdict: "allowed" }, value: fw.allowed },
      { labels: { verdict: "blocked", step: "deny" }, value: fw.blockedDeny },
      { labels: { verdict: "blocked", step: "sanity" }, value: fw.blockedSanity },
      { labels: { verdict: "blocked", step: "host" }, value: fw.blockedHost },
      { labels: { verdict: "blocked", step: "routed" }, value: fw.blockedRouted },
      { labels: { verdict: "blocked", step: "closed" }, value: fw.blockedClosed },
    ]),
    gauge(
      "slirpd_forwards",
      "Port forwards in the table, by direction and protocol",
      [...byKind].map(([k, value]) => {
        const [dir, network] = k.split("\0");
        return { labels: { dir, network }, value };
      }),
    ),
    counter("slirpd_forward_bytes_total", "Payload bytes carried by port forwards", [
      { labels: { dir: "local", direction: "to_guest" }, value: fwdBytes.localToGuest },
      { labels: { dir: "local", direction: "from_guest" }, value: fwdBytes.localFromGuest },
      { labels: { dir: "remote", direction: "to_host" }, value: fwdBytes.remoteToHost },
      { labels: { dir: "remote", direction: "from_host" }, value: fwdBytes.remoteFromHost },
    ]),
    counter("slirpd_dns_queries_total", "Queries to the DNS forwarder", one(dns?.queries ?? 0)),
    // Under --enable-sandbox there is no /proc to read it from (Deno reports 0): left out
    // rather than reported as zero.
    ...(rss > 0 ? [gauge("slirpd_resident_memory_bytes", "Resident set size", one(rss))] : []),
  ]);
}
