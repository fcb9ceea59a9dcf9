// The daemon: build the stack around the guest's tap, run the event loop until a signal.
//
// Order matters:
//  1. the tap (daemon/attach.ts, called by main.ts before this module is even loaded: scripts
//     touch the tap milliseconds after starting slirp4netns). Everything else lives in the
//     host netns.
//  2. the poller, the firewall, the stack, forwards and the API socket (each registered with
//     the one Teardown as soon as it exists, so every exit path undoes exactly what was made).
//  3. readiness (`[+] #PID Slirpnetstack started` on stderr, `--ready-fd`, SIGWINCH to the
//     parent), then the loop.
//  4. SIGINT/SIGTERM (`[-] #PID Slirpnetstack closing`) stop the loop; sockets and the tap are
//     closed; exit 0.
//
// slirpnetstack's lines and exit codes, which scripts wait for and test (README):
//   [ ] #PID Running metrics on HOST:PORT      (-m; exit 254 when it cannot listen)
//   [.] Joininig netns PATH                    (sic, upstream's spelling; not with -fd)
//   [.] Opening tun interface IFNAME           (not with -fd)
//   [!] Failed to open PCAP file: ERR          (exit 250)
//   [!] Failed to listen on tcp://...: ERR     (-L; exit 247)
//   [!] Failed to resolve ... : ERR            (-R bind or target; exit 246)
//   [+] #PID Slirpnetstack started
//   [-] #PID Slirpnetstack closing             (then "[ ] #PID Stopping metrics" with -m)
// Signal listeners are installed first thing, so a SIGTERM that arrives while slirpd is
// starting or failing never turns its exit into a signal death: it stops at the next step.

import type { Config } from "./config.ts";
import type { Tap } from "../ffi/tap.ts";
import { EPOLLIN, Poller } from "../ffi/poller.ts";
import { raiseFdLimit, WatchedFd, writeAndClose } from "../ffi/fd.ts";
import { NetnsWatch } from "../ffi/nswatch.ts";
import { attachGuest } from "./attach.ts";
import { NetnsSocketPool } from "../ffi/nssock.ts";
import { canReturnHome, netnsOwner } from "../ffi/userns.ts";
import { type NetPlan, netPlanFrom } from "../stack/base/netplan.ts";
import { Stack } from "../stack/mod.ts";
import { openFirewall, type PreparedFirewall, prepareFirewall } from "../firewall/start.ts";
import { FlagValueError } from "../firewall/rules.ts";
import { sanitySet } from "../firewall/sanity.ts";
import { ApiSocket } from "./api_socket.ts";
import { parentPid, setParentDeathSignal, SIGTERM } from "../ffi/process.ts";
import { LINKTYPE_ETHERNET, PCAP_MAX_SNAPLEN, PcapWriter } from "../stack/link/pcap.ts";
import { ForwardError } from "../stack/forwards/mod.ts";
import type { MetricsServer } from "./metrics.ts";
import { watchMemory } from "./memory.ts";

/** slirpnetstack's exit codes (Go's os.Exit(-n)), for the failures scripts test for. */
export const EXIT_METRICS = 254;
export const EXIT_PCAP = 250;
export const EXIT_LISTEN = 247;
export const EXIT_RESOLVE = 246;

/**
 * Spliced forwards need sockets born in the guest netns: ffi/nssock.ts makes them in batches
 * (one short withNetns window per batch) and they are connected from here. Rootless, slirpd
 * cannot setns there (ffi/userns.ts) and a helper per connection would cost more than it
 * saves: no splicing, the connections go through the tap.
 */
function guestSockets(cfg: Config): NetnsSocketPool | null {
  // (Made even with --forward-splice=never: the API's add_hostfwd may ask for it per forward.)
  // Not with -fd (no netns), nor confined: --enable-sandbox drops the capability a setns
  // needs and hides /proc, --enable-seccomp denies setns itself.
  let why = "";
  if (cfg.linkFd !== null) why = "-fd has no guest namespace";
  else if (cfg.sandbox || cfg.seccomp) why = "confined (--enable-sandbox/--enable-seccomp)";
  else {
    try {
      // The setns windows need the way back (ffi/userns.ts canReturnHome) and no user
      // namespace to enter (rootless: a helper per connection would cost more than it saves).
      if (!canReturnHome() || netnsOwner(cfg.netns).foreign) why = "rootless";
    } catch {
      why = "cannot tell whether a setns window is possible";
    }
  }
  if (why !== "") {
    if (cfg.forwardSplice === "always") {
      console.error(`[!] --forward-splice=always: ${why}, forwards go through the tap`);
    }
    return null;
  }
  return new NetnsSocketPool(cfg.netns);
}

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

