// slirp4netns' API socket (--api-socket PATH): a unix stream socket taking one JSON request per
// connection, answered with one JSON object as soon as the request is complete (slirp4netns
// answers after one read: a client that never shuts down its write side is answered at once;
// one that does is answered at EOF):
//
//   {"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "0.0.0.0",
//     "host_port": 8080, "guest_addr": "10.0.2.100", "guest_port": 80}}  → {"return":{"id":1}}
//   {"execute": "list_hostfwd"}  → {"entries":[{"id":1,"proto":"tcp",...}]}
//   {"execute": "remove_hostfwd", "arguments": {"id": 1}}  → {"return":{}}
//   anything wrong → {"error":{"desc":"bad request: ..."}} (slirp4netns' wording)
//
// list_hostfwd has no "return" wrapper: that is what the slirp4netns 1.2 binary sends (its man
// page shows one), and clients were written against the binary.
//
// Beyond slirp4netns: proto may also be tcp4/tcp6/udp4/udp6 (the listener's family; the
// defaults follow it: host_addr "::" and the guest's IPv6 address for tcp6/udp6), host_addr
// may be IPv6, and host_addr 0.0.0.0 with tcp/udp listens on both families. Forwards added
// here and -L/-R from the command line are one table (stack/forwards/mod.ts): ids count up from 1
// and are never reused, list_hostfwd shows the local ones of both, and removing one closes its
// listener and its live connections. add_hostfwd also takes "splice": "auto"|"always"|"never"
// (--forward-splice for this one forward; README). The data plane keeps running while a request is served:
// this is control plane on Deno's own async I/O (the poller yields to it), not the FFI loop.
// At most API_MAX_CONNS connections are served at once; more are closed unanswered (slirp4netns
// serves one at a time).

import type { NetPlan } from "../stack/base/netplan.ts";
import { type Forwards, type ForwardSpec } from "../stack/forwards/mod.ts";
import { parseAddr } from "../stack/forwards/spec.ts";
import { formatIp } from "../stack/wire/bytes.ts";

/** slirp4netns' buffer: a request must be shorter than this. */
export const API_MAX_REQUEST = 4096;
/** A client that neither finishes its request nor shuts down its side is answered anyway. */
const READ_TIMEOUT_MS = 10_000;
/** Connections served at once; a client beyond that is closed at once. */
export const API_MAX_CONNS = 16;
/** How much of an oversized request is read (and dropped) before answering it. */
const SKIP_MAX = 1 << 20;
const SKIP = new Uint8Array(64 * 1024);

type Json = Record<string, unknown>;

const PROTOS: Record<string, { proto: 6 | 17; family: 4 | 6 | null }> = {
  tcp: { proto: 6, family: null },
  udp: { proto: 17, family: null },
  tcp4: { proto: 6, family: 4 },
  udp4: { proto: 17, family: 4 },
  tcp6: { proto: 6, family: 6 },
  udp6: { proto: 17, family: 6 },
};

function fail(desc: string): Json {
  return { error: { desc: `bad request: ${desc}` } };
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function port(v: unknown): number {
  return typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535 ? v : 0;
}

/** The requests, apart from the socket (tests call this directly). */
export class ApiHandler {
  constructor(private readonly forwards: Forwards, private readonly plan: NetPlan) {}

  /** One request's bytes → the answer object. Never throws. */
  async handle(text: string): Promise<Json> {
    let req: unknown;
    try {
      req = JSON.parse(text);
    } catch {
      return fail("cannot parse JSON");
    }
    if (!isObject(req)) return fail("json_object() failed");
    const execute = req.execute;
    if (typeof execute !== "string") return fail("no execute found");
    const args = isObject(req.arguments) ? req.arguments : {};
    switch (execute) {
      case "add_hostfwd":
        return await this.#add(args);
      case "list_hostfwd":
        return { entries: this.#list() };
      case "remove_hostfwd": {
        const id = args.id;
        if (typeof id !== "number" || !Number.isInteger(id) || !this.forwards.remove(id)) {
          return fail("remove_hostfwd: bad arguments.id");
        }
        return { return: {} };
      }
      default:
        return fail("unknown execute");
    }
  }

  async #add(a: Json): Promise<Json> {
    const bad = (what: string) => fail(`add_hostfwd: bad arguments.${what}`);
    const p = typeof a.proto === "string" ? PROTOS[a.proto] : undefined;
    if (p === undefined) return bad("proto");
    const hostText = typeof a.host_addr === "string" && a.host_addr !== ""
      ? a.host_addr
      : p.family === 6
      ? "::"
      : "0.0.0.0";
    const host = typeof a.host_addr === "string" || a.host_addr === undefined
      ? parseAddr(hostText)
      : null;
    if (host === null || (p.family !== null && host.length !== (p.family === 4 ? 4 : 16))) {
      return bad("host_addr");
    }
    const hostPort = port(a.host_port);
    if (hostPort === 0) return bad("host_port");
    const v6 = p.family === 6 || (p.family === null && host.length === 16);
    let guestText: string;
    if (a.guest_addr === undefined || a.guest_addr === "") {
      guestText = formatIp(v6 ? this.plan.guest6 : this.plan.guest4);
    } else if (typeof a.guest_addr === "string" && parseAddr(a.guest_addr) !== null) {
      guestText = a.guest_addr;
    } else return bad("guest_addr");
    const guestPort = port(a.guest_port);
    if (guestPort === 0) return bad("guest_port");
    // slirpd's own extension: "splice": "auto" | "always" | "never" for this forward.
    const splice = a.splice;
    if (splice !== undefined && splice !== "auto" && splice !== "always" && splice !== "never") {
      return bad("splice");
    }
    const spec: ForwardSpec = {
      splice,
      dir: "local",
      network: a.proto as string,
      proto: p.proto,
      proxy: false,
      rpc: false,
      family: p.family,
      bindHost: hostText,
      bindPort: hostPort,
      targetHost: guestText,
      targetPort: guestPort,
      text: JSON.stringify(a),
    };
    try {
      const e = await this.forwards.add(spec);
      return { return: { id: e.id } };
    } catch (e) {
      return fail(`add_hostfwd: slirp_add_hostfwd failed: ${(e as Error).message}`);
    }
  }

  #list(): Json[] {
    return this.forwards.list("local").map((e) => ({
      id: e.id,
      proto: e.network,
      host_addr: e.hostAddr,
      host_port: e.hostPort,
      guest_addr: e.guestAddr,
      guest_port: e.guestPort,
    }));
  }
}

