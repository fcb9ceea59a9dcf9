// A classic libpcap (not pcapng) writer for -pcap. slirpnetstack's gVisor sniffer writes
// LINKTYPE_RAW (101): bare IPv4/IPv6 packets, link header trimmed even in TAP mode, with
// snaplen = MTU. slirpd's frames are Ethernet (ARP and NDP are part of what a capture is
// for), so the daemon writes LINKTYPE_ETHERNET (1); readers branch on the global header.
// Direction is in the frame: the gateway MAC as source means "to the guest".
//
// Writes are synchronous on purpose: the caller is the packet path, a record must be on
// disk before the frame buffer is reused, and one writeSync per record means a crash
// leaves at most one torn record (tshark reports "cut short" and keeps the rest).

import { RawFile } from "../../ffi/rawfile.ts";

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;

/** Bytes in the file header and in each record header. */
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
/** Microsecond-resolution magic; written in host order (little-endian on x86/arm64). */
export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
/** libpcap's own MAXIMUM_SNAPLEN; larger values make some readers reject the file. */
export const PCAP_MAX_SNAPLEN = 262144;

/** Why the writer stopped for good. Reported once through `onStop`. */
export interface PcapStop {
  reason: "cap" | "error";
  /** File size when it stopped (the last complete record ends here unless reason=error). */
  bytes: number;
  /** Records written before stopping. */
  packets: number;
  error?: unknown;
}

export interface PcapOptions {
  /** LINKTYPE_RAW (slirpnetstack's choice) or LINKTYPE_ETHERNET. */
  linkType: number;
  /** Per-record capture limit; longer frames are truncated (orig_len keeps the length). */
  snapLen?: number;
  /**
   * Hard cap on the file size in bytes, headers included. A record that would cross it is
   * not written (no partial record) and the writer stops for good. 0 or absent: no cap.
   */
  maxBytes?: number;
  /** Called exactly once, when the cap is hit or a write fails. */
  onStop?: (stop: PcapStop) => void;
}

/** The subset of Deno.FsFile the writer uses, so tests can pass a fake. */
export interface SyncSink {
  writeSync(p: Uint8Array): number;
  close(): void;
  /**
   * Optional (ffi/rawfile.ts): writes a[0, an) and b[bo, bo+bn) in one call, straight from
   * both buffers; returns the bytes written. Used for frames in large buffers.
   */
  writeTwo?(a: Uint8Array, an: number, b: Uint8Array, bo: number, bn: number): number;
}

/** Frames in buffers at least this large go out with writeTwo (no copy, no view). */
const ZERO_COPY_MIN = 4096;

/** Wall clock in microseconds; performance.now() gives sub-ms precision, Date.now() not. */
export function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

export class PcapWriter {
  readonly linkType: number;
  readonly snapLen: number;
  readonly maxBytes: number;
  #sink: SyncSink | null;
  #onStop?: (stop: PcapStop) => void;
  // One scratch record (header + snapLen bytes) reused for every frame: a copy into it is
  // far cheaper than a second syscall, and there is no per-frame allocation.
  #rec: Uint8Array;
  #dv: DataView;
  #bytes = 0;
  #packets = 0;
  #stopped: PcapStop | null = null;

  /** Opens (create + truncate, 0644) and writes the global header at once. */
  static open(path: string, opts: PcapOptions): PcapWriter {
    // Truncate: slirpnetstack opens O_WRONLY|O_CREAT without O_TRUNC, so re-using a longer
    // old file leaves its tail after the new records. We do not copy that quirk.
    return new PcapWriter(RawFile.create(path), opts);
  }

