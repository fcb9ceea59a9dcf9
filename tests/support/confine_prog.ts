// Confines itself as slirpd does under --enable-sandbox --enable-seccomp, then tries what a
// confined slirpd must no longer be able to do, from the main thread and from a tokio thread
// (a nonblocking FFI call runs there), and prints one JSON line of results:
// { "<what>": "ok" | "<error name>" }.

import { confine } from "../../daemon/confine.ts";

const CLONE_NEWNET = 0x40000000;
const MS_BIND = 0x1000;

const libc = Deno.dlopen("libc.so.6", {
  unshare: { parameters: ["i32"], result: "i32" },
  unshareAsync: { name: "unshare", parameters: ["i32"], result: "i32", nonblocking: true },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  setuid: { parameters: ["u32"], result: "i32" },
  execve: { parameters: ["buffer", "pointer", "pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
}).symbols;

function errnoOf(r: number): string {
  if (r === 0) return "ok";
  const e = new Deno.UnsafePointerView(libc.__errno_location()!).getInt32();
  return e === 1 ? "EPERM" : `errno ${e}`;
}

const cstr = (s: string) => new TextEncoder().encode(`${s}\0`);

const warnings: string[] = [];
confine({ sandbox: true, seccomp: true }, (l) => warnings.push(l));

const out: Record<string, string> = { warnings: warnings.join(" | ") || "none" };
out.unshare = errnoOf(libc.unshare(CLONE_NEWNET));
out.unshareFromTokioThread = errnoOf(await libc.unshareAsync(CLONE_NEWNET));
out.mount = errnoOf(libc.mount(cstr("/etc"), cstr("/run"), null, BigInt(MS_BIND), null));
out.setuid0 = errnoOf(libc.setuid(0));
// seccomp answers before the path is looked up, so any path shows the filter.
out.execve = errnoOf(libc.execve(cstr("/bin/true"), null, null));
for (const path of ["/root", "/home", "/usr", "/etc/hostname"]) {
  try {
    await Deno.stat(path); // async: runs on a tokio thread
    out[path] = "visible";
  } catch (e) {
    out[path] = (e as Error).name;
  }
}
console.log(JSON.stringify(out));
