// Every number the TCP engine could be tuned by, in one place, each with where it comes from:
// an RFC, Linux (whose guest kernel is at the other end, so its habits are the ones that
// fit), or slirpd's own design (see DESIGN.md). Protocol facts that are not choices (header
// lengths, option sizes) stay where the wire format is written.

// --- Segment size (MSS) ---

/** Default MSS when an IPv4 SYN carries none (RFC 9293 §3.7.1). */
export const DEFAULT_MSS_V4 = 536;
/** Default MSS when an IPv6 SYN carries none: 1280 - 40 - 20 (RFC 8200 §5, RFC 9293 §3.7.1). */
export const DEFAULT_MSS_V6 = 1220;
/** The smallest MSS we accept from a guest (slirpd's floor, below any sane link). */
export const MIN_MSS = 64;
/** Bytes of the timestamp option every segment carries when negotiated (RFC 7323 §3, RFC 6691). */
export const TS_OPTION_LEN = 12;

// --- Window ---

/** The window shift we offer (RFC 7323): up to 65535 << 7 ≈ 8 MiB, above any send buffer. */
export const OUR_WSCALE = 7;
/** In-order guest bytes after which an ACK goes at once rather than at flush() (slirpd). */
export const ACK_EVERY_BYTES = 64 * 1024;

// --- Retransmission timer (RFC 6298) ---

/** Lower bound of the RTO: Linux's 200 ms (RFC 6298 §2.4 asks 1 s; the link is local). */
export const MIN_RTO = 200;
/** Upper bound of the RTO (RFC 6298 §2.5: at least 60 s). */
export const MAX_RTO = 60_000;
/** RTO before the first RTT sample (RFC 6298 §2.1). */
export const INITIAL_RTO = 1000;
/** Largest backoff exponent (the RTO doubles per timeout, RFC 6298 §5.5; MAX_RTO caps it). */
export const MAX_BACKOFF_SHIFT = 16;
/** Consecutive timeouts before the connection is given up (both sides get RST; Linux-like). */
export const MAX_BACKOFF = 10;
/** SYN / SYN-ACK retransmissions before giving up (Linux tcp_synack_retries is 5). */
export const MAX_SYN_RETRIES = 5;

// --- Probe timeout: tail loss probe and recovery probe (RFC 8985 §7) ---

/** PTO = this × SRTT (RFC 8985 §7.2). */
export const PTO_SRTT_FACTOR = 2;
/**
 * Added to the PTO when one segment at most is in flight: it may sit in the guest's
 * delayed-ACK timer (RFC 8985 §7.2 WCDelAckT; Linux's delayed ACK is 40 ms).
 */
export const PTO_DELAYED_ACK_MS = 40;
/** Smallest PTO, ms (slirpd's: a local link's SRTT can be far below a millisecond). */
export const PTO_MIN_MS = 5;

// --- Loss detection in recovery (RFC 8985 RACK-like; the tap never reorders) ---

/**
 * A retransmission is presumed lost when the hole at sndUna is still there this many SRTTs
 * (plus RACK_SLACK_MS) after it was sent (RFC 8985 §6.2: RTT plus a reordering window).
 */
export const RACK_RTT_FACTOR = 1.25;
export const RACK_SLACK_MS = 1;
/** Duplicate ACKs that mean a loss without SACK information (RFC 5681 §3.2 DupThresh). */
export const DUP_THRESH = 3;

// --- Congestion control (RFC 5681, RFC 6928) ---

/** Initial window in segments (RFC 6928). */
export const INITIAL_WINDOW_SEGMENTS = 10;
/** Initial ssthresh: "arbitrarily high" (RFC 5681 §3.1). */
export const INITIAL_SSTHRESH = 0x7fffffff;
/** Largest cwnd, bytes (slirpd's bound: far above any host socket buffer). */
export const MAX_CWND = 64 << 20;
/** SACK scoreboard blocks kept per connection (RFC 2018 reports at most 4 per segment). */
export const SCOREBOARD_BLOCKS = 4;

// --- Sending to the guest (output.ts) ---

/** Most segments or GSO frames one pushData call sends before yielding (slirpd's bound). */
export const PUSH_ROUNDS_MAX = 256;
/** Segments of at most this size are cut from one larger peek when there is no GSO. */
export const CUT_SEG_MAX = 16 * 1024;
/** The peek for cutting: at most 64 KiB, into the upper half of the 128 KiB Tx buffer. */
export const CUT_CHUNK = 64 * 1024;

