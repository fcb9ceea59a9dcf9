// slirp4netns' API socket (--api-socket): add_hostfwd / list_hostfwd / remove_hostfwd against
// a real slirpd, with traffic through the forwards it adds. Asserted: the JSON answers (ids
// from 1, shared with -L flags, never reused), the error answers (bad JSON, no or unknown
// execute, bad arguments, port in use, a request over 4096 bytes), forwarding going on while a
// request is open, removal closing a live connection, the socket file gone after exit.

import assert from "node:assert/strict";
import { makeHostNet, makeNetns, needs, type Netns, startSlirpd } from "../support/harness.ts";
import { fwdPeer } from "../support/fwd_peer.ts";

const SKIP = needs("python3");

/** One request: write, shut down the write side, read the answer to EOF. */
async function api(path: string, req: string | object): Promise<Record<string, unknown>> {
  const c = await Deno.connect({ transport: "unix", path });
  try {
    const body = typeof req === "string" ? req : JSON.stringify(req);
    const bytes = new TextEncoder().encode(body);
    for (let o = 0; o < bytes.length;) o += await c.write(bytes.subarray(o));
    await c.closeWrite();
    const text = await new Response(c.readable).text();
    return JSON.parse(text);
  } finally {
    try {
      c.close();
    } catch { /* closed by the response stream */ }
  }
}

async function echo(ns: Netns, proto: string, host: string, port: number): Promise<string> {
  const r = await ns.exec(["python3", await fwdPeer(), proto, host, String(port)], {
    timeoutMs: 20_000,
  });
  return r.code === 0 ? r.stdout.trim() : `exit ${r.code}: ${r.stderr.trim().split("\n").pop()}`;
}

function err(desc: string) {
  return { error: { desc } };
}

