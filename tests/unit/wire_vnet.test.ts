// virtio_net_hdr: little-endian layout and the view/emitter pair.

import assert from "node:assert/strict";
import {
  emitVnet,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VNET_HDR_LEN,
  VnetView,
} from "../../stack/wire/vnet.ts";

Deno.test("vnet: layout is struct virtio_net_hdr, little-endian", () => {
  const b = new Uint8Array(16);
  assert.equal(
    emitVnet(b, 2, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16),
    VNET_HDR_LEN,
  );
  // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (linux/virtio_net.h).
  assert.deepEqual([...b.subarray(2, 12)], [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
  const v = new VnetView();
  assert.ok(v.parse(b, 2, 14));
  assert.deepEqual(
    [v.flags, v.needsCsum, v.dataValid, v.gsoType, v.hdrLen, v.gsoSize, v.csumStart, v.csumOffset],
    [1, true, false, 1, 66, 1448, 34, 16],
  );
  emitVnet(
    b,
    0,
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN,
    0xfffe,
    0x1234,
    0,
    0,
  );
  assert.ok(v.parse(b, 0, 10));
  assert.ok(v.dataValid && !v.needsCsum);
  assert.equal(v.gsoType & 0x7f, VIRTIO_NET_HDR_GSO_TCPV6);
  assert.equal(v.gsoType & VIRTIO_NET_HDR_GSO_ECN, 0x80);
  assert.equal(v.hdrLen, 0xfffe);
  assert.equal(v.gsoSize, 0x1234);
  assert.deepEqual([VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_UDP], [0, 3]);
  assert.ok(!v.parse(b, 0, 9));
  assert.ok(!v.parse(b, 7, 10), "header past the buffer");
});
