// The daemon: build the stack around the guest's tap, run the event loop until a signal.
//
// Order matters:
//  1. the tap (daemon/attach.ts, called by main.ts before this module is even loaded: scripts
//     touch the tap milliseconds after starting slirp4netns). Everything else lives in the
//     host netns.
//  2. the poller, the firewall, the stack, forwards and the API socket (each registered with
//     the one Teardown as soon as it exists, so every exit path undoes exactly what was made).
//  3. readiness (`[+] #PID Slirpnetstack started` on stderr, `--ready-fd`), then the loop.
//  4. SIGINT/SIGTERM stop the loop; sockets and the tap are closed; exit 0.

import type { Config } from "./config.ts";
import type { Tap } from "../ffi/tap.ts";
import { EPOLLIN, Poller } from "../ffi/poller.ts";
import { WatchedFd, writeAndClose } from "../ffi/fd.ts";
import { type NetPlan, netPlanFrom } from "../stack/base/netplan.ts";
import { Stack } from "../stack/mod.ts";
import { openFirewall, type PreparedFirewall, prepareFirewall } from "../firewall/start.ts";
import { FlagValueError } from "../firewall/rules.ts";
import { sanitySet } from "../firewall/sanity.ts";
import { ApiSocket } from "./api_socket.ts";

/** What slirp4netns' --enable-sandbox / --enable-seccomp would do, and why slirpd does not. */
const ACCEPTED_ONLY: Record<string, string> = {
  "enable-sandbox": "no mount-namespace sandbox is made (the packet path is memory-safe " +
    "TypeScript; run slirpd as an unprivileged user to confine it)",
  "enable-seccomp": "no seccomp filter is installed (the packet path is memory-safe " +
    "TypeScript; run slirpd as an unprivileged user to confine it)",
};

/** Undo steps run last-in first-out, each once, even when an earlier one throws. */
class Teardown {
  #steps: (() => void)[] = [];

  add(step: () => void): void {
    this.#steps.push(step);
  }