/**
 * How `slirpd -- CMD` (daemon/command.ts) embeds the daemon: CMD owns stdout and the signals,
 * so connection lines go to stderr, there is no readiness or stop line, and a signal goes to
 * `signal` (which passes it to CMD) instead of stopping the loop.
 */
export interface Embedding {
  /** The guest is served (in place of the readiness line); `stop` ends the loop. */
  ready(stop: () => void): void;
  /** SIGINT, SIGTERM or SIGHUP arrived. */
  signal(sig: Deno.Signal): void;
}

const EMBEDDED_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** The parts of a running daemon. */
interface Parts {
  plan: NetPlan;
  poller: Poller;
  stack: Stack;
  fw: ReturnType<typeof openFirewall>;
  tap: Tap;
}

/**
 * SIGINT/SIGTERM, listened to from the start to the exit: a signal during start-up is
 * remembered (the loop then stops as soon as it would start), later ones stop the loop. The
 * listeners stay until the process exits, so no signal between a failure line and the exit
 * can kill slirpd with its default action.
 */
class Stopper {
  requested = false;
  #onStop: (() => void) | null = null;
  readonly #handler = () => {
    if (!this.requested) console.error(`[-] #${Deno.pid} Slirpnetstack closing`);
    this.requested = true;
    this.#onStop?.();
  };

  /** Embedded (`-- CMD`): the signals go to the embedding (it passes them on to CMD). */
  constructor(embed?: Embedding) {
    if (embed) {
      for (const sig of EMBEDDED_SIGNALS) Deno.addSignalListener(sig, () => embed.signal(sig));
      return;
    }
    Deno.addSignalListener("SIGINT", this.#handler);
    Deno.addSignalListener("SIGTERM", this.#handler);
  }

  /** What a signal does from now on (run at once if one came already). */
  onStop(fn: () => void): void {
    this.#onStop = fn;
    if (this.requested) fn();
  }

  /** Once the loop has ended: a late signal only marks the stop (the exit is near). */
  detach(): void {
    this.#onStop = null;
  }
}

/** A start-up failure with slirpnetstack's exit code; the line is already printed. */
class StartFailure extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * The tap (unless main.ts made it), poller, firewall and stack, each registered for teardown
 * as soon as it exists.
 */
async function build(
  cfg: Config,
  prepared: PreparedFirewall,
  down: Teardown,
  fwLog: (line: string) => void,
  embedded: boolean,
  early: Tap | undefined,
): Promise<Parts> {
  const plan = netPlanFrom(cfg.cidr4, cfg.cidr6);
  const log = cfg.quiet
    ? () => {}
    : embedded
    ? (line: string) => console.error(line)
    : (line: string) => console.log(line);
  // The tap: made by main.ts before this module loaded (daemon/attach.ts), or here.
  const tap = early ?? await attachGuest(cfg, embedded);
  if (early === undefined) down.add(() => tap.close());
  if (cfg.exitWithParent) {
    // After the netns work (slirpnetstack: the setting does not survive its namespace dance).
    setParentDeathSignal(SIGTERM);
    if (parentPid() !== initialParent) Deno.kill(Deno.pid, "SIGTERM"); // died before the call
  }
  const poller = new Poller();
  down.add(() => poller.close());
  const fw = openFirewall(cfg, prepared, plan, poller, fwLog);
  down.add(() => fw.close());
  const nsSockets = guestSockets(cfg);
  if (nsSockets !== null) down.add(() => nsSockets.close());
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
    forwardSplice: cfg.forwardSplice,
    guestSocket: nsSockets === null
      ? undefined
      : (f: 4 | 6, a: Uint8Array, p: number) => nsSockets.connect(f, a, p),
  });
  down.add(() => stack.close());
  poller.add(tap, EPOLLIN, () => stack.drainTap());
  down.add(() => poller.remove(tap));
  if (cfg.pcap !== null) openPcap(cfg, cfg.pcap, stack, down);
  return { plan, poller, stack, fw, tap };
}