// --- Writing to the host (forwarder.ts) ---

/** Bytes of an in-order segment below which it is gathered rather than sent at once. */
export const COALESCE_BELOW = 16 * 1024;
/** Gathered bytes that are written at once rather than at the end of the batch. */
export const FLUSH_AT = 64 * 1024;

// --- Defaults of TcpConfig's optional fields ---

/** Most connections (TIME-WAIT included). */
export const DEFAULT_MAX_CONNS = 16384;
/** TIME-WAIT length: 2*MSL (RFC 9293 §3.4.2) scaled down like slirp stacks do, ms. */
export const DEFAULT_TIME_WAIT_MS = 5000;
/** Keepalive idle time (RFC 1122 §4.2.3.6: no less than two hours), ms. */
export const DEFAULT_KEEP_IDLE_MS = 7_200_000;
/** Keepalive probe interval and count (Linux's tcp_keepalive_intvl / tcp_keepalive_probes). */
export const DEFAULT_KEEP_INTERVAL_MS = 75_000;
export const DEFAULT_KEEP_COUNT = 9;
/** RecvStore pool: buffer size and count (1 MiB × 32 = 32 MiB at most; slirpd's bound). */
export const STORE_BUF_SIZE = 1 << 20;
export const STORE_BUFFERS = 32;
/**
 * Free store buffers kept when the pool is trimmed, and how long after the first buffer beyond
 * them came back it is (ms): after a burst of small-segment uploads the rest (up to 28 MiB)
 * goes back to the system.
 */
export const STORE_KEEP_FREE = 4;
export const STORE_TRIM_MS = 10_000;
/** Most disjoint byte ranges one connection's RecvStore keeps (RFC 2018 reports at most 4). */
export const STORE_RANGES_MAX = 8;

// --- SYN flood bounds (slirpd's: a guest SYN becomes a real host connect()) ---

/**
 * Most half-open guest connections (host connect() in flight, or SYN-ACK sent and the
 * handshake not completed) at once, in all; a new SYN beyond it evicts the oldest (see
 * HALF_OPEN_EVICT_AGE_MS).
 */
export const MAX_HALF_OPEN = 4096;
/**
 * Most half-open connections to one destination (address and port, hashed in buckets). Sized
 * like Linux's own SYN backlog (tcp_max_syn_backlog, somaxconn): a guest's legitimate burst
 * (a test harness opening thousands of connections at once) must not wait for SYN
 * retransmissions, while a flood still costs at most this many host connections per
 * destination for ~3 s each (64 here made 10,000 connections opened at once miss a 30 s
 * deadline, and 200 parallel connects wait 1 s for most of them).
 */
export const MAX_HALF_OPEN_PER_DST = 1024;
/**
 * At a bound, the oldest half-open connection is evicted only when it is at least this old
 * (ms). Otherwise the new SYN is dropped unanswered and the guest sends it again (Linux after
 * 1 s): a burst of a few hundred parallel connects still gets through, a flood does not. Three
 * initial RTOs: a guest's own burst mostly completes its handshakes within milliseconds, but
 * one of 10,000 connections at once overflows its tap queue, and an ACK lost there comes again
 * only after our SYN-ACK's retransmission at INITIAL_RTO; at 1 s those connections were evicted
 * (reset in the guest's face: 54-380 of 10,000 in one of three bench bursts).
 */
export const HALF_OPEN_EVICT_AGE_MS = 3 * INITIAL_RTO;
/**
 * The same for a connection whose host connect() is still in flight: a busy host server (a
 * full listen backlog drops SYNs; the kernel retries after 1 s, 3 s, ...) or a loaded machine
 * makes a real connect take seconds, and evicting it would refuse a connection the guest
 * really asked for. A flood to a black hole is still bounded: per destination, in all, and by
 * this age.
 */
export const HALF_OPEN_CONNECTING_EVICT_AGE_MS = 10_000;
/** Destination buckets for the per-destination count (a power of two). */
export const HALF_OPEN_BUCKETS = 1024;
/**
 * SYN-ACK retransmissions before a guest that does not complete the handshake is given up:
 * 2 (1 s + 2 s + 4 s, ~7 s in SYN-RECEIVED; the tap does not lose frames, a SYN flood does
 * not answer). SYN retransmissions of an active open (port forwards) keep MAX_SYN_RETRIES.
 */
export const MAX_SYNACK_RETRIES = 2;