  constructor(sink: SyncSink, opts: PcapOptions) {
    const snap = opts.snapLen ?? 65535;
    if (!Number.isInteger(snap) || snap < 1 || snap > PCAP_MAX_SNAPLEN) {
      throw new RangeError(`pcap: snapLen ${snap} out of 1..${PCAP_MAX_SNAPLEN}`);
    }
    if (!Number.isInteger(opts.linkType) || opts.linkType < 0 || opts.linkType > 0xffff) {
      throw new RangeError(`pcap: bad link type ${opts.linkType}`);
    }
    this.linkType = opts.linkType;
    this.snapLen = snap;
    this.maxBytes = opts.maxBytes ?? 0;
    this.#sink = sink;
    this.#onStop = opts.onStop;
    // (at least ZERO_COPY_MIN: writeTwo needs its bytes off the heap)
    this.#rec = new Uint8Array(Math.max(PCAP_RECORD_HEADER_LEN + snap, ZERO_COPY_MIN));
    this.#dv = new DataView(this.#rec.buffer);

    const h = new Uint8Array(PCAP_GLOBAL_HEADER_LEN);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, PCAP_MAGIC_USEC, true);
    dv.setUint16(4, 2, true); // version 2.4
    dv.setUint16(6, 4, true);
    // thiszone = 0 (UTC) and sigfigs = 0, as every modern writer does.
    dv.setUint32(16, snap, true);
    dv.setUint32(20, this.linkType, true);
    if (this.maxBytes > 0 && this.maxBytes < PCAP_GLOBAL_HEADER_LEN) {
      // Not even the header fits: an empty file is less surprising than a torn header.
      this.#stop({ reason: "cap", bytes: 0, packets: 0 });
      return;
    }
    this.#writeAll(h);
  }

  /** Bytes in the file so far. */
  get bytes(): number {
    return this.#bytes;
  }
  /** Records written so far. */
  get packets(): number {
    return this.#packets;
  }
  /** Non-null once the writer has stopped (cap or error); it never restarts. */
  get stopped(): PcapStop | null {
    return this.#stopped;
  }

  /**
   * Appends frame bytes b[o, o+n) as one record. Returns false if nothing was written
   * because the writer has stopped (now or earlier).
   */
  write(b: Uint8Array, o = 0, n = b.length - o, tsMicros = nowMicros()): boolean {
    if (this.#stopped || !this.#sink) return false;
    if (o < 0 || n < 0 || o + n > b.length) throw new RangeError("pcap: frame out of bounds");
    const incl = n < this.snapLen ? n : this.snapLen;
    const total = PCAP_RECORD_HEADER_LEN + incl;
    if (this.maxBytes > 0 && this.#bytes + total > this.maxBytes) {
      this.#stop({ reason: "cap", bytes: this.#bytes, packets: this.#packets });
      return false;
    }
    const dv = this.#dv;
    const sec = Math.floor(tsMicros / 1e6);
    dv.setUint32(0, sec >>> 0, true);
    dv.setUint32(4, tsMicros - sec * 1e6, true);
    dv.setUint32(8, incl, true);
    dv.setUint32(12, n, true);
    const sink = this.#sink;
    if (sink.writeTwo !== undefined && b.buffer.byteLength >= ZERO_COPY_MIN) {
      // The header from the record buffer, the frame from where it is: one writev.
      let k: number;
      try {
        k = sink.writeTwo(this.#rec, PCAP_RECORD_HEADER_LEN, b, o, incl);
      } catch (error) {
        this.#stop({ reason: "error", bytes: this.#bytes, packets: this.#packets, error });
        return false;
      }
      this.#bytes += k;
      if (k < total) {
        // A short write (rare: a signal, a full disk): finish the record the slow way.
        this.#rec.set(b.subarray(o, o + incl), PCAP_RECORD_HEADER_LEN);
        if (!this.#writeAll(this.#rec.subarray(k, total))) return false;
      }
      this.#packets++;
      return true;
    }
    this.#rec.set(b.subarray(o, o + incl), PCAP_RECORD_HEADER_LEN);
    if (!this.#writeAll(this.#rec.subarray(0, total))) return false;
    this.#packets++;
    return true;
  }

  /** Closes the file. Safe to call twice. */
  close(): void {
    const s = this.#sink;
    if (!s) return;
    this.#sink = null;
    try {
      s.close();
    } catch { /* already closed */ }
  }

  // writeSync may write less than asked (signals, pipes); loop until the record is out.
  #writeAll(p: Uint8Array): boolean {
    try {
      const sink = this.#sink;
      if (!sink) throw new Error("pcap: writer is closed");
      let off = 0;
      while (off < p.length) {
        const k = sink.writeSync(off === 0 ? p : p.subarray(off));
        if (k <= 0) throw new Error("pcap: short write");
        off += k;
        this.#bytes += k;
      }
      return true;
    } catch (error) {
      this.#stop({ reason: "error", bytes: this.#bytes, packets: this.#packets, error });
      return false;
    }
  }

  #stop(stop: PcapStop): void {
    if (this.#stopped) return;
    this.#stopped = stop;
    this.#onStop?.(stop);
  }
}