  run(): void {
    for (let s = this.#steps.pop(); s !== undefined; s = this.#steps.pop()) {
      try {
        s();
      } catch (e) {
        console.error(`[!] teardown: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
}

/** The parts of a running daemon. */
interface Parts {
  plan: NetPlan;
  poller: Poller;
  stack: Stack;
  fw: ReturnType<typeof openFirewall>;
}

/** Poller, firewall and stack around the tap, each registered for teardown as soon as it exists. */
function build(
  cfg: Config,
  tap: Tap,
  prepared: PreparedFirewall,
  down: Teardown,
  fwLog: (line: string) => void,
): Parts {
  const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
  const log = cfg.quiet ? () => {} : (line: string) => console.log(line);
  const poller = new Poller();
  down.add(() => poller.close());
  const fw = openFirewall(cfg, prepared, plan, poller, fwLog);
  down.add(() => fw.close());
  const stack = new Stack({
    plan,
    mtu: cfg.mtu,
    tap,
    poller,
    policy: fw.firewall.policy,
    log,
    quiet: cfg.quiet,
    connectTimeoutMs: cfg.connectTimeoutMs,
    udpTimeoutMs: cfg.udpTimeoutMs,
    maxUdpFlows: cfg.maxUdpFlows,
    outbound4: prepared.outbound4,
    outbound6: prepared.outbound6,
    // slirp4netns form: the gateway is the host's loopback (or unreachable with
    // --disable-host-loopback); slirpnetstack form: only -R forwards reach the host.
    hostLoopback: cfg.form !== "slirp4netns"
      ? undefined
      : cfg.disableHostLoopback
      ? "unreachable"
      : "redirect",
    services: { dns: cfg.dns, resolvConf: cfg.resolvConf, configured: cfg.configure },
    dnsTtlMs: cfg.dnsTtlMs,
    // A forwarded client's address is the source the guest sees, unless it is on the sanity
    // block list (127.0.0.1, the guest's own network, ...): then the gateway's.
    forwardSourceOk: ((s) => (f, a) => !s.contains(f, a))(sanitySet(plan)),
  });
  down.add(() => stack.close());
  poller.add(tap, EPOLLIN, () => stack.drainTap());
  down.add(() => poller.remove(tap));
  return { plan, poller, stack, fw };
}

/**
 * Port forwards and the API socket, before readiness: one that cannot be set up stops slirpd
 * with its line ("[!] Failed to listen on tcp://127.0.0.1:8080: ...") and exit 1.
 */
async function openForwards(cfg: Config, p: Parts, down: Teardown): Promise<boolean> {
  try {
    for (const spec of cfg.forwards) await p.stack.forwards.add(spec);
    if (cfg.apiSocket !== null) {
      const api = ApiSocket.open(cfg.apiSocket, p.stack.forwards, p.plan, (l) => console.error(l));
      down.add(() => api.close()); // (removes the socket file)
    }
    return true;
  } catch (e) {
    console.error(`[!] ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

/** Readiness, then the event loop until SIGINT, SIGTERM or --exit-fd. */
async function serve(cfg: Config, p: Parts, exitFd: WatchedFd | null, down: Teardown) {
  const stop = () => p.poller.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  down.add(() => {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  });
  // --exit-fd: readable (data or EOF) or hung up: the parent wants slirpd gone.
  if (exitFd !== null) {
    p.poller.add(exitFd, EPOLLIN, stop);
    down.add(() => p.poller.remove(exitFd));
  }
  // The fd first: whoever waits for either signal may act at once.
  if (cfg.readyFd !== null) writeAndClose(cfg.readyFd, "1", "--ready-fd");
  console.error(`[+] #${Deno.pid} Slirpnetstack started`);
  await p.poller.run(() => p.stack.tick());
}

/** The stop line: every counter, for whoever reads the log after the fact. */
function stopLine(p: Parts): string {
  const s = p.stack;
  return `[-] #${Deno.pid} Slirpnetstack stopped: ${
    JSON.stringify({
      ...s.counters.snapshot(),
      tcp: s.tcp.snapshot(),
      udp: s.udp.snapshot(),
      ping: s.ping.snapshot(),
      services: s.services?.snapshot(),
      firewall: p.fw.firewall.stats,
    })
  }`;
}

/** The firewall's lookups (rule names, --outbound-addr interfaces); a bad one: exit code 2. */
export async function prepare(cfg: Config): Promise<PreparedFirewall | number> {
  try {
    return await prepareFirewall(cfg, fwLogFor(cfg));
  } catch (e) {
    if (!(e instanceof FlagValueError)) throw e;
    console.error(`slirpd: ${e.message}`);
    return 2;
  }
}

/**
 * Firewall lines (resolved names, blocked flows) go to stderr: stdout carries only the
 * connection lines scripts written for slirpnetstack read one by one.
 */
function fwLogFor(cfg: Config): (line: string) => void {
  return cfg.quiet ? () => {} : (line: string) => console.error(line);
}

/**
 * The daemon around a tap already attached (daemon/attach.ts; main.ts makes it first, while
 * this module and the stack are still loading). Owns the tap from here on: every exit closes it.
 * `prepared`: the firewall's lookups when main.ts did them before the tap (see attach.ts).
 */
export async function runDaemon(
  cfg: Config,
  tap: Tap,
  prepared?: PreparedFirewall,
): Promise<number> {
  const down = new Teardown();
  down.add(() => tap.close());
  try {
    const fwLog = fwLogFor(cfg);
    if (prepared === undefined) {
      const p = await prepare(cfg);
      if (typeof p === "number") return p;
      prepared = p;
    }
    for (const flag of cfg.acceptedOnly) {
      console.error(
        `[!] --${flag} is accepted for slirp4netns and ignored: ${ACCEPTED_ONLY[flag]}`,
      );
    }
    const exitFd = cfg.exitFd === null ? null : new WatchedFd(cfg.exitFd, "--exit-fd");
    if (exitFd !== null) down.add(() => exitFd.close());
    const parts = build(cfg, tap, prepared, down, fwLog);
    if (!(await openForwards(cfg, parts, down))) return 1;
    await serve(cfg, parts, exitFd, down);
    down.run();
    if (!cfg.quiet) console.error(stopLine(parts));
    return 0;
  } finally {
    down.run();
  }
}
