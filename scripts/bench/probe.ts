// Tiny TCP probes for the benchmark, run with `deno run` inside the namespaces the bench made.
//
//   probe.ts server HOST PORT             echo server (host namespace); prints "listening"
//   probe.ts check  HOST PORT TIMEOUT_MS  one connect + 1-byte echo; JSON {ok, us | error}
//   probe.ts rr     HOST PORT N MAX_MS    N 1-byte round trips on one connection (TCP_RR)
//   probe.ts crr    HOST PORT MS          connect, 1-byte echo, close, for MS (TCP_CRR)
//   probe.ts crrpar HOST PORT MS CONC     the same with CONC clients at once
//   probe.ts burst  HOST PORT N HOLDMS    N connections at once, each echoes 1 byte, all held
//   probe.ts trickle HOST PORT RATE SECS  RATE connections per second (1-byte echo) for SECS
//
// Clients print exactly one JSON line on stdout. Every wait is bounded: a stuck connect or
// read counts as an error instead of hanging (the bench also kills us after a deadline).
// The same Deno client runs against every tool, so its own per-op overhead (~10 µs) is in
// every column alike; the ratios are what the table is read for.

const [mode, host, portArg, ...rest] = Deno.args;
const port = Number(portArg);

/** Rejects after `ms` with `what` so a stuck op turns into a reported error. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

async function connect(timeoutMs: number): Promise<Deno.TcpConn> {
  const conn = await within(Deno.connect({ hostname: host, port }), timeoutMs, "connect");
  conn.setNoDelay(true);
  return conn;
}

/** Writes one byte and reads it back; returns false on EOF. */
async function pingPong(conn: Deno.TcpConn, buf: Uint8Array, timeoutMs: number): Promise<boolean> {
  await conn.write(buf.subarray(0, 1));
  const n = await within(conn.read(buf), timeoutMs, "echo");
  return n !== null && n > 0;
}

async function serve(): Promise<void> {
  const listener = Deno.listen({ hostname: host, port });
  console.log("listening");
  for await (const conn of listener) {
    (async () => {
      // Small: the burst holds 10,000 connections open at once.
      const buf = new Uint8Array(4096);
      try {
        conn.setNoDelay(true);
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
      } catch { /* peer reset: nothing to do */ }
      try {
        conn.close();
      } catch { /* already closed */ }
    })();
  }
}

async function check(timeoutMs: number): Promise<void> {
  const t0 = performance.now();
  const conn = await connect(timeoutMs);
  const ok = await pingPong(conn, new Uint8Array(1).fill(0x2a), timeoutMs);
  conn.close();
  if (!ok) throw new Error("echo server closed the connection");
  console.log(JSON.stringify({ ok: true, us: Math.round((performance.now() - t0) * 1000) }));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** n round trips; `gapMs` > 0 waits that long before each (interactive traffic, not a stream). */
async function rr(n: number, maxMs: number, gapMs = 0): Promise<void> {
  const conn = await connect(5_000);
  const buf = new Uint8Array(64).fill(0x2a);
  // Warm-up: ARP/neighbour entries, the tools' first-packet paths, V8's JIT (the probe's, and
  // slirpd's: with 50 warm-up round trips the first run's p99 was 2-5x the later runs'). With
  // a gap, the warm-up keeps the gap: the tool's wake-up path is what has to be warm, and
  // slirpd's p99 1 ms apart came down over the first ~4,000 such requests (V8 tiers functions
  // up by call count; measured 610-640 µs over requests 0-2,000, 325-400 over 4,000-6,000;
  // pasta's stays at 300-350).
  const warm = gapMs > 0 ? 4_000 : 1_000;
  for (let i = 0; i < warm; i++) {
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    if (!await pingPong(conn, buf, 5_000)) throw new Error("EOF during warm-up");
  }
  const samples: number[] = [];
  const deadline = performance.now() + maxMs;
  for (let i = 0; i < n && performance.now() < deadline; i++) {
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    const t0 = performance.now();
    if (!await pingPong(conn, buf, 5_000)) throw new Error(`EOF after ${i} round trips`);
    samples.push((performance.now() - t0) * 1000);
  }
  conn.close();
  samples.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({
    ok: true,
    n: samples.length,
    p50: r(percentile(samples, 50)),
    p99: r(percentile(samples, 99)),
    min: r(samples[0] ?? NaN),
    max: r(samples[samples.length - 1] ?? NaN),
  }));
}

