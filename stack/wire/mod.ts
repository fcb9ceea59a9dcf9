// Everything in stack/wire, for callers that prefer one import. The per-protocol files are
// the reference; this barrel also proves that no two of them export the same name.

export * from "./bytes.ts";
export * from "./checksum.ts";
export * from "./ethernet.ts";
export * from "./arp.ts";
export * from "./ipv4.ts";
export * from "./ipv6.ts";
export * from "./icmpv4.ts";
export * from "./icmpv6.ts";
export * from "./ndp.ts";
export * from "./udp.ts";
export * from "./tcp.ts";
export * from "./vnet.ts";
