// The floor: the bench's own probes with no user-mode stack at all. The guest namespace gets
// a plain veth into the host namespace (10.0.2.100 → 10.0.2.2, routed to 192.0.2.1 there),
// so each connection and datagram costs only the two kernels' work and the probes' own.
// No tool can beat these figures on this machine: they bound what a target ratio can ask.
// (A TCP_CRR target of 1.5× the best peer is above this floor whenever that peer is within
// 1.5× of it.)

import { makeHostNet, makeNetns } from "../../tests/support/harness.ts";
import { crr, fail, iperf, rr, type Sample, startEcho } from "./measure.ts";

export interface Floor {
  crr: Sample;
  rrP50: Sample;
  udpG2h: Sample;
  udpH2g: Sample;
}

const GUEST_IF = "fl0";

/**
 * The floor at one MTU (`seconds` per iperf3 run, `crrMs` of TCP_CRR, as the cells). What it
 * makes goes to `keep` (the bench's cleanup scope: an interrupted bench disposes it).
 */
export async function measureFloor(
  mtu: number,
  seconds: number,
  crrMs: number,
  keep: <T extends AsyncDisposable>(x: T) => T,
): Promise<Floor> {
  const net = keep(await makeHostNet());
  const guest = keep(await makeNetns("bfloor"));
  try {
    // The veth is made in the host namespace with its peer in the guest's.
    await net.host.must([
      "ip",
      "link",
      "add",
      "flh0",
      "mtu",
      String(mtu),
      "type",
      "veth",
      "peer",
      "name",
      GUEST_IF,
      "mtu",
      String(mtu),
      "netns",
      guest.name,
    ]);
    await net.host.must(["ip", "addr", "add", "10.0.2.2/24", "dev", "flh0"]);
    await net.host.must(["ip", "link", "set", "flh0", "up"]);
    await guest.must(["ip", "addr", "add", "10.0.2.100/24", "dev", GUEST_IF]);
    await guest.must(["ip", "link", "set", GUEST_IF, "up"]);
    await guest.must(["ip", "route", "add", "default", "via", "10.0.2.2"]);
    await guest.exec(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
  } catch (e) {
    const s = fail(`floor setup: ${e instanceof Error ? e.message : e}`);
    return { crr: s, rrP50: s, udpG2h: s, udpH2g: s };
  }
  keep(await startEcho(net.host));
  const r = await rr(guest, 20_000, 10_000);
  const c = await crr(guest, crrMs);
  const up = await iperf(net.host, guest, GUEST_IF, seconds, false, true);
  const down = await iperf(net.host, guest, GUEST_IF, seconds, true, true);
  return { crr: c, rrP50: r.p50, udpG2h: up.gbps, udpH2g: down.gbps };
}

const show = (s: Sample) => (s.ok ? String(s.value) : "fail");

/** The floor rows under the main table (one line per MTU measured). */
export function renderFloor(floors: Map<number, Floor>): string {
  const head = "  MTU    TCP_CRR conn/s run 1  TCP_RR p50 µs  UDP g→h Gbit/s  UDP h→g Gbit/s";
  const lines = [...floors].map(([mtu, f]) =>
    `  ${String(mtu).padEnd(5)}  ${show(f.crr).padStart(20)}  ${show(f.rrP50).padStart(13)}  ${
      show(f.udpG2h).padStart(14)
    }  ${show(f.udpH2g).padStart(14)}`
  );
  return [head, ...lines].join("\n");
}

/** The same for the JSON record: per MTU, each value or its failure reason. */
export function floorJson(floors: Map<number, Floor>): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [mtu, f] of floors) {
    out[String(mtu)] = Object.fromEntries(
      Object.entries(f).map(([k, s]) => [k, s.ok ? s.value : { fail: s.reason }]),
    );
  }
  return out;
}
