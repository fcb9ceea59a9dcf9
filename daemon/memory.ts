// Giving memory back after a burst. A burst of short connections leaves slirpd's memory grown
// by garbage (connections, sockets, timers that are gone): V8 frees its heap only when
// something allocates again, and glibc keeps freed pages in its arenas; an idle slirpd
// allocates nothing, so RSS stayed 130 MB above its start after 20k connections. So once the
// guest has been quiet for a whole interval after a burst (MEMORY_BURST_FRAMES since the last
// collection), slirpd runs one full collection and malloc_trim(0), which hand the pages back.
// Never on the packet path: a timer of Deno's event loop, armed only after a burst.

import { mallocTrim } from "../ffi/fd.ts";

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

/** The check: `poke` from the event loop's tick (cheap), `stop` at shutdown. */
export interface MemoryWatch {
  poke(): void;
  stop(): void;
}

/**
 * Watches `frames` (what the guest sent, frames in). No timer runs until a burst has been
 * seen: `poke`, called by the event loop after each round, only compares two numbers, and
 * arms the check once MEMORY_BURST_FRAMES came in since the last collection; the check then
 * runs every MEMORY_CHECK_MS until an interval passed without a frame, collects, and is not
 * armed again before the next burst. So an idle slirpd has no timer of its own waking it.
 */
export function watchMemory(frames: () => number): MemoryWatch {
  let gc: Promise<(() => void) | null> | null = null;
  let collected = frames(); // frames at the last collection
  let last = collected;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const check = async () => {
    timer = undefined;
    const now = frames();
    if (now !== last) {
      // Still busy: look again one interval later.
      last = now;
      timer = setTimeout(check, MEMORY_CHECK_MS);
      return;
    }
    collected = now;
    gc ??= exposeGc();
    const collect = await gc;
    if (stopped) return;
    collect?.();
    try {
      mallocTrim();
    } catch { /* not glibc: nothing to trim */ }
  };
  return {
    poke() {
      if (timer !== undefined || stopped) return;
      const now = frames();
      if (now - collected < MEMORY_BURST_FRAMES) return;
      last = now;
      timer = setTimeout(check, MEMORY_CHECK_MS);
    },
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
