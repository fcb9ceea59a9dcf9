// Counters of what the stack dropped or did, by reason. Plain numeric fields (cheap to bump on
// the hot path); `snapshot()` lists the non-zero ones for logs and tests.

export class Counters {
  framesIn = 0;
  framesOut = 0;
  /** Ethernet bytes (no vnet header) in each direction. */
  bytesIn = 0;
  bytesOut = 0;
  /** Shorter than an Ethernet header, or a vnet header that makes no sense. */
  dropMalformedLink = 0;
  /** Ethernet frames not for us (another unicast MAC) or of an ethertype we do not speak. */
  dropNotForUs = 0;
  dropUnknownEthertype = 0;
  dropMalformedArp = 0;
  dropMalformedIp = 0;
  dropBadIpChecksum = 0;
  dropMalformedL4 = 0;
  dropBadL4Checksum = 0;
  /** Malformed IP fragments (bad length, too many holes, a fragment inside a reassembly). */
  dropFragment = 0;
  /** Fragments whose data was already received (RFC 5722 erratum 3089: ignored). */
  dropFragmentDup = 0;
  /** Datagrams abandoned in reassembly: overlap (RFC 5722), timeout, memory, too big. */
  dropReasmOverlap = 0;
  dropReasmTimeout = 0;
  dropReasmEvicted = 0;
  dropReasmTooBig = 0;
  /** Datagrams reassembled from fragments, and fragments sent to the guest. */
  reasmDone = 0;
  fragsOut = 0;
  /** Source addresses the guest may not use (stack/ip/source.ts): loopback, multicast, ... */
  dropBadSource = 0;
  /** Protocols or destinations nothing handles. */
  dropUnhandled = 0;
  /** Flows the policy refused. */
  dropPolicy = 0;
  /** A frame that hit a bug in slirpd (caught; see the log line). */
  dropInternalError = 0;
  /** Frames the tap would not take (queue full). */
  txDrops = 0;
  arpReplies = 0;
  ndpAdverts = 0;
  echoReplies = 0;

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) {
      if (typeof v === "number" && v !== 0) out[k] = v;
    }
    return out;
  }

  /** Total of every drop counter. */
  drops(): number {
    let n = 0;
    for (const [k, v] of Object.entries(this)) {
      if (k.startsWith("drop") && typeof v === "number") n += v;
    }
    return n;
  }
}
