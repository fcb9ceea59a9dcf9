// Import graph check: prints import cycles and fails (exit 1) when files of different folders
// form one. Run as `deno task deps`; `--files` also lists cycles inside a folder.
//
// Why our own: deno has no cycle report, and a layering rule ("imports only point down") is
// easiest to keep when the check is one small script in CI.

import { dirname, join, relative, resolve } from "node:path";

const ROOTS = ["main.ts", "daemon", "stack", "ffi", "firewall", "scripts", "tests"];
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']/g;

function walk(path: string, out: string[]): void {
  let info;
  try {
    info = Deno.statSync(path);
  } catch {
    return;
  }
  if (info.isFile) {
    if (path.endsWith(".ts")) out.push(path);
    return;
  }
  for (const e of Deno.readDirSync(path)) walk(join(path, e.name), out);
}

/** Edges of the import graph, file → files it imports (type-only imports included). */
export function importGraph(root: string): Map<string, string[]> {
  const files: string[] = [];
  for (const r of ROOTS) walk(join(root, r), files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = Deno.readTextFileSync(f);
    const deps: string[] = [];
    for (const m of text.matchAll(IMPORT_RE)) {
      deps.push(relative(root, resolve(dirname(f), m[1])));
    }
    graph.set(relative(root, f), deps);
  }
  return graph;
}

/** Strongly connected components with more than one node (Tarjan, iterative enough for us). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** The same graph one level up: folder → folders it imports from. */
export function folderGraph(graph: Map<string, string[]>): Map<string, string[]> {
  const g = new Map<string, Set<string>>();
  for (const [f, deps] of graph) {
    const from = dirname(f);
    if (!g.has(from)) g.set(from, new Set());
    for (const d of deps) {
      const to = dirname(d);
      if (to !== from) g.get(from)!.add(to);
    }
  }
  return new Map([...g].map(([k, v]) => [k, [...v]]));
}

if (import.meta.main) {
  const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
  const graph = importGraph(root);
  const folderCycles = cycles(folderGraph(graph));
  const fileCycles = cycles(graph);
  const crossing = fileCycles.filter((c) => new Set(c.map(dirname)).size > 1);
  if (Deno.args.includes("--files")) {
    for (const c of fileCycles) console.log(`file cycle: ${c.join(" ")}`);
  }
  for (const c of folderCycles) console.log(`folder cycle: ${c.join(" ⇄ ")}`);
  for (const c of crossing) console.log(`cycle across folders: ${c.join(" ")}`);
  const bad = folderCycles.length + crossing.length;
  console.log(
    `${graph.size} files, ${fileCycles.length} file cycle(s), ${bad} crossing folders`,
  );
  if (bad > 0) Deno.exit(1);
}
