// deno bench tests/unit/wire_checksum.bench.ts: Internet checksum throughput (target ~5 GB/s at
// 64 KiB on one core) and the per-packet overhead on small headers.

import { finish, sum } from "../../stack/wire/checksum.ts";

const buf = new Uint8Array(128 * 1024);
for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;

Deno.bench("checksum 64 KiB, aligned", () => {
  finish(sum(buf, 0, 65536));
});
Deno.bench("checksum 64 KiB, IP header at offset 24", () => {
  finish(sum(buf, 24, 65536));
});
Deno.bench("checksum 64 KiB, odd offset", () => {
  finish(sum(buf, 25, 65535));
});
Deno.bench("checksum 1500 bytes", () => {
  finish(sum(buf, 24, 1500));
});
Deno.bench("checksum 20-byte IPv4 header", () => {
  finish(sum(buf, 24, 20));
});
