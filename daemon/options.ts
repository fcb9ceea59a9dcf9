// The flag table: every flag of both command-line forms with its help text, the one source
// for the parser (daemon/config.ts), `--help`, README's flag table (scripts/flags_table.ts) and
// the man page (scripts/man.ts). Kept apart from the parsing so each file reads on its own.

import { CIDR4_MAX_LEN, CIDR6_MAX_LEN } from "../stack/base/netplan.ts";

export const MTU_MIN = 1280;
/** -pcap-max-bytes default: 1 GiB, then the capture stops (documented in README). */
export const PCAP_MAX_BYTES_DEFAULT = 1 << 30;
export const MTU_MAX = 65521;

export interface FlagSpec {
  type: "string" | "boolean";
  help: string;
  arg?: string;
  short?: string;
  default?: string | boolean;
  /** Repeatable (each occurrence adds to a list). */
  multiple?: boolean;
}

export const FLAGS: Record<string, FlagSpec> = {
  "netns": {
    type: "string",
    arg: "PATH",
    help: "guest network namespace, e.g. /proc/PID/ns/net",
  },
  "interface": {
    type: "string",
    arg: "NAME",
    default: "tun0",
    help: "tap device in the guest namespace",
  },
  "configure": {
    type: "boolean",
    short: "c",
    help:
      "create the tap and configure the guest: lo up, 10.0.2.100/24, fd00::100/64 (network+100 " +
      "of --cidr/--cidr6), default routes",
  },
  "mtu": {
    type: "string",
    short: "m",
    arg: "N",
    default: "1500",
    help: `MTU of the tap (${MTU_MIN}..${MTU_MAX}); -m with an address (tcp://, unix://) is ` +
      "--metrics, as in slirpnetstack",
  },
  "fd": {
    type: "string",
    arg: "N",
    help: "instead of --netns: guest frames on inherited descriptor N, one Ethernet frame per " +
      "read (a socketpair(AF_UNIX, SOCK_DGRAM) end, as slirpnetstack, or a tap fd)",
  },
  "no-vnet-hdr": {
    type: "boolean",
    help: "do not use the virtio-net header (turns off checksum and TSO offloads)",
  },
  "ready-fd": {
    type: "string",
    short: "r",
    arg: "FD",
    help: 'write "1" to FD and close it when ready (slirp4netns)',
  },
  "enable-routing": {
    type: "boolean",
    help: "let the guest reach destinations outside this host (sanity block list still applies)",
  },
  "enable-host": {
    type: "boolean",
    help: "let the guest reach addresses of this host (sanity block list still applies)",
  },
  "connect-timeout": {
    type: "string",
    arg: "SECONDS",
    default: "10",
    help: "how long a host connect() may take before the guest gets RST",
  },
  "udp-timeout": {
    type: "string",
    arg: "SECONDS",
    default: "120",
    help: "idle time after which a UDP flow and its host socket are closed",
  },
  "max-udp-flows": {
    type: "string",
    arg: "N",
    default: "4096",
    help: "most UDP flows at once; the one idle longest is evicted for a new one",
  },
  "cidr": {
    type: "string",
    arg: "CIDR",
    default: "10.0.2.0/24",
    help: `guest IPv4 network, prefix length 1..${CIDR4_MAX_LEN}, host bits zero: ` +
      "gateway .2, DNS .3, DHCP .15-.30, guest .100",
  },
  "cidr6": {
    type: "string",
    arg: "CIDR",
    default: "fd00::/64",
    help: `guest IPv6 network, prefix length 1..${CIDR6_MAX_LEN} (SLAAC needs 64), ` +
      "host bits zero: gateway ::2, DNS ::3, guest ::100",
  },
  "disable-dns": {
    type: "boolean",
    help: "no DNS forwarder at network+3 (10.0.2.3, fd00::3); DHCP and RAs name no DNS",
  },
  "resolv-conf": {
    type: "string",
    arg: "PATH",
    default: "/etc/resolv.conf",
    help: "upstream nameservers of the DNS forwarder (re-read when the file changes)",
  },
  "allow": {
    type: "string",
    arg: "RULE",
    multiple: true,
    help: "allow flows to [tcp|udp|icmp|any://]HOST[:PORT[-PORT]] (HOST: IP, CIDR, [IPv6], name; " +
      "comma-separated, repeatable; opens even the sanity block list)",
  },
  "deny": {
    type: "string",
    arg: "RULE",
    multiple: true,
    help: "deny flows to RULE (same syntax as --allow; beats --allow)",
  },
  "disable-host-loopback": {
    type: "boolean",
    help: "never reach the host's loopback (127.0.0.0/8, ::1), whatever --allow says",
  },
  "outbound-addr": {
    type: "string",
    arg: "IP|IFNAME",
    help: "host IPv4 address (or the interface whose address) outgoing IPv4 flows come from",
  },
  "outbound-addr6": {
    type: "string",
    arg: "IP|IFNAME",
    help: "host IPv6 address (or the interface whose address) outgoing IPv6 flows come from",
  },
  "source-ipv4": {
    type: "string",
    arg: "IP",
    help: "source IPv4 address of outgoing flows (slirpnetstack's name for --outbound-addr)",
  },
  "source-ipv6": {
    type: "string",
    arg: "IP",
    help: "source IPv6 address of outgoing flows (slirpnetstack's name for --outbound-addr6)",
  },
  // slirp4netns' flags (its command-line form: slirpd [OPTIONS] PID|PATH [TAPNAME]).
  "netns-type": {
    type: "string",
    arg: "pid|path",
    help: "slirp4netns form: the first argument is a PID or a netns path (default: a number " +
      "is a PID)",
  },
  "userns-path": {
    type: "string",
    arg: "PATH",
    help: "the user namespace owning the netns; slirpd finds it itself and checks that it matches",
  },
  "exit-fd": {
    type: "string",
    short: "e",
    arg: "FD",
    help: "exit (code 0) when FD becomes readable or its other end is closed (slirp4netns)",
  },
  "macaddress": {
    type: "string",
    arg: "MAC",
    help: "MAC address of the guest's tap (only with --configure)",
  },
  "enable-ipv6": {
    type: "boolean",
    short: "6",
    help: "accepted for slirp4netns: slirpd always serves IPv6",
  },
  "enable-sandbox": {
    type: "boolean",
    help: "after start-up: root is a read-only /etc + /run, uid nobody, no capability but " +
      "CAP_NET_BIND_SERVICE, every thread (see README)",
  },
  "enable-seccomp": {
    type: "boolean",
    help: "after start-up: a seccomp filter on every thread denies exec, ptrace, mount, " +
      "setns/unshare, bpf, modules, ... (see README)",
  },
  "local-fwd": {
    type: "string",
    short: "L",
    arg: "[PROTO://]SPEC",
    multiple: true,
    help: "forward a host port into the guest (repeatable); PROTO tcp, udp, tcppp (PROXY " +
      "protocol clients), udpspp (Simple Proxy Protocol datagrams) or udprpc (a flow ends " +
      "with its first answer); SPEC [BINDIP:]BINDPORT[:TARGETIP:TARGETPORT], default bind " +
      "127.0.0.1 (::1), target the guest; bind port 0 picks a free one; TARGETIP may be " +
      "name@srv-PORT or [name@srv-IP:PORT] (DNS SRV)",
  },
  "remote-fwd": {
    type: "string",
    short: "R",
    arg: "[PROTO://]SPEC",
    multiple: true,
    help: "forward guest flows to BINDIP:BINDPORT (any address; default the gateway) to a " +
      "host target (default 127.0.0.1 / ::1), whatever the firewall says; PROTO tcp, udp or " +
      "udprpc (a flow ends with its first answer); " +
      "the target may be name@srv-PORT or [name@srv-IP:PORT] (DNS SRV)",
  },
  "forward-splice": {
    type: "string",
    arg: "MODE",
    default: "auto",
    help: "-L TCP to the guest's address: auto, always or never splice(2) it to a socket in " +
      "the guest netns (the guest sees its own address); auto: only clients shown as the " +
      "gateway anyway (loopback), not tcppp",
  },
  "dns-ttl": {
    type: "string",
    arg: "DURATION",
    default: "5s",
    help: "how long a host name or SRV label in -L/-R is used before it is looked up again " +
      "(5s, 1m, 500ms; 0: at every new flow)",
  },
  "api-socket": {
    type: "string",
    short: "a",
    arg: "PATH",
    help: "serve slirp4netns' JSON API (add_hostfwd, list_hostfwd, remove_hostfwd) on this " +
      "unix socket",
  },
  "pcap": {
    type: "string",
    arg: "PATH",
    help: "write every frame to and from the guest to this pcap file (Ethernet link type)",
  },
  "pcap-max-bytes": {
    type: "string",
    arg: "N",
    default: String(PCAP_MAX_BYTES_DEFAULT),
    help: "the capture stops for good (one line on stderr) before the file would exceed N " +
      "bytes; 0: no limit",
  },
  "metrics": {
    type: "string",
    arg: "tcp://HOST:PORT|unix://PATH",
    help: 'serve /health ("ok") and /metrics (Prometheus text) over HTTP; port 0 picks one, ' +
      'printed as "Running metrics on HOST:PORT" (slirpnetstack: -m)',
  },
  "exit-with-parent": {
    type: "boolean",
    help: "stop cleanly (as on SIGTERM) when the parent process dies",
  },
  "maxprocs": {
    type: "string",
    arg: "N",
    help: "accepted for slirpnetstack (GOMAXPROCS); slirpd's packet path is one thread, so " +
      "it changes nothing",
  },
  "locked": {
    type: "boolean",
    help: "slirp4netns form: start from the locked policy of the slirpnetstack form (only " +
      "--allow, --enable-host, --enable-routing open it) instead of slirp4netns' open one",
  },
  "version": {
    type: "boolean",
    short: "v",
    help: "print the version and exit (-version: slirpnetstack's lines with the build time; " +
      "-v, --version: slirp4netns', with SLIRP_CONFIG_VERSION_MAX)",
  },
  "quiet": { type: "boolean", short: "q", help: "do not log connections" },
  "help": { type: "boolean", short: "h", help: "show this help" },
};

export function helpText(): string {
  const lines = [
    "slirpd: user-mode networking for network namespaces",
    "",
    "usage: slirpd --netns PATH [--interface NAME] [OPTIONS]      (slirpnetstack form)",
    "       slirpd [OPTIONS] PID|PATH [TAPNAME]                    (slirp4netns form)",
    "       slirpd [OPTIONS] -- CMD [ARGS...]                      (CMD in a namespace of its own)",
    "",
    "options:",
  ];
  for (const [name, f] of Object.entries(FLAGS)) {
    const left = `  ${f.short ? `-${f.short}, ` : "    "}--${name}${f.arg ? ` ${f.arg}` : ""}`;
    const def = f.default !== undefined && f.type === "string" ? ` (default ${f.default})` : "";
    lines.push(`${left.padEnd(34)} ${f.help}${def}`);
  }
  return lines.join("\n");
}