/** -pcap: every frame from here on, until -pcap-max-bytes (then one line, and no more). */
function openPcap(cfg: Config, path: string, stack: Stack, down: Teardown): void {
  let w: PcapWriter;
  try {
    w = PcapWriter.open(path, {
      linkType: LINKTYPE_ETHERNET,
      // Whole frames: TSO super-frames from the guest are up to 64 KiB plus headers.
      snapLen: PCAP_MAX_SNAPLEN,
      maxBytes: cfg.pcapMaxBytes,
      onStop: (s) => {
        stack.tx.capture = null; // off the path again
        console.error(
          s.reason === "cap"
            ? `[!] -pcap ${path}: stopped at ${s.bytes} bytes (-pcap-max-bytes ${cfg.pcapMaxBytes})`
            : `[!] -pcap ${path}: write failed, capture stopped: ${s.error}`,
        );
      },
    });
  } catch (e) {
    console.error(`[!] Failed to open PCAP file: ${e instanceof Error ? e.message : e}`);
    throw new StartFailure(EXIT_PCAP);
  }
  if (w.stopped === null) stack.tx.capture = w;
  down.add(() => {
    stack.tx.capture = null;
    w.close();
  });
}

/**
 * Port forwards and the API socket, before readiness: one that cannot be set up stops slirpd
 * with its line and slirpnetstack's code: "[!] Failed to listen on tcp://127.0.0.1:8080: ..."
 * exit 247 (-L), "[!] Failed to resolve ..." exit 246 (-R); other -R failures (a taken bind
 * address) and the API socket: exit 1.
 */
async function openForwards(cfg: Config, p: Parts, down: Teardown): Promise<number> {
  try {
    for (const spec of cfg.forwards) {
      try {
        await p.stack.forwards.add(spec);
      } catch (e) {
        if (!(e instanceof ForwardError)) throw e;
        console.error(`[!] ${e.message}`);
        if (spec.dir === "local") return EXIT_LISTEN;
        return e.unresolved ? EXIT_RESOLVE : 1;
      }
    }
    if (cfg.apiSocket !== null) {
      const api = ApiSocket.open(cfg.apiSocket, p.stack.forwards, p.plan, (l) => console.error(l));
      down.add(() => api.close()); // (removes the socket file)
    }
    return 0;
  } catch (e) {
    console.error(`[!] ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

/** Exit code when the guest's network namespace is gone (README). */
export const EXIT_NETNS_GONE = 3;

/**
 * Readiness, then the event loop until SIGINT, SIGTERM, --exit-fd or the guest namespace's
 * end; returns the exit code.
 */
async function serve(
  cfg: Config,
  p: Parts,
  exitFd: WatchedFd | null,
  down: Teardown,
  stopper: Stopper,
  embed: Embedding | undefined,
  watch: NetnsWatch | null,
): Promise<number> {
  let code = 0;
  const stop = () => p.poller.stop();
  stopper.onStop(stop);
  // --exit-fd: readable (data or EOF) or hung up: the parent wants slirpd gone.
  if (exitFd !== null) {
    p.poller.add(exitFd, EPOLLIN, stop);
    down.add(() => p.poller.remove(exitFd));
  }
  // The guest namespace's last process exited (ffi/nswatch.ts): nothing can use the tap any
  // more, and slirpd's own descriptors are what keeps the namespace alive.
  if (watch !== null) {
    const onExit = () => {
      p.poller.remove(watch);
      const pid = watch.pid;
      const r = watch.check();
      if (r === "moved") p.poller.add(watch, EPOLLIN, onExit);
      else if (r === "unknown") {
        console.error(
          `[!] the guest namespace's process ${pid} exited; whether anything else still uses ` +
            `${cfg.netns} cannot be seen without /proc (--enable-sandbox): staying up`,
        );
      } else if (r === "gone") {
        console.error(
          `[!] guest network namespace ${cfg.netns} is gone (its last process, PID ${pid}, ` +
            `exited): stopping (exit ${EXIT_NETNS_GONE})`,
        );
        code = EXIT_NETNS_GONE;
        stop();
      }
    };
    p.poller.add(watch, EPOLLIN, onExit);
    down.add(() => p.poller.remove(watch));
  }
  // After a burst, the heap's garbage goes back once the guest is quiet (daemon/memory.ts).
  const memory = watchMemory(
    () => p.stack.counters.framesIn,
    () => p.stack.tcp.connections + p.stack.udp.flows.size,
    p.stack.wheel,
  );
  down.add(() => memory.stop());
  // The fd first: whoever waits for either signal may act at once.
  if (cfg.readyFd !== null) writeAndClose(cfg.readyFd, "1", "--ready-fd");
  if (embed) embed.ready(stop);
  else console.error(`[+] #${Deno.pid} Slirpnetstack started`);
  // slirpnetstack's second readiness signal. Not to init (pid 1) or a subreaper that
  // adopted slirpd: SIGWINCH means something else to them.
  const ppid = parentPid();
  if (!embed && ppid > 1 && ppid === initialParent) {
    try {
      Deno.kill(ppid, "SIGWINCH");
    } catch { /* the parent is gone or not ours to signal */ }
  }
  await p.poller.run(() => {
    // -fd: a write found the other end closed (a datagram socket says so only then).
    if (p.tap.peerGone) {
      console.error(`[-] #${Deno.pid} -fd ${cfg.linkFd}: the other end is closed`);
      p.tap.peerGone = false;
      stop();
    }
    memory.poke();
    return p.stack.tick();
  });
  return code;
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

