// Giving memory back after a burst. A burst of short connections leaves slirpd's memory grown
// by garbage (connections, sockets, timers that are gone): V8 frees its heap only when
// something allocates again, and glibc keeps freed pages in its arenas; an idle slirpd
// allocates nothing, so RSS stayed 130 MB above its start after 20k connections. So once the
// guest has been quiet for a whole interval after a burst (MEMORY_BURST_FRAMES since the last
// collection), slirpd runs one full collection and malloc_trim(0), which hand the pages back.
// Never on the packet path: a timer of the stack's timer wheel, once per interval. (Not a Deno
// timer: the process's first setTimeout/setInterval loads Deno's Node timers, ~4.5 ms, which
// would land on start-up or on the first packets after it.)

import { mallocTrim } from "../ffi/fd.ts";
import { Timer, type TimerWheel } from "../stack/flow/timers.ts";

/** How often activity is looked at, ms; frames since the last collection that make a burst. */
export const MEMORY_CHECK_MS = 5_000;
export const MEMORY_BURST_FRAMES = 20_000;

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

/**
 * Starts the check on `wheel` (the stack's: the event loop advances it); `frames` counts what
 * the guest sent (frames in). Returns the function that stops it.
 */
export function watchMemory(frames: () => number, wheel: TimerWheel): () => void {
  let gc: Promise<(() => void) | null> | null = null;
  let collected = frames(); // frames at the last collection
  let last = collected;
  const collect = async () => {
    gc ??= exposeGc();
    (await gc)?.();
    try {
      mallocTrim();
    } catch { /* not glibc: nothing to trim */ }
  };
  const timer = new Timer(() => {
    wheel.arm(timer, MEMORY_CHECK_MS);
    const now = frames();
    const quiet = now === last;
    last = now;
    if (!quiet || now - collected < MEMORY_BURST_FRAMES) return;
    collected = now;
    void collect();
  });
  wheel.arm(timer, MEMORY_CHECK_MS);
  return () => wheel.cancel(timer);
}