Deno.test({
  name: "api socket: add/list/remove round trip, errors, traffic meanwhile, removal closes conns",
  ignore: SKIP !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "slirpd-api-" });
    const path = `${dir}/api.sock`;
    try {
      await using net = await makeHostNet();
      await using guest = await makeNetns("guest");
      const py = await fwdPeer();
      await using srv = guest.spawn(["python3", py, "serve"]);
      await srv.waitFor((b) => b.stdout.includes("ready"), 15_000, "guest servers");
      await using slirpd = await startSlirpd({
        guest,
        hostNs: net.host,
        // never: these assert the tap path's source choice (the gateway for loopback clients);
        // tests/ns/fwd_splice.test.ts covers the spliced path.
        args: [
          "--configure",
          "--forward-splice",
          "never",
          "--api-socket",
          path,
          "-L",
          "5001:10.0.2.100:7",
        ],
      });
      const h = net.host;
      // The -L flag is row 1.
      // list_hostfwd: no "return" wrapper, as the slirp4netns 1.2 binary answers.
      assert.deepEqual(await api(path, { execute: "list_hostfwd" }), {
        entries: [{
          id: 1,
          proto: "tcp",
          host_addr: "127.0.0.1",
          host_port: 5001,
          guest_addr: "10.0.2.100",
          guest_port: 7,
        }],
      });
      const add = (a: object) => api(path, { execute: "add_hostfwd", arguments: a });
      assert.deepEqual(await add({ proto: "tcp", host_port: 5007, guest_port: 7 }), {
        return: { id: 2 },
      });
      assert.deepEqual(await add({ proto: "udp", host_port: 5007, guest_port: 7 }), {
        return: { id: 3 },
      });
      assert.deepEqual(
        await add({ proto: "tcp6", host_addr: "::1", host_port: 5008, guest_port: 7 }),
        { return: { id: 4 } },
      );
      assert.equal(await echo(h, "tcp", "127.0.0.1", 5007), "OK FROM 10.0.2.2");
      assert.equal(await echo(h, "tcp", "::1", 5007), "OK FROM 10.0.2.2"); // 0.0.0.0: dual
      assert.equal(await echo(h, "udp", "127.0.0.1", 5007), "OK FROM 10.0.2.2");
      assert.equal(await echo(h, "tcp", "::1", 5008), "OK FROM fd00::2"); // tcp6: the guest's v6
      const list = await api(path, { execute: "list_hostfwd" });
      assert.deepEqual((list as { entries: unknown[] }).entries.slice(1), [
        {
          id: 2,
          proto: "tcp",
          host_addr: "0.0.0.0",
          host_port: 5007,
          guest_addr: "10.0.2.100",
          guest_port: 7,
        },
        {
          id: 3,
          proto: "udp",
          host_addr: "0.0.0.0",
          host_port: 5007,
          guest_addr: "10.0.2.100",
          guest_port: 7,
        },
        {
          id: 4,
          proto: "tcp6",
          host_addr: "::1",
          host_port: 5008,
          guest_addr: "fd00::100",
          guest_port: 7,
        },
      ]);

      // Errors, in slirp4netns' words; the daemon goes on.
      assert.deepEqual(await api(path, "{nope"), err("bad request: cannot parse JSON"));
      assert.deepEqual(await api(path, "[1]"), err("bad request: json_object() failed"));
      assert.deepEqual(await api(path, {}), err("bad request: no execute found"));
      assert.deepEqual(
        await api(path, { execute: "frobnicate" }),
        err("bad request: unknown execute"),
      );
      assert.deepEqual(
        await add({ proto: "sctp", host_port: 1, guest_port: 1 }),
        err("bad request: add_hostfwd: bad arguments.proto"),
      );
      assert.deepEqual(
        await add({ proto: "tcp", guest_port: 1 }),
        err("bad request: add_hostfwd: bad arguments.host_port"),
      );
      assert.deepEqual(
        await add({ proto: "tcp4", host_addr: "::1", host_port: 9, guest_port: 1 }),
        err("bad request: add_hostfwd: bad arguments.host_addr"),
      );
      const inUse = await add({
        proto: "tcp",
        host_addr: "127.0.0.1",
        host_port: 5001,
        guest_port: 7,
      });
      assert.match(
        (inUse.error as { desc: string }).desc,
        /^bad request: add_hostfwd: slirp_add_hostfwd failed: Failed to listen on tcp:\/\/127\.0\.0\.1:5001: bind: address already in use/,
      );
      const big = JSON.stringify({ execute: "list_hostfwd", pad: "x".repeat(5000) });
      assert.deepEqual(await api(path, big), err("bad request: too large message"));

      // A request left open does not stop forwarding (slirp4netns would "stop the world").
      const open = await Deno.connect({ transport: "unix", path });
      await open.write(new TextEncoder().encode('{"execute": "list_'));
      assert.equal(await echo(h, "tcp", "127.0.0.1", 5001), "OK FROM 10.0.2.2");
      // Complete now: answered without the client shutting down its write side (as
      // slirp4netns, which answers after one read), well before the 10 s read timeout.
      const t0 = performance.now();
      await open.write(new TextEncoder().encode('hostfwd"}'));
      const late = JSON.parse(await new Response(open.readable).text());
      assert.equal((late.entries as unknown[]).length, 4);
      assert.ok(performance.now() - t0 < 5000, "answered without EOF");

      // Removing a forward closes its listener and its live connections.
      await using hold = h.spawn(["python3", py, "hold", "127.0.0.1", "5007", "20"]);
      await hold.waitFor((b) => b.stdout.includes("connected"), 10_000, "held connection");
      assert.deepEqual(await api(path, { execute: "remove_hostfwd", arguments: { id: 2 } }), {
        return: {},
      });
      await hold.waitFor((b) => b.stdout.includes("OK closed"), 10_000, "the close");
      assert.match(hold.stdout, /OK closed reset/, "the client gets a RST");
      assert.match(await echo(h, "tcp", "127.0.0.1", 5007), /^exit 1: .*Connection refused/);
      assert.deepEqual(
        await api(path, { execute: "remove_hostfwd", arguments: { id: 2 } }),
        err("bad request: remove_hostfwd: bad arguments.id"),
      );
      // Ids are never reused.
      assert.deepEqual(await add({ proto: "tcp", host_port: 5007, guest_port: 7 }), {
        return: { id: 5 },
      });
      assert.equal(await echo(h, "tcp", "127.0.0.1", 5007), "OK FROM 10.0.2.2");

      // A bounded number of connections at once (16): the next one is closed unanswered, and
      // once the held ones go, requests are served again.
      const held: Deno.UnixConn[] = [];
      try {
        for (let i = 0; i < 16; i++) {
          const c = await Deno.connect({ transport: "unix", path });
          await c.write(new TextEncoder().encode("{"));
          held.push(c);
        }
        const extra = await Deno.connect({ transport: "unix", path });
        const got = await Promise.race([
          new Response(extra.readable).text(),
          new Promise<string>((r) => setTimeout(() => r("still open"), 5000)),
        ]);
        assert.equal(got, "", "the 17th connection is closed unanswered");
      } finally {
        for (const c of held) c.close();
      }
      let again: Record<string, unknown> = {};
      for (let i = 0; i < 50 && !("entries" in again); i++) {
        again = await api(path, { execute: "list_hostfwd" }).catch(() => ({}));
        if (!("entries" in again)) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((again.entries as unknown[]).length, 4);
      assert.equal((await slirpd.stop()).code, 0);
      await assert.rejects(Deno.lstat(path), Deno.errors.NotFound, "socket file removed");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