/** Are these bytes one whole JSON value (a request to answer now, without waiting for EOF)? */
function complete(bytes: Uint8Array): boolean {
  // Cheap test first: a request object ends with "}" (whitespace after it allowed).
  let end = bytes.length - 1;
  while (end >= 0 && (bytes[end] === 0x20 || bytes[end] === 0x0a || bytes[end] === 0x0d)) end--;
  if (end < 0 || bytes[end] !== 0x7d) return false;
  try {
    JSON.parse(new TextDecoder().decode(bytes));
    return true;
  } catch {
    return false;
  }
}

/** The listening socket; close() stops it and removes the file. */
export class ApiSocket {
  readonly #conns = new Set<Deno.Conn>();
  #closed = false;

  private constructor(
    readonly path: string,
    private readonly listener: Deno.Listener,
    private readonly handler: ApiHandler,
    private readonly logErr: (line: string) => void,
  ) {}

  /** Listens at `path` (a stale socket file there is replaced, as slirp4netns does). */
  static open(
    path: string,
    forwards: Forwards,
    plan: NetPlan,
    logErr: (line: string) => void,
  ): ApiSocket {
    try {
      if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
    } catch { /* not there */ }
    let l: Deno.Listener;
    try {
      l = Deno.listen({ transport: "unix", path });
    } catch (e) {
      throw new Error(`Failed to listen on API socket ${path}: ${(e as Error).message}`);
    }
    const s = new ApiSocket(path, l, new ApiHandler(forwards, plan), logErr);
    s.#serve();
    return s;
  }

  async #serve(): Promise<void> {
    try {
      for await (const c of this.listener) {
        if (this.#conns.size >= API_MAX_CONNS) {
          try {
            c.close();
          } catch { /* closed */ }
          continue;
        }
        this.#conns.add(c);
        this.#one(c).finally(() => this.#conns.delete(c));
      }
    } catch (e) {
      if (!this.#closed) this.logErr(`[!] API socket: ${(e as Error).message}`);
    }
  }

  /**
   * One connection: read until the bytes so far are one complete JSON value or EOF (at most
   * API_MAX_REQUEST - 1 bytes), answer, close.
   */
  async #one(c: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(API_MAX_REQUEST);
    let n = 0;
    let answer: Json | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), READ_TIMEOUT_MS)
    );
    // An oversized request is still read to its end (bounded) before the answer, so the client
    // gets the answer rather than a reset for unread bytes.
    let skipped = 0;
    try {
      for (;;) {
        const full = n === buf.length;
        if (full && answer === null) answer = fail("too large message");
        const read = c.read(full ? SKIP.subarray(0) : buf.subarray(n));
        read.catch(() => {}); // still pending when the race is lost; close() ends it
        const r = await Promise.race([read, timeout]);
        if (r === "timeout") {
          answer ??= fail("request not finished (shut down the write side after it)");
          break;
        }
        if (r === null) break;
        if (full) {
          skipped += r;
          if (skipped > SKIP_MAX) break;
        } else {
          n += r;
          if (complete(buf.subarray(0, n))) break;
        }
      }
    } catch (e) {
      answer ??= fail(`read: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    try {
      answer ??= await this.handler.handle(new TextDecoder().decode(buf.subarray(0, n)));
      const out = new TextEncoder().encode(JSON.stringify(answer));
      for (let off = 0; off < out.length;) off += await c.write(out.subarray(off));
    } catch { /* the client went away */ }
    try {
      c.close();
    } catch { /* closed */ }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.listener.close();
    } catch { /* closed */ }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    try {
      Deno.removeSync(this.path);
    } catch { /* gone */ }
  }
}
