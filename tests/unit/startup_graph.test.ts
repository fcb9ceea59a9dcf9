// Start-up speed is module loading: Deno starts an empty script in ~20 ms here, and every module
// (and Deno's Node layer, ~8 ms the first time a node: module or Node global is touched) comes on
// top. Scripts touch the tap a few milliseconds after starting slirp4netns, so:
//  - what main.ts loads before the tap exists (its static graph) is the flags, the ffi that makes
//    the tap, and nothing of the stack, the firewall engine or the daemon (daemon/run.ts is a
//    dynamic import that loads while the tap is made);
//  - nothing loads a node: module statically before readiness (node:dns is imported on the
//    first name lookup, and the poller's setImmediate is touched only after readiness).
// Measured figures: `deno task bench-startup` (scripts/bench/startup.ts).

import assert from "node:assert/strict";

const REPO = new URL("../..", import.meta.url);

interface Dep {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface Mod {
  specifier: string;
  dependencies?: Dep[];
}

async function graph(): Promise<Map<string, Mod>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("main.ts", REPO).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: Mod[] };
  return new Map(info.modules.map((m) => [m.specifier, m]));
}

/** Modules reachable from `root` over static (non-dynamic, non-type-only) imports. */
function staticClosure(mods: Map<string, Mod>, root: string): Set<string> {
  const seen = new Set<string>([root]);
  const todo = [root];
  while (todo.length > 0) {
    const m = mods.get(todo.pop()!);
    for (const d of m?.dependencies ?? []) {
      const to = d.code?.specifier;
      if (to === undefined || d.isDynamic || seen.has(to)) continue;
      seen.add(to);
      todo.push(to);
    }
  }
  return seen;
}

const rel = (s: string) => s.startsWith(REPO.href) ? s.slice(REPO.href.length) : s;

Deno.test("start-up: before the tap, main.ts loads the flags and the tap's ffi only", async () => {
  const mods = await graph();
  const main = new URL("main.ts", REPO).href;
  const early = [...staticClosure(mods, main)].map(rel);
  for (const m of early) {
    assert.ok(
      !/^(daemon\/run\.ts|stack\/(mod\.ts|tcp\/|udp\/|icmp\/|services\/|link\/|ip\/|flow\/)|firewall\/(start|policy|hostprefixes)\.ts)/
        .test(m),
      `${m} is loaded before the tap is made: ${early.join(" ")}`,
    );
    assert.ok(!m.startsWith("node:"), `${m} is loaded before the tap is made`);
  }
  assert.ok(early.includes("daemon/attach.ts"), early.join(" "));
});

Deno.test("start-up: no node: module is loaded statically anywhere before readiness", async () => {
  const mods = await graph();
  const all = new Set<string>();
  // Every module of the program, the dynamically imported daemon included; only the edges that
  // load something statically count.
  for (const root of [new URL("main.ts", REPO).href, new URL("daemon/run.ts", REPO).href]) {
    for (const m of staticClosure(mods, root)) all.add(rel(m));
  }
  assert.ok(all.has("stack/mod.ts"), "the daemon's graph was walked");
  const node = [...all].filter((m) => m.startsWith("node:"));
  assert.deepEqual(node, [], "node: modules cost ~8 ms of start-up");
});

// Deno.dlopen compiles a trampoline per symbol (~0.1 ms each): ffi/libc.ts binds each symbol on
// its first use, so loading the ffi modules before the tap binds none of the ~80 they declare.
// (A symbol libc lacks shows it: binding it fails, and only when it is bound. The test of
// bindAllSymbols comes first: it binds every table opened before it in this process.)
Deno.test("start-up: bindAllSymbols binds every symbol not used yet (before confinement)", async () => {
  const { bindAllSymbols, openLibc } = await import("../../ffi/libc.ts");
  const lib = openLibc({
    getppid: { parameters: [], result: "i32" },
    slirpd_no_such_symbol_either: { parameters: [], result: "i32" },
  });
  assert.throws(() => bindAllSymbols(), /slirpd_no_such_symbol_either/);
  assert.equal(lib.getppid(), Deno.ppid);
});

Deno.test("start-up: a libc symbol is bound on its first use, not when its table is opened", async () => {
  const { openLibc } = await import("../../ffi/libc.ts");
  const lib = openLibc({
    getpid: { parameters: [], result: "i32" },
    slirpd_no_such_symbol: { parameters: [], result: "i32" },
  });
  assert.equal(lib.getpid(), Deno.pid);
  assert.equal(lib.getpid(), Deno.pid);
  assert.throws(() => lib.slirpd_no_such_symbol(), /slirpd_no_such_symbol/);
});
