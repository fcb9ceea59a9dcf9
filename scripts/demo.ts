// The quick-start demo: a guest namespace reaches a service on the "host" through slirpd.
//
// It builds, all by itself and all torn down at the end:
//   - an isolated "host" namespace with the test address 192.0.2.1 and a small HTTP service,
//   - slirpd running in that host namespace, attached to a guest namespace with --configure,
//   - inside the guest: ping of the gateway (v4 and v6), and a fetch of the host's service.
// Nothing leaves the namespaces the demo made.

import { HostNet, makeHostNet, makeNetns, needs, startSlirpd } from "../tests/support/harness.ts";

if (Deno.uid() !== 0) {
  console.error("demo: needs root (it makes network namespaces); for rootless use see README");
  Deno.exit(1);
}

const say = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

await using net = await makeHostNet();
await using guest = await makeNetns("demo");
say(`guest namespace ${guest.name}; host namespace ${net.host.name} (${HostNet.HOST4})`);

await using server = net.host.spawn([
  Deno.execPath(),
  "eval",
  `Deno.serve({ hostname: "${HostNet.HOST4}", port: 8080, onListen() { console.log("listening") } },
     (req) => new Response("hello from the host service, you came from " + req.headers.get("user-agent") + "\\n"));`,
]);
await server.waitFor((b) => b.stdout.includes("listening"), 20_000, "the host service");

say("start slirpd --configure --enable-host in the host namespace");
await using slirpd = await startSlirpd({
  guest,
  hostNs: net.host,
  args: ["--configure", "--enable-host"],
});
console.log(slirpd.stderr.trim());

say("guest: ip addr / ip route");
console.log(await guest.must(["ip", "-br", "addr"]));
console.log(await guest.must(["ip", "route"]));

say("guest: ping 10.0.2.2 and fd00::2 (slirpd answers as the gateway)");
if (needs("ping") === null) {
  console.log(await guest.must(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.2.2"]));
  console.log(await guest.must(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00::2"]));
} else console.log("skipped: needs ping (iputils-ping)");

const url = `http://${HostNet.HOST4}:8080/`;
say(`guest: fetch ${url} through slirpd`);
// curl when the machine has it; otherwise Deno's own fetch, run inside the guest namespace.
const fetched = needs("curl") === null
  ? await guest.exec(["curl", "-sS", "--max-time", "10", "-A", "curl-in-the-guest", url])
  : await guest.exec([
    Deno.execPath(),
    "eval",
    `const r = await fetch("${url}", { headers: { "user-agent": "deno-in-the-guest" } });
     console.log(await r.text());`,
  ], { timeoutMs: 20_000 });
console.log(fetched.code === 0 ? fetched.stdout : `fetch failed: ${fetched.stderr}`);

say("stop slirpd (SIGTERM)");
const status = await slirpd.stop("SIGTERM");
console.log(slirpd.stdout.trim());
console.log(slirpd.stderr.trim().split("\n").slice(1).join("\n"));
console.log(`slirpd exited with ${status.code}`);
Deno.exitCode = fetched.code === 0 && status.code === 0 ? 0 : 1;