/** The parent when slirpd started (-exit-with-parent, SIGWINCH). */
const initialParent = parentPid();

/** What main.ts did before this module was loaded: the tap, maybe the firewall's lookups. */
export interface Early {
  tap: Tap;
  prepared?: PreparedFirewall;
}

/**
 * The daemon. `embed`: run for `-- CMD` (daemon/command.ts). `early`: the tap main.ts made
 * first (scripts touch it milliseconds after starting slirp4netns); the daemon owns it from
 * here on, and every exit closes it.
 */
export async function runDaemon(cfg: Config, embed?: Embedding, early?: Early): Promise<number> {
  raiseFdLimit(); // one host socket per guest connection: 10k connections need 10k descriptors
  const stopper = new Stopper(embed);
  try {
    if (early !== undefined) {
      try {
        return await runStopping(cfg, stopper, embed, early);
      } finally {
        early.tap.close();
      }
    }
    return await runStopping(cfg, stopper, embed);
  } catch (e) {
    if (e instanceof StartFailure) return e.code;
    throw e;
  } finally {
    stopper.detach();
  }
}

/**
 * -m: first of all, as slirpnetstack (its line comes before the netns lines). Loaded only
 * when asked for (start-up time is module loading).
 */
async function startMetrics(
  cfg: Config,
  parts: { p: Parts | null },
  down: Teardown,
): Promise<void> {
  if (cfg.metrics === null) return;
  const { MetricsServer, renderMetrics } = await import("./metrics.ts");
  let m: MetricsServer;
  try {
    m = MetricsServer.start(
      cfg.metrics,
      () => parts.p === null ? "" : renderMetrics(parts.p.stack, parts.p.fw.firewall.stats),
    );
  } catch (e) {
    console.error(`[!] Failed to start metrics: ${e instanceof Error ? e.message : e}`);
    throw new StartFailure(EXIT_METRICS);
  }
  console.error(`[ ] #${Deno.pid} Running metrics on ${m.where}`);
  down.add(() => {
    console.error(`[ ] #${Deno.pid} Stopping metrics`);
    void m.close();
  });
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

async function runStopping(
  cfg: Config,
  stopper: Stopper,
  embed?: Embedding,
  early?: Early,
): Promise<number> {
  const fwLog = fwLogFor(cfg);
  // Rule names and --outbound-addr interfaces before the guest is touched (unless main.ts
  // made the tap first: then there were none, or it asked them itself).
  let prepared = early?.prepared;
  if (prepared === undefined) {
    const p = await prepare(cfg);
    if (typeof p === "number") return p;
    prepared = p;
  }
  const down = new Teardown();
  try {
    const exitFd = cfg.exitFd === null ? null : new WatchedFd(cfg.exitFd, "--exit-fd");
    if (exitFd !== null) down.add(() => exitFd.close());
    const holder: { p: Parts | null } = { p: null };
    await startMetrics(cfg, holder, down);
    const parts = await build(cfg, prepared, down, fwLog, embed !== undefined, early?.tap);
    holder.p = parts;
    const failed = await openForwards(cfg, parts, down);
    if (failed !== 0) return failed;
    // Opened while /proc is still visible (the sandbox hides it).
    const watch = cfg.linkFd === null ? NetnsWatch.open(cfg.netns) : null;
    if (watch !== null) down.add(() => watch.close());
    // Everything that needs privileges is done: confine before the guest may speak.
    // (Loaded only when asked for: start-up time is module loading.)
    if (cfg.sandbox || cfg.seccomp) {
      (await import("./confine.ts")).confine(cfg, (line) => console.error(line));
    }
    const code = await serve(cfg, parts, exitFd, down, stopper, embed, watch);
    down.run();
    if (!cfg.quiet && !embed) console.error(stopLine(parts));
    return code;
  } finally {
    down.run();
  }
}