async function crr(ms: number): Promise<void> {
  const buf = new Uint8Array(64).fill(0x2a);
  const t0 = performance.now();
  const end = t0 + ms;
  let done = 0;
  let errors = 0;
  let lastError = "";
  // Bounded by time and by count (a broken path must not spin forever on instant errors).
  for (let i = 0; i < 1_000_000 && performance.now() < end; i++) {
    try {
      const conn = await connect(2_000);
      try {
        if (await pingPong(conn, buf, 2_000)) done++;
        else errors++;
      } finally {
        conn.close();
      }
    } catch (e) {
      errors++;
      lastError = describe(e);
      if (errors >= 20 && done === 0) break;
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({
    ok: done > 0,
    conns: done,
    errors,
    seconds: Math.round(secs * 1000) / 1000,
    perSec: Math.round(done / secs),
    ...(lastError ? { lastError, errors } : {}),
  }));
}

/** TCP_CRR with `conc` clients at once, for ms: conn/s over all of them. */
async function crrPar(ms: number, conc: number): Promise<void> {
  const t0 = performance.now();
  const end = t0 + ms;
  let done = 0, errors = 0, lastError = "";
  const client = async () => {
    const buf = new Uint8Array(64).fill(0x2a);
    for (let i = 0; i < 1_000_000 && performance.now() < end; i++) {
      try {
        const conn = await connect(2_000);
        try {
          if (await pingPong(conn, buf, 2_000)) done++;
          else errors++;
        } finally {
          conn.close();
        }
      } catch (e) {
        errors++;
        lastError = describe(e);
        if (errors >= 20 * conc && done === 0) return;
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, client));
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({
    ok: done > 0,
    conns: done,
    errors,
    perSec: Math.round(done / secs),
    ...(lastError ? { lastError, errors } : {}),
  }));
}

/**
 * n connections opened at once; each echoes one byte and stays open until all are done (then
 * holdMs more, while the bench reads the tool's RSS). Reports the time until the last connect
 * completed (its SYN-ACK) and until the last echo, and how many were served.
 */
async function burst(n: number, holdMs: number): Promise<void> {
  const t0 = performance.now();
  let lastConnect = 0, lastEcho = 0, served = 0, lastError = "";
  // Every failure's message, counted: one refused connection in 10,000 is rare enough that
  // the next run showing it must say what it was.
  const errors: Record<string, number> = {};
  const conns: Deno.TcpConn[] = [];
  const one = async () => {
    try {
      const conn = await connect(30_000);
      conns.push(conn);
      lastConnect = performance.now() - t0;
      if (await pingPong(conn, new Uint8Array(1).fill(0x2a), 30_000)) {
        served++;
        lastEcho = performance.now() - t0;
      }
    } catch (e) {
      lastError = describe(e);
      const at = `${lastError} (at ${Math.round((performance.now() - t0) / 100) / 10} s)`;
      errors[at] = (errors[at] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: n }, one));
  console.log(JSON.stringify({ holding: conns.length }));
  await new Promise((r) => setTimeout(r, holdMs));
  for (const c of conns) {
    try {
      c.close();
    } catch { /* gone */ }
  }
  console.log(JSON.stringify({
    ok: served === n,
    n,
    served,
    lastConnectMs: Math.round(lastConnect),
    allServedMs: Math.round(lastEcho),
    ...(lastError ? { lastError, errors } : {}),
  }));
}

/** A trickle: `rate` new connections (1-byte echo each) per second for `secs` seconds. */
async function trickle(rate: number, secs: number): Promise<void> {
  const buf = new Uint8Array(64).fill(0x2a);
  let done = 0, errors = 0;
  const t0 = performance.now();
  for (let i = 0; i < rate * secs; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    try {
      const conn = await connect(2_000);
      try {
        if (await pingPong(conn, buf, 2_000)) done++;
        else errors++;
      } finally {
        conn.close();
      }
    } catch {
      errors++;
    }
  }
  console.log(JSON.stringify({ ok: errors === 0, done, errors }));
}

try {
  if (mode === "server") await serve();
  else if (mode === "check") await check(Number(rest[0] ?? 5_000));
  else if (mode === "rr") {
    await rr(Number(rest[0] ?? 2_000), Number(rest[1] ?? 10_000), Number(rest[2] ?? 0));
  } else if (mode === "crr") await crr(Number(rest[0] ?? 3_000));
  else if (mode === "crrpar") await crrPar(Number(rest[0] ?? 3_000), Number(rest[1] ?? 64));
  else if (mode === "burst") await burst(Number(rest[0] ?? 10_000), Number(rest[1] ?? 1_000));
  else if (mode === "trickle") await trickle(Number(rest[0] ?? 10), Number(rest[1] ?? 60));
  else throw new Error(`unknown mode ${mode}`);
  Deno.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: describe(e) }));
  Deno.exit(1);
}
