// The guest's tap device: open/attach it, negotiate the virtio-net header and offloads, and
// move single frames with sync read()/write() (~0.2 µs per call, no allocation).
//
// A tun fd belongs to the netns that was current when /dev/net/tun was opened, so the fd comes
// from a `GuestNetns` (netns.ts) made inside the guest netns, or `openTap` is called inside a
// `withNetns` window and opens one itself. The ioctls below then work from anywhere.
//
// Existence checks ask the guest netns (SIOCGIFINDEX on the guest's netlink socket), never
// /sys/class/net: sysfs shows the netns of whoever mounted it, i.e. the host's.

import {
  EAGAIN,
  EBUSY,
  ECONNREFUSED,
  ECONNRESET,
  EINVAL,
  EIO,
  ENOBUFS,
  ENODEV,
  ENOTCONN,
  EPIPE,
  errnoName,
} from "./errno.ts";
import { check, errno, openLibc, SyscallError } from "./libc.ts";
import { closeFd, guestHere, GuestNetns, O_NONBLOCK } from "./netns.ts";

// ioctl numbers: generic _IOW/_IOR encoding, identical on x86_64 and aarch64.
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int), arg: struct ifreq *
const TUNGETFEATURES = 0x800454cf; // _IOR('T', 207, unsigned int), arg: unsigned int *
const TUNSETOFFLOAD = 0x400454d0; // _IOW('T', 208, unsigned int), arg: the flags by value
const TUNSETVNETHDRSZ = 0x400454d8; // _IOW('T', 216, int), arg: int *
const TUNGETIFF = 0x800454d2; // _IOR('T', 210, unsigned int), arg: struct ifreq *
const SIOCGIFINDEX = 0x8933; // arg: struct ifreq * (name in, ifr_ifindex out)

// struct ifreq (40 bytes): char ifr_name[16]; then a union at 16 holding
// short ifr_flags (TUNSETIFF) or int ifr_ifindex (SIOCGIFINDEX).
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
const IFR_UNION = 16;

export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
/** UDP segmentation offload (Linux 6.2+), only accepted as a pair. */
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** sizeof(struct virtio_net_hdr): flags u8, gso_type u8, hdr_len, gso_size, csum_start, csum_offset u16. */
export const VNET_HDR_LEN = 10;

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const F_GETFL = 3;
const F_SETFL = 4;

const libc = openLibc({
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctlVal: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
});

export interface TapOptions {
  /** Interface name in the guest netns (at most 15 bytes). */
  name: string;
  /** true: create the tap if missing (attach if a free tap exists); false: attach only. */
  create: boolean;
  /** Ask for IFF_VNET_HDR (used only when the kernel offers it). */
  vnetHdr: boolean;
  /** With the vnet header: TUNSETOFFLOAD(CSUM|TSO4|TSO6), falling back to CSUM, then none. */
  offload: boolean;
}

/** One attached tap queue. Frames are `[vnet header (vnetLen)][Ethernet]`. */
export class Tap {
  #fd: number;
  /** Frames dropped by `write` because the tap queue was full or the link down. */
  writeDrops = 0;
  /** -fd: the socket's peer is gone (read or write said so); the daemon stops. */
  peerGone = false;

  constructor(
    fd: number,
    /** The device name as the kernel has it. */
    readonly name: string,
    /** Interface index in the guest netns. */
    readonly ifindex: number,
    /** 10 with IFF_VNET_HDR, else 0. */
    readonly vnetLen: 0 | 10,
    /** The TUN_F_* flags TUNSETOFFLOAD accepted (0 = none). */
    readonly offloadFlags: number,
    /** True when this call created the device (it disappears when the fd closes). */
    readonly created: boolean,
    /**
     * The kernel knows USO (TUNSETOFFLOAD took USO4|USO6, Linux 6.2+: the same series taught
     * the tap to take UDP_L4 GSO frames from us). Probed and turned off again: the guest
     * still hands us single datagrams.
     */
    readonly usoKnown = false,
  ) {
    this.#fd = fd;
  }

  /** The tap fd (-1 once closed); a `Pollable`. */
  get fd(): number {
    return this.#fd;
  }

  /** TSO is on: the guest may hand us ~64 KB TCP super-frames and accepts GSO frames. */
  get offloaded(): boolean {
    return (this.offloadFlags & (TUN_F_TSO4 | TUN_F_TSO6)) !== 0;
  }

  /** UDP_L4 GSO frames (one UDP header, gso_size datagrams behind it) may be written. */
  get uso(): boolean {
    return this.offloaded && this.usoKnown;
  }

