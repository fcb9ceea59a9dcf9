// struct tcp_info (getsockopt TCP_INFO) decoded into a reused object: the few fields a
// forwarder wants (state, RTT, cwnd, in-flight, windows, byte counters). The kernel copies
// min(our length, its struct size), so fields newer than the running kernel read -1; `size`
// says how much it gave. Offsets are from include/uapi/linux/tcp.h and are checked against
// `ss -ti` (which reads the same struct via netlink) by tests/ns/ffi_socket.test.ts.

import { INFO, s32, scratch } from "./sockio.ts";

/** tcpi_state values (include/net/tcp_states.h). */
export const TcpState = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
} as const;

/** The few struct tcp_info fields a forwarder wants, refreshed in place by tcpInfo(). */
export class TcpInfo {
  /** Bytes of struct tcp_info the kernel returned (232 on 5.19+; fields past it read -1). */
  size = 0;
  state = 0; // tcpi_state: TcpState.*
  caState = 0; // congestion-avoidance state (0 open, 4 loss)
  retransmits = 0; // consecutive RTO retransmits in progress
  rto = 0; // µs
  sndMss = 0;
  rcvMss = 0;
  unacked = 0; // segments in flight
  lost = 0;
  retrans = 0;
  pmtu = 0;
  rcvSsthresh = 0;
  rtt = 0; // smoothed RTT, µs
  rttvar = 0; // µs
  sndSsthresh = 0;
  sndCwnd = 0; // segments
  advmss = 0;
  rcvSpace = 0;
  totalRetrans = 0;
  bytesAcked = 0;
  bytesReceived = 0;
  segsOut = 0;
  segsIn = 0;
  notsentBytes = 0;
  minRtt = 0; // µs
  bytesSent = 0;
  bytesRetrans = 0;
  sndWnd = -1; // peer's advertised window, bytes (kernel 5.19+)
  rcvWnd = -1; // our advertised window, bytes (kernel 6.2+)
}

const TI = {
  state: 0,
  caState: 1,
  retransmits: 2,
  rto: 8,
  sndMss: 16,
  rcvMss: 20,
  unacked: 24,
  lost: 32,
  retrans: 36,
  pmtu: 60,
  rcvSsthresh: 64,
  rtt: 68,
  rttvar: 72,
  sndSsthresh: 76,
  sndCwnd: 80,
  advmss: 84,
  rcvSpace: 96,
  totalRetrans: 100,
  bytesAcked: 120,
  bytesReceived: 128,
  segsOut: 136,
  segsIn: 140,
  notsentBytes: 144,
  minRtt: 148,
  bytesSent: 200,
  bytesRetrans: 208,
  sndWnd: 228,
  rcvWnd: 232,
} as const;

const u32At = (o: number) => s32[(INFO + o) >>> 2];
const u64At = (o: number) => s32[((INFO + o) >>> 2) + 1] * 0x100000000 + s32[(INFO + o) >>> 2];

/** Decodes the struct the kernel just wrote at INFO in the scratch (`size` bytes of it). */
export function fillTcpInfo(t: TcpInfo, size: number): void {
  t.size = size;
  t.state = scratch[INFO + TI.state];
  t.caState = scratch[INFO + TI.caState];
  t.retransmits = scratch[INFO + TI.retransmits];
  t.rto = u32At(TI.rto);
  t.sndMss = u32At(TI.sndMss);
  t.rcvMss = u32At(TI.rcvMss);
  t.unacked = u32At(TI.unacked);
  t.lost = u32At(TI.lost);
  t.retrans = u32At(TI.retrans);
  t.pmtu = u32At(TI.pmtu);
  t.rcvSsthresh = u32At(TI.rcvSsthresh);
  t.rtt = u32At(TI.rtt);
  t.rttvar = u32At(TI.rttvar);
  t.sndSsthresh = u32At(TI.sndSsthresh);
  t.sndCwnd = u32At(TI.sndCwnd);
  t.advmss = u32At(TI.advmss);
  t.rcvSpace = u32At(TI.rcvSpace);
  t.totalRetrans = u32At(TI.totalRetrans);
  t.bytesAcked = size >= TI.bytesAcked + 8 ? u64At(TI.bytesAcked) : -1;
  t.bytesReceived = size >= TI.bytesReceived + 8 ? u64At(TI.bytesReceived) : -1;
  t.segsOut = size >= TI.segsOut + 4 ? u32At(TI.segsOut) : -1;
  t.segsIn = size >= TI.segsIn + 4 ? u32At(TI.segsIn) : -1;
  t.notsentBytes = size >= TI.notsentBytes + 4 ? u32At(TI.notsentBytes) : -1;
  t.minRtt = size >= TI.minRtt + 4 ? u32At(TI.minRtt) : -1;
  t.bytesSent = size >= TI.bytesSent + 8 ? u64At(TI.bytesSent) : -1;
  t.bytesRetrans = size >= TI.bytesRetrans + 8 ? u64At(TI.bytesRetrans) : -1;
  t.sndWnd = size >= TI.sndWnd + 4 ? u32At(TI.sndWnd) : -1;
  t.rcvWnd = size >= TI.rcvWnd + 4 ? u32At(TI.rcvWnd) : -1;
}
