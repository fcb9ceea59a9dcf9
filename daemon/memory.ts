// Giving memory back after a burst. A burst of short connections leaves slirpd's memory grown
// by garbage (connections, sockets, timers that are gone): V8 frees its heap only when
// something allocates again, and glibc keeps freed pages in its arenas; an idle slirpd
// allocates nothing, so RSS stayed 130 MB above its start after 20k connections. So once the
// guest has been quiet for a whole interval after a burst, slirpd runs a full collection and
// malloc_trim(0), which hand the pages back (and up to three more times while the guest stays
// quiet and what the burst opened keeps ending: MEMORY_SETTLE_ROUNDS). Never on the packet
// path: a timer of the stack's timer wheel, armed only after MEMORY_ARM_FRAMES guest frames, so
// an idle slirpd has no timer of its own waking it. (Not a Deno timer: the process's first
// setTimeout loads Deno's Node timers, ~4.5 ms, which would land on the first packets after
// start-up.)
//
// A burst is either many frames (MEMORY_BURST_FRAMES since the last collection) or few frames
// that cost much: a SYN flood of 3,000 frames opens 3,000 host connections and grew RSS by
// 15 MB that stayed (the frame count alone never called it a burst). So RSS growth since the
// last collection counts too (MEMORY_GROWTH_BYTES). Either needs guest activity since the last
// collection: an idle slirpd that holds what it holds (10k open connections) is not collected
// again and again. A quiet spell in an interactive session costs nothing: RSS did not grow.
// What remains above the start after a burst is the runtime's code pages that the burst ran
// for the first time (file-backed and clean: ~7 MB); the heaps come back within ~1-2 MB.

import { mallocTrim } from "../ffi/fd.ts";
import { Timer, type TimerWheel } from "../stack/flow/timers.ts";

/**
 * How often activity is looked at while the check is armed, ms: a collection comes 2–4 s after
 * the guest went quiet, so its one-time cost (a full collection and malloc_trim: tens of ms of
 * CPU after a large burst) is paid right after the burst, not later in what looks like idle
 * time. Frames since the last collection that make a burst: MEMORY_BURST_FRAMES.
 */
export const MEMORY_CHECK_MS = 2_000;
export const MEMORY_BURST_FRAMES = 20_000;
/**
 * Guest frames that arm the check (no timer before): few enough that a SYN flood of 3,000
 * frames is looked at (its RSS growth makes it a burst), many enough that an interactive
 * session's trickle rarely wakes slirpd for it.
 */
export const MEMORY_ARM_FRAMES = 1_000;
/**
 * Collections after the first one, one per interval while the guest stays quiet: what a burst
 * left may outlive the guest's last frame by seconds (the half-open connections of a SYN flood
 * are given up ~7 s later, a churn's connections leave TIME-WAIT 5 s after it), and only a
 * collection after that gives it back. (Skipping them when the first collection had already
 * given back most left 8 MB of heap after 20k connections, once the check came 2 s after the
 * burst.) A round collects only when at least MEMORY_SETTLE_GONE connections and flows have
 * ended since the last collection: otherwise there is nothing new to give back, and each
 * collection costs ~20 ms of CPU (two full mark-compacts; measured after 30k connections:
 * the rounds after the first freed nothing, 7.9 → 7.9 MB, and were most of the "idle" CPU).
 */
export const MEMORY_SETTLE_ROUNDS = 3;
/** Connections and flows ended since the last collection that make a settle round collect. */
export const MEMORY_SETTLE_GONE = 100;
/** RSS grown since the last collection (or the start) that makes a burst, bytes. */
export const MEMORY_GROWTH_BYTES = 8 << 20;

/** Resident memory now; 0 where it cannot be read (no /proc under --enable-sandbox). */
function residentBytes(): number {
  try {
    return Deno.memoryUsage().rss;
  } catch {
    return 0;
  }
}

/**
 * V8's gc(), exposed at run time (node:v8 and node:vm are loaded only then: they cost a few MB
 * of RSS at start); null where that is not possible.
 */
async function exposeGc(): Promise<(() => void) | null> {
  try {
    const v8 = (await import("node:v8")).default;
    const vm = (await import("node:vm")).default;
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    return typeof gc === "function" ? gc as () => void : null;
  } catch {
    return null;
  }
}

/** The check: `poke` from the event loop's tick (cheap), `stop` at shutdown. */
export interface MemoryWatch {
  poke(): void;
  stop(): void;
}

/**
 * Watches `frames` (what the guest sent, frames in) and `live` (connections and flows open).
 * No timer runs until the guest has been active: `poke`, called by the event loop after each
 * round, only compares two numbers and arms the check once MEMORY_ARM_FRAMES came in since it
 * last looked. The check then runs every
 * MEMORY_CHECK_MS until an interval passed without a frame; then it collects if that activity
 * was a burst (many frames, or RSS grown), and again MEMORY_SETTLE_ROUNDS times while the
 * guest stays quiet; otherwise it stops until the next MEMORY_ARM_FRAMES frames.
 */
export function watchMemory(
  frames: () => number,
  live: () => number,
  wheel: TimerWheel,
): MemoryWatch {
  let gc: Promise<(() => void) | null> | null = null;
  let collected = frames(); // frames at the last collection
  let liveAtCollection = live(); // connections and flows open at the last collection
  let floor = residentBytes(); // RSS right after the last collection (or at the start)
  let settle = 0; // collections still due while the guest stays quiet after a burst
  let seen = collected; // frames when the check last stopped
  let last = collected;
  let stopped = false;
  const arm = () => {
    if (!stopped) wheel.arm(timer, MEMORY_CHECK_MS);
  };
  const check = async () => {
    const now = frames();
    if (now !== last) {
      last = now; // still busy: look again one interval later
      return arm();
    }
    if (now !== collected) {
      const grown = residentBytes() - floor;
      if (now - collected < MEMORY_BURST_FRAMES && !(floor > 0 && grown >= MEMORY_GROWTH_BYTES)) {
        seen = now; // activity, but no burst: nothing to give back
        return;
      }
      collected = now;
      settle = MEMORY_SETTLE_ROUNDS;
    } else if (settle > 0) {
      settle--;
      if (liveAtCollection - live() < MEMORY_SETTLE_GONE) {
        // Nothing has ended since the last collection: nothing new to give back.
        if (settle > 0) arm();
        return;
      }
    } else return;
    gc ??= exposeGc();
    const collect = await gc;
    if (stopped) return;
    collect?.();
    try {
      mallocTrim();
    } catch { /* not glibc: nothing to trim */ }
    floor = residentBytes();
    liveAtCollection = live();
    seen = frames();
    if (settle > 0) arm();
  };
  const timer = new Timer(() => void check());
  return {
    poke() {
      if (timer.armed || stopped) return;
      const now = frames();
      if (now - seen < MEMORY_ARM_FRAMES) return;
      seen = last = now;
      arm();
    },
    stop() {
      stopped = true;
      wheel.cancel(timer);
    },
  };
}