  /** Reads one frame into `buf` at offset 0. Returns its length, 0 when none is queued. */
  read(buf: Uint8Array): number {
    const n = Number(libc.read(this.#fd, buf, buf.length));
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return 0;
    if (gone(e)) {
      this.peerGone = true;
      return 0;
    }
    throw new SyscallError("read", e, this.name);
  }

  /**
   * Writes one frame (`buf[0, len)`). false when the kernel refused it for lack of room
   * (EAGAIN, ENOBUFS) or because the guest set the link down (EIO): counted in `writeDrops`,
   * the sender's retransmission deals with it. Anything else is a bug and throws.
   */
  write(buf: Uint8Array, len: number): boolean {
    if (Number(libc.write(this.#fd, buf, len)) >= 0) return true;
    const e = errno();
    if (e === EAGAIN || e === ENOBUFS || e === EIO || gone(e)) {
      if (gone(e)) this.peerGone = true;
      this.writeDrops++;
      return false;
    }
    throw new SyscallError("write", e, this.name);
  }

  /** Closes the fd; a tap this process created is destroyed by the kernel with it. */
  close(): void {
    closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** A -fd socket whose other end was closed (never seen on a tap). */
function gone(e: number): boolean {
  return e === ECONNREFUSED || e === ECONNRESET || e === ENOTCONN || e === EPIPE;
}

function ifreq(name: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(IFREQ_SIZE);
  b.set(new TextEncoder().encode(name));
  return b;
}

/** Interface index of `name` in the netns of socket `sock`; 0 when there is no such device. */
export function ifindexIn(sock: number, name: string): number {
  const ifr = ifreq(name);
  if (libc.ioctl(sock, SIOCGIFINDEX, ifr) < 0) {
    const e = errno();
    if (e === ENODEV) return 0;
    throw new SyscallError("ioctl SIOCGIFINDEX", e, name);
  }
  return new DataView(ifr.buffer).getInt32(IFR_UNION, true);
}

function checkName(name: string): void {
  const len = new TextEncoder().encode(name).length;
  if (len === 0 || len >= IFNAMSIZ || /[\s/:%]/.test(name)) {
    throw new Error(
      `--interface ${name}: not a valid interface name (1-15 bytes, no / : % or space)`,
    );
  }
}

/**
 * Opens the guest's tap. `ns` supplies fds made in the guest netns; without it the call must
 * run inside `withNetns` and opens its own. Errors are meant for the user:
 * `--interface tun0: no such tap in the namespace /proc/1/ns/net`.
 */
export function openTap(opts: TapOptions, ns?: GuestNetns): Tap {
  checkName(opts.name);
  const g = ns ?? guestHere();
  let fd = -1;
  try {
    fd = g.takeTun();
    return setup(fd, opts, g);
  } catch (e) {
    closeFd(fd);
    throw e;
  } finally {
    if (!ns) g.close();
  }
}

function setup(fd: number, opts: TapOptions, g: GuestNetns): Tap {
  const where = `--interface ${opts.name}`;
  const u32 = new Uint32Array(1);
  check(
    libc.ioctl(fd, TUNGETFEATURES, new Uint8Array(u32.buffer)),
    "ioctl TUNGETFEATURES",
    "/dev/net/tun",
  );
  const vnet = opts.vnetHdr && (u32[0] & IFF_VNET_HDR) !== 0;

  const before = ifindexIn(g.rtnl, opts.name);
  if (!opts.create && before === 0) {
    throw new Error(`${where}: no such tap in the namespace ${g.path}`);
  }

  // TUNSETIFF attaches to an existing tap of that name or creates a non-persistent one (gone
  // when the fd closes). Without IFF_TUN_EXCL on purpose: `create` also reuses a free tap.
  const ifr = ifreq(opts.name);
  new DataView(ifr.buffer).setInt16(
    IFR_UNION,
    IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0),
    true,
  );
  if (libc.ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = errno();
    if (e === EINVAL && before !== 0) {
      throw new Error(`${where}: exists and is not a (single-queue) tap device`);
    }
    if (e === EBUSY) throw new Error(`${where}: the tap is already in use by another process`);
    throw new SyscallError("ioctl TUNSETIFF", e, opts.name);
  }
  const end = ifr.indexOf(0);
  const name = new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end));
  const ifindex = ifindexIn(g.rtnl, name);
  // The tap vanished between the check and TUNSETIFF, which then made a fresh one: closing
  // our fd (the caller does, on throw) deletes that one again.
  if (!opts.create && ifindex !== before) {
    throw new Error(`${where}: no such tap in the namespace ${g.path}`);
  }

  let offloadFlags = 0;
  if (vnet) {
    u32[0] = VNET_HDR_LEN;
    check(
      libc.ioctl(fd, TUNSETVNETHDRSZ, new Uint8Array(u32.buffer)),
      "ioctl TUNSETVNETHDRSZ",
      name,
    );
    if (opts.offload) offloadFlags = setOffload(fd, name);
  }
  const usoKnown = (offloadFlags & TUN_F_USO4) !== 0;
  offloadFlags &= ~(TUN_F_USO4 | TUN_F_USO6);
  // Clear offloads a previous user of an attached tap may have left on: without them the
  // kernel must hand us whole, checksummed frames.
  if (offloadFlags === 0) libc.ioctlVal(fd, TUNSETOFFLOAD, 0);

  // The helper's fd (userns.ts) was opened blocking; the direct one already has O_NONBLOCK.
  const fl = check(libc.fcntl(fd, F_GETFL, 0), "fcntl F_GETFL", name);
  check(libc.fcntl(fd, F_SETFL, fl | O_NONBLOCK), "fcntl F_SETFL", name);
  const vnetLen = vnet ? VNET_HDR_LEN : 0;
  return new Tap(fd, name, ifindex, vnetLen, offloadFlags, before === 0, usoKnown);
}

/**
 * -fd: an inherited descriptor that carries one Ethernet frame per read and write, as
 * slirpnetstack's -fd: a socketpair(AF_UNIX, SOCK_DGRAM) end (gVisor hands its link over
 * that way) or an attached tap fd. A tap is recognised by TUNGETIFF; if its owner turned
 * IFF_VNET_HDR on, the header is used (10 bytes) with the offloads the kernel accepts.
 * Made nonblocking and close-on-exec. Throws with a line naming the flag.
 */
export function adoptFrameFd(fd: number, vnetHdr: boolean): Tap {
  const what = `-fd ${fd}`;
  const fdFlags = libc.fcntl(fd, F_GETFD, 0);
  if (fdFlags < 0) throw new Error(`${what}: not an open descriptor (${errnoName(errno())})`);
  libc.fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC);
  const fl = check(libc.fcntl(fd, F_GETFL, 0), "fcntl F_GETFL", what);
  const ifr = ifreq("");
  let vnet = false, offloadFlags = 0, name = `fd${fd}`;
  if (libc.ioctl(fd, TUNGETIFF, ifr) === 0) {
    const flags = new DataView(ifr.buffer).getUint16(IFR_UNION, true);
    if ((flags & IFF_TAP) === 0) throw new Error(`${what}: a tun (IP) device, not a tap`);
    const end = ifr.indexOf(0);
    name = new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end));
    vnet = (flags & IFF_VNET_HDR) !== 0;
    if (vnet) {
      const u32 = new Uint32Array([VNET_HDR_LEN]);
      check(libc.ioctl(fd, TUNSETVNETHDRSZ, new Uint8Array(u32.buffer)), "TUNSETVNETHDRSZ", what);
      offloadFlags = vnetHdr ? setOffload(fd, name) : 0;
    }
    if (offloadFlags === 0) libc.ioctlVal(fd, TUNSETOFFLOAD, 0);
  }
  check(libc.fcntl(fd, F_SETFL, fl | O_NONBLOCK), "fcntl F_SETFL", what);
  const usoKnown = (offloadFlags & TUN_F_USO4) !== 0;
  offloadFlags &= ~(TUN_F_USO4 | TUN_F_USO6);
  return new Tap(fd, name, 0, vnet ? VNET_HDR_LEN : 0, offloadFlags, false, usoKnown);
}

/**
 * Tries TSO + checksum, then checksum only; returns what the kernel accepted. With TSO, USO
 * is probed (accepted: USO4|USO6 in the result, for the caller to take out) and set back
 * off: slirpd writes UDP_L4 GSO frames but does not take them from the guest.
 */
function setOffload(fd: number, name: string): number {
  const tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (libc.ioctlVal(fd, TUNSETOFFLOAD, tso | TUN_F_USO4 | TUN_F_USO6) === 0) {
    if (libc.ioctlVal(fd, TUNSETOFFLOAD, tso) === 0) return tso | TUN_F_USO4 | TUN_F_USO6;
    throw new SyscallError("ioctl TUNSETOFFLOAD", errno(), name);
  }
  for (const flags of [tso, TUN_F_CSUM]) {
    if (libc.ioctlVal(fd, TUNSETOFFLOAD, flags) === 0) return flags;
    const e = errno();
    if (e !== EINVAL) throw new SyscallError("ioctl TUNSETOFFLOAD", e, name);
  }
  return 0;
}

/** A TUN_F_* mask for logs: "csum,tso4,tso6" or "none". */
export function offloadNames(flags: number): string {
  const names = [];
  if (flags & TUN_F_CSUM) names.push("csum");
  if (flags & TUN_F_TSO4) names.push("tso4");
  if (flags & TUN_F_TSO6) names.push("tso6");

  return names.length ? names.join(",") : "none";
}
