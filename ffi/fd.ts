// Raw file-descriptor calls for descriptors slirpd inherits (the slirp4netns --ready-fd
// contract): Deno has no API to adopt an fd number.

import { check, openLibc } from "./libc.ts";

const libc = openLibc({
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});

/** Writes `data` to an inherited descriptor and closes it. */
export function writeAndClose(fd: number, data: string, what: string): void {
  const bytes = new TextEncoder().encode(data);
  try {
    check(Number(libc.write(fd, bytes, BigInt(bytes.length))), "write", `${what} ${fd}`);
  } finally {
    libc.close(fd);
  }
}
