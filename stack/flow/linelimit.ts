// Rate limit for per-flow error lines ("[!] Routing conn ... error: ECONNREFUSED"): a guest that
// opens connections to a closed port as fast as it can must not turn into a log flood (100k
// SYNs wrote 100k lines before). At most LINE_BUDGET such lines per LINE_WINDOW_MS; the rest are
// counted, and one summary line says how many were left out once the window is over (a wheel
// timer, so it comes even when the flood has stopped). Other lines pass untouched: "new" and
// "done" lines exist only for flows that connected, which the host paces itself.

import { Timer, type TimerWheel } from "./timers.ts";

export const LINE_BUDGET = 50;
export const LINE_WINDOW_MS = 10_000;

export class ErrorLineLimiter {
  /** Error lines written and left out, since start. */
  written = 0;
  suppressed = 0;
  #inWindow = 0;
  #windowSuppressed = 0;
  #windowStart = -Infinity;
  readonly #timer: Timer;
  /** The log function to hand to the transports. */
  readonly log: (line: string) => void;

  constructor(
    private readonly out: (line: string) => void,
    private readonly wheel: TimerWheel,
    private readonly now: () => number,
  ) {
    this.#timer = new Timer(() => this.#summary());
    this.log = (line) => this.line(line);
  }

  line(text: string): void {
    if (!(text.startsWith("[!] ") && text.includes(" error: "))) {
      this.out(text);
      return;
    }
    const now = this.now();
    if (now - this.#windowStart >= LINE_WINDOW_MS) {
      this.#summary();
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow < LINE_BUDGET) {
      this.#inWindow++;
      this.written++;
      this.out(text);
      return;
    }
    this.suppressed++;
    if (this.#windowSuppressed++ === 0) {
      this.wheel.arm(this.#timer, this.#windowStart + LINE_WINDOW_MS - now);
    }
  }

  /** Writes the pending summary now (window over, or shutdown). */
  flush(): void {
    this.#summary();
  }

  #summary(): void {
    this.wheel.cancel(this.#timer);
    if (this.#windowSuppressed === 0) return;
    this.out(
      `[!] ${this.#windowSuppressed} more connection error lines suppressed ` +
        `(rate limit: ${LINE_BUDGET} per ${LINE_WINDOW_MS / 1000} s)`,
    );
    this.#windowSuppressed = 0;
  }
}
