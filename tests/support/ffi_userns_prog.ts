// Run by tests/ns/ffi_userns.test.ts as an unprivileged user, for a netns made with
// `unshare -Urn`: gets the guest descriptors the rootless way, attaches to an existing tap,
// fails clearly for a missing one, creates + configures a new one, then reads frames from it.
// Prints one JSON object per step on stdout.
//
//   deno run -A tests/support/ffi_userns_prog.ts NETNS_PATH EXISTING_TAP NEW_TAP
//
// With --stranded NETNS_PATH (run under `nsenter --user=<owner userns>`), it shows why slirpd
// does not re-exec itself into the owner user namespace: the window opens, but the thread
// cannot return to the host netns.

import { nsInode, withNetns } from "../../ffi/netns.ts";
import { netnsOwner, openGuestNetns } from "../../ffi/userns.ts";
import { openTap } from "../../ffi/tap.ts";
import { configureGuest } from "../../ffi/netlink.ts";

const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
if (Deno.args[0] === "--stranded") {
  let inside = false, message = "";
  try {
    withNetns(Deno.args[1], () => inside = true);
  } catch (e) {
    message = (e as Error).message;
  }
  say({ step: "stranded", inside, message });
  Deno.exit(0);
}
const [path, existing, fresh] = Deno.args;
const owner = netnsOwner(path);

const g = await openGuestNetns(path);
const attached = openTap({ name: existing, create: false, vnetHdr: true, offload: true }, g);
g.close();

const g1 = await openGuestNetns(path);
let missing = "";
try {
  openTap({ name: "nope0", create: false, vnetHdr: true, offload: true }, g1);
} catch (e) {
  missing = (e as Error).message;
}
g1.close();

const t0 = performance.now();
const g2 = await openGuestNetns(path);
const helperMs = Math.round(performance.now() - t0);
const tap = openTap({ name: fresh, create: true, vnetHdr: true, offload: true }, g2);
configureGuest({
  ifname: fresh,
  mtu: 1500,
  addrs: [{ addr: new Uint8Array([10, 0, 2, 100]), prefixLen: 24 }, {
    addr: new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
    prefixLen: 64,
  }],
  gateways: [
    new Uint8Array([10, 0, 2, 2]),
    new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
  ],
}, g2);
say({
  step: "ready",
  pid: Deno.pid,
  uid: Deno.uid(),
  userns: String(nsInode("/proc/self/ns/user")),
  foreign: owner.foreign,
  viaHelper: g2.viaHelper,
  helperMs,
  attached: { name: attached.name, created: attached.created, vnetLen: attached.vnetLen },
  missing,
  tap: {
    name: tap.name,
    created: tap.created,
    vnetLen: tap.vnetLen,
    offloaded: tap.offloaded,
    ifindex: tap.ifindex,
  },
});
g2.close();
attached.close();

// Frames the guest sends (the test pings 10.0.2.2 inside): wait for an ARP request, bounded.
const rx = new Uint8Array(128 * 1024);
const e = tap.vnetLen;
let arp = false;
for (const deadline = Date.now() + 8000; !arp && Date.now() < deadline;) {
  const n = tap.read(rx);
  if (n === 0) await new Promise((r) => setTimeout(r, 5));
  else arp = ((rx[e + 12] << 8) | rx[e + 13]) === 0x0806 && rx[e + 38] === 10 && rx[e + 41] === 2;
}
say({ step: "read", arp });
tap.close();
