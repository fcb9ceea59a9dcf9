// The flow table: guest 4-tuple → connection (TCP) or flow (UDP, ping), looked up once per guest segment.
//
// The key is read in place from the received packet (address offsets into the frame plus
// the two ports), hashed with a per-process random seed (so a guest cannot aim collisions at
// one bucket) and compared byte by byte: no string keys, no allocation per packet. Buckets
// chain through an intrusive `hnext` field; the table is bounded (`max`), the caller decides
// what to do when it is full.

import { bytesEqual } from "../wire/bytes.ts";

/** What the table needs from a connection. */
export interface Keyed {
  family: 4 | 6;
  /** The guest's address and port (source of the guest's packets). */
  guestAddr: Uint8Array;
  guestPort: number;
  /** The address and port the guest talks to (destination of its packets). */
  remoteAddr: Uint8Array;
  remotePort: number;
  hash: number;
  hnext: Keyed | null;
}

const SEED = (Math.random() * 0x1_0000_0000) >>> 0;

function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x9e3779b1);
  return (h ^ (h >>> 15)) >>> 0;
}

function word(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Hash of a 4-tuple whose addresses are read at offsets in (possibly different) buffers. */
export function tupleHash(
  family: 4 | 6,
  ga: Uint8Array,
  gaOff: number,
  gPort: number,
  ra: Uint8Array,
  raOff: number,
  rPort: number,
): number {
  let h = mix(SEED ^ family, (gPort << 16) | rPort);
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i += 4) h = mix(h, word(ga, gaOff + i));
  for (let i = 0; i < n; i += 4) h = mix(h, word(ra, raOff + i));
  return h;
}

export class ConnTable<C extends Keyed> {
  readonly #buckets: (C | null)[];
  readonly #mask: number;
  #size = 0;

  constructor(readonly max: number) {
    let n = 64;
    while (n < max * 2) n <<= 1;
    this.#buckets = new Array<C | null>(n).fill(null);
    this.#mask = n - 1;
  }

  get size(): number {
    return this.#size;
  }

  get full(): boolean {
    return this.#size >= this.max;
  }

  /** The connection for a guest packet (addresses at offsets in `b`), or null. */
  lookup(
    family: 4 | 6,
    b: Uint8Array,
    guestOff: number,
    guestPort: number,
    remoteOff: number,
    remotePort: number,
  ): C | null {
    const h = tupleHash(family, b, guestOff, guestPort, b, remoteOff, remotePort);
    let c = this.#buckets[h & this.#mask];
    while (c !== null) {
      if (
        c.hash === h && c.guestPort === guestPort && c.remotePort === remotePort &&
        c.family === family && bytesEqual(c.guestAddr, 0, b, guestOff, c.guestAddr.length) &&
        bytesEqual(c.remoteAddr, 0, b, remoteOff, c.remoteAddr.length)
      ) return c;
      c = c.hnext as C | null;
    }
    return null;
  }

  /** Adds c (its key must not be in the table). Computes c.hash. */
  insert(c: C): void {
    c.hash = tupleHash(
      c.family,
      c.guestAddr,
      0,
      c.guestPort,
      c.remoteAddr,
      0,
      c.remotePort,
    );
    const i = c.hash & this.#mask;
    c.hnext = this.#buckets[i];
    this.#buckets[i] = c;
    this.#size++;
  }

  /** Removes c; false if it was not in the table. */
  remove(c: C): boolean {
    const i = c.hash & this.#mask;
    let p = this.#buckets[i];
    if (p === c) {
      this.#buckets[i] = c.hnext as C | null;
    } else {
      while (p !== null && p.hnext !== c) p = p.hnext as C | null;
      if (p === null) return false;
      p.hnext = c.hnext;
    }
    c.hnext = null;
    this.#size--;
    return true;
  }

  /** Every connection (a snapshot array: setup, shutdown and debug paths only). */
  all(): C[] {
    const out: C[] = [];
    for (let c of this.#buckets) {
      while (c !== null) {
        out.push(c);
        c = c.hnext as C | null;
      }
    }
    return out;
  }
}
