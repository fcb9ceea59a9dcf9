// The layout keeps its promises: no import cycle crosses folders, and DESIGN.md's layer
// diagram names every code folder there is.

import assert from "node:assert/strict";
import { cycles, folderGraph, importGraph } from "../../scripts/deps.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

Deno.test("layout: no import cycle between folders", () => {
  const g = importGraph(ROOT);
  assert.ok(g.size > 100, `the graph has the whole tree (${g.size} files)`);
  assert.deepEqual(cycles(folderGraph(g)), []);
});

Deno.test("layout: DESIGN.md's layer diagram names every folder of code", () => {
  const design = Deno.readTextFileSync(`${ROOT}DESIGN.md`);
  const diagram = design.slice(design.indexOf("## Layers"), design.indexOf("## How a new"));
  const folders: string[] = [];
  for (const top of ["daemon", "firewall", "ffi", "stack"]) {
    folders.push(`${top}/`);
    for (const e of Deno.readDirSync(`${ROOT}${top}`)) {
      if (e.isDirectory) folders.push(`${top}/${e.name}/`);
    }
  }
  const missing = folders.filter((f) => {
    const leaf = f.split("/").at(-2)!;
    return !diagram.includes(f) && !new RegExp(`(^|\\s)${leaf}/`).test(diagram);
  });
  assert.deepEqual(missing, []);
});
