// Prints the README's flag table from daemon/options.ts's FLAGS (the source --help uses), so the two
// cannot drift: `deno run scripts/flags_table.ts`. tests/unit/readme.test.ts checks the README.

import { FLAGS } from "../daemon/options.ts";

const rows: string[][] = [["flag", "meaning"]];
for (const [name, f] of Object.entries(FLAGS)) {
  const flag = `${f.short ? `-${f.short}, ` : ""}--${name}${f.arg ? ` ${f.arg}` : ""}`;
  const def = f.default !== undefined && f.type === "string" ? ` (default ${f.default})` : "";
  const cell = (t: string) => t.replaceAll("|", "\\|"); // a | would end the table cell
  rows.push([cell(`\`${flag}\``), cell(`${f.help}${def}`)]);
}
const w0 = Math.max(...rows.map((r) => r[0].length));
const w1 = Math.max(...rows.map((r) => r[1].length));
const line = (r: string[]) => `| ${r[0].padEnd(w0)} | ${r[1].padEnd(w1)} |`;
console.log([line(rows[0]), `| ${"-".repeat(w0)} | ${"-".repeat(w1)} |`, ...rows.slice(1).map(line)]
  .join("\n"));
