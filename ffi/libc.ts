// libc access for every ffi/ module: one place that opens libc.so.6, reads errno and turns a
// failed call into an error that names the call, its subject and the errno
// ("setns(/proc/123/ns/net): EPERM").
//
// Each ffi/ module declares the symbols it needs and opens them with `openLibc`, so the
// modules stay independent; dlopen of the same library is reference-counted by the loader.
//
// Each symbol is bound on its first use, not when its module loads: Deno.dlopen compiles a
// call trampoline per symbol (~0.1 ms each, measured), and of the ~80 symbols the ffi/
// modules declare, start-up uses a third; binding them all at load cost ~5 ms before the tap
// and ~5 ms more before readiness. Each symbol is a getter of the table that binds it (one
// dlopen of that symbol) on first use and returns it from then on. The table's shape never
// changes and every call site sees one target, so V8 inlines the getter and keeps the FFI
// fast path (measured: same ns per call as a table bound at once; a table that gained an own
// property per bound symbol instead made hot call sites megamorphic, ~60 ns per call instead
// of ~5 in most runs). `bindAllSymbols` binds what is left, for the confinement that follows
// start-up.

import { errnoName } from "./errno.ts";

/** Binds the rest of each table opened so far (see bindAllSymbols). */
const unbound: (() => void)[] = [];

/** libc with the given symbol table; each symbol is bound on its first use (see above). */
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  const table = {} as Deno.DynamicLibrary<S>["symbols"];
  const names = Object.keys(symbols);
  for (const name of names) {
    let bound: unknown;
    Object.defineProperty(table, name, {
      get: () => bound ??= Deno.dlopen("libc.so.6", { [name]: symbols[name] }).symbols[name],
      enumerable: true,
    });
  }
  unbound.push(() => {
    for (const name of names) void table[name];
  });
  return table;
}

/**
 * Binds every symbol not used yet. --enable-sandbox re-roots the process and --enable-seccomp
 * filters syscalls: a dlopen is not something to first try after either, so confinement
 * calls this first.
 */
export function bindAllSymbols(): void {
  for (const f of unbound.splice(0)) f();
}

const errnoLib = openLibc({
  __errno_location: { parameters: [], result: "pointer" },
});

// errno lives in thread-local storage at an address that is fixed for the thread's life, so it
// is mapped once as an Int32Array: reading errno on the hot path (EAGAIN after every drain) is
// then a plain array load, with no FFI call and no allocation. JS and sync FFI calls both run
// on this one thread (a Worker evaluates this module again on its own thread).
const errnoCell = (() => {
  const p = errnoLib.__errno_location();
  if (p === null) throw new Error("__errno_location returned NULL");
  return new Int32Array(Deno.UnsafePointerView.getArrayBuffer(p, 4));
})();

/** errno of the last libc call made on this (the main) thread. Allocation-free. */
export function errno(): number {
  return errnoCell[0];
}

/** A libc call that failed: `call(subject): ENAME`. */
export class SyscallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
    readonly subject = "",
  ) {
    super(`${call}${subject ? `(${subject})` : ""}: ${errnoName(errno)}`);
    this.name = "SyscallError";
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

/** Throws a SyscallError when `ret` is negative (the libc convention), else returns it. */
export function check(ret: number, call: string, subject = ""): number {
  if (ret < 0) throw new SyscallError(call, errno(), subject);
  return ret;
}

/** Same as `check` for calls whose result is a bigint (ssize_t). */
export function checkBig(
  ret: number | bigint,
  call: string,
  subject = "",
): number {
  const n = Number(ret);
  if (n < 0) throw new SyscallError(call, errno(), subject);
  return n;
}

/** NUL-terminated copy of a string, for `buffer` parameters. */
export function cstring(s: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}
