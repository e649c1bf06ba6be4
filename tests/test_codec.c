/* Unit test of the frame codec (common/codec.c): round trips, and
 * every malformed header we can think of is rejected with a reason —
 * bad magic, reserved flags, unknown ops, wrong payload lengths for
 * each op, oversized counts and lengths, zero handles, out-of-range
 * offsets, non-power-of-two ALLOC sizes — plus reply validation and
 * the errno table.
 */
#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

static int
decode (const struct rp_req *in)
{
  uint8_t buf[sizeof (struct rp_req_hdr)];
  struct rp_req out;
  const char *why = NULL;
  int r;

  rp_req_encode (in, buf);
  r = rp_req_decode (buf, &out, &why);
  if (r == 0) {
    assert (in->op == out.op && in->flags == out.flags && in->id == out.id &&
            in->handle == out.handle && in->offset == out.offset &&
            in->count == out.count && in->length == out.length);
    assert (why == NULL);
  }
  else
    assert (why != NULL && *why);
  return r;
}

static struct rp_req
req (uint16_t op, uint64_t handle, uint64_t offset, uint32_t count,
     uint32_t length)
{
  struct rp_req r = { .op = op, .id = 0x1234567890abcdefULL,
                      .handle = handle, .offset = offset, .count = count,
                      .length = length };
  return r;
}

int
main (void)
{
  struct rp_req r;
  uint8_t buf[128];
  const char *why;

  /* Valid shapes. */
  assert (decode (&(struct rp_req) { .op = RP_OP_HELLO, .length = 64 }) == 0);
  assert (decode (&(struct rp_req) { .op = RP_OP_AUTH, .length = 32 }) == 0);
  r = req (RP_OP_ALLOC, 0, 1 << 20, 0, 0);            assert (decode (&r) == 0);
  r = req (RP_OP_ALLOC, 0, RP_MIN_EXTENT_SIZE, 0, 0); assert (decode (&r) == 0);
  r = req (RP_OP_ALLOC, 0, RP_MAX_EXTENT_SIZE, 0, 0); assert (decode (&r) == 0);
  r = req (RP_OP_FREE, 7, 0, 0, 0);                   assert (decode (&r) == 0);
  r = req (RP_OP_READ, 7, 0, 1, 0);                   assert (decode (&r) == 0);
  r = req (RP_OP_READ, 7, 4096, RP_MAX_PAYLOAD, 0);   assert (decode (&r) == 0);
  r = req (RP_OP_WRITE, 7, 4095, 0, 1);               assert (decode (&r) == 0);
  r = req (RP_OP_WRITE, 7, 0, 0, RP_MAX_PAYLOAD);     assert (decode (&r) == 0);
  r = req (RP_OP_ZERO, 7, 0, 4096, 0);                assert (decode (&r) == 0);
  r = req (RP_OP_STAT, 0, 0, 0, 0);                   assert (decode (&r) == 0);
  r = req (RP_OP_PING, 0, 0, 0, 0);                   assert (decode (&r) == 0);

  /* HELLO: exact payload length, no other arguments. */
  r = req (RP_OP_HELLO, 0, 0, 0, 63);
  assert (decode (&r) == -1);
  r = req (RP_OP_HELLO, 0, 0, 0, 65);
  assert (decode (&r) == -1);
  r = req (RP_OP_HELLO, 0, 0, 0, 0xffffffff);
  assert (decode (&r) == -1);
  r = req (RP_OP_HELLO, 1, 0, 0, 64);
  assert (decode (&r) == -1);
  /* AUTH: exactly one proof, no other arguments. */
  r = req (RP_OP_AUTH, 0, 0, 0, 31);
  assert (decode (&r) == -1);
  r = req (RP_OP_AUTH, 0, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_AUTH, 0, 1, 0, 32);
  assert (decode (&r) == -1);
  r = req (RP_OP_AUTH, 0, 0, 1, 32);
  assert (decode (&r) == -1);
  /* ALLOC: power of two within range, no payload. */
  r = req (RP_OP_ALLOC, 0, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 0, 3 << 20, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 0, RP_MIN_EXTENT_SIZE / 2, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 0, (uint64_t) RP_MAX_EXTENT_SIZE * 2, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 0, UINT64_C (1) << 63, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 0, 1 << 20, 0, 8);
  assert (decode (&r) == -1);
  r = req (RP_OP_ALLOC, 5, 1 << 20, 0, 0);
  assert (decode (&r) == -1);
  /* FREE: a handle and nothing else. */
  r = req (RP_OP_FREE, 0, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_FREE, 7, 1, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_FREE, 7, 0, 0, 1);
  assert (decode (&r) == -1);
  /* READ / ZERO: count in (0, MAX_PAYLOAD], no payload, offset bound. */
  r = req (RP_OP_READ, 7, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 7, 0, RP_MAX_PAYLOAD + 1, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 7, 0, 0xffffffff, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 7, 0, 16, 16);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 0, 0, 16, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 7, RP_MAX_EXTENT_SIZE, 16, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_READ, 7, UINT64_MAX, 16, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ZERO, 7, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_ZERO, 7, UINT64_MAX - 1, 2, 0);
  assert (decode (&r) == -1);
  /* WRITE: payload in (0, MAX_PAYLOAD], no count. */
  r = req (RP_OP_WRITE, 7, 0, 0, 0);
  assert (decode (&r) == -1);
  r = req (RP_OP_WRITE, 7, 0, 0, RP_MAX_PAYLOAD + 1);
  assert (decode (&r) == -1);
  r = req (RP_OP_WRITE, 7, 0, 0, 0xffffffff);
  assert (decode (&r) == -1);
  r = req (RP_OP_WRITE, 7, 0, 4, 4);
  assert (decode (&r) == -1);
  r = req (RP_OP_WRITE, 0, 0, 0, 4);
  assert (decode (&r) == -1);
  r = req (RP_OP_WRITE, 7, UINT64_MAX - 2, 0, 4);
  assert (decode (&r) == -1);
  /* STAT / PING: no arguments. */
  r = req (RP_OP_STAT, 0, 0, 0, 1);
  assert (decode (&r) == -1);
  r = req (RP_OP_PING, 1, 0, 0, 0);
  assert (decode (&r) == -1);
  /* Unknown ops. */
  for (unsigned op = 0; op < 0x10000; op++) {
    if (op >= RP_OP_HELLO && op <= RP_OP_MAX)
      continue;
    r = req (op, 0, 0, 0, 0);
    assert (decode (&r) == -1);
  }
  /* Reserved flags. */
  r = req (RP_OP_PING, 0, 0, 0, 0);
  r.flags = 1;
  assert (decode (&r) == -1);
  /* Bad magic, every byte of it. */
  r = req (RP_OP_PING, 0, 0, 0, 0);
  for (int i = 0; i < 4; i++) {
    struct rp_req out;
    rp_req_encode (&r, buf);
    buf[i] ^= 0x20;
    assert (rp_req_decode (buf, &out, &why) == -1);
  }
  /* Byte order on the wire is little-endian. */
  r = req (RP_OP_READ, 0x0102030405060708ULL, 0, 0x11223344 & 0x3fffff, 0);
  rp_req_encode (&r, buf);
  assert (buf[0] == 0x52 && buf[4] == RP_OP_READ && buf[5] == 0);
  assert (buf[16] == 0x08 && buf[23] == 0x01);

  /* Replies. */
  {
    struct rp_reply in = { .error = RP_ENOENT, .id = 42, .free_bytes = 99,
                           .length = 0 }, out;
    rp_reply_encode (&in, buf);
    assert (rp_reply_decode (buf, &out, &why) == 0);
    assert (out.error == RP_ENOENT && out.id == 42 && out.free_bytes == 99);
    in.error = RP_ERROR_MAX + 1;
    rp_reply_encode (&in, buf);
    assert (rp_reply_decode (buf, &out, &why) == -1);
    in.error = 0;
    in.length = RP_MAX_PAYLOAD + 1;
    rp_reply_encode (&in, buf);
    assert (rp_reply_decode (buf, &out, &why) == -1);
    in.length = 0;
    rp_reply_encode (&in, buf);
    buf[28] = 1;  /* reserved */
    assert (rp_reply_decode (buf, &out, &why) == -1);
    rp_reply_encode (&in, buf);
    buf[0] ^= 1;
    assert (rp_reply_decode (buf, &out, &why) == -1);
  }
  /* HELLO and STAT payload validation. */
  {
    struct rp_hello_info h = { .version = 1,
                               .capacity_bytes = 10,
                               .free_bytes = 11,
                               .max_payload = RP_MAX_PAYLOAD,
                               .session = 7 },
                         o;
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == -1);  /* free > cap */
    h.free_bytes = 10;
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == 0);
    assert (o.session == 7);
    h.session = 0;  /* joined without a key, but no session named */
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == -1);
    h.session = 7;
    h.flags = 2;  /* unknown flag */
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == -1);
    h.flags = RP_HELLO_AUTH;  /* AUTH must follow: no session yet */
    memset (h.server_proof, 0xab, 32);
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == -1);
    h.session = 0;
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == 0);
    assert (o.flags == RP_HELLO_AUTH && o.server_proof[31] == 0xab);
  }
  /* AUTH and LIST reply payloads (protocol 3). */
  {
    uint64_t session, next;
    uint32_t n;
    rp_auth_reply_encode (9, buf);
    assert (rp_auth_reply_decode (buf, &session, &why) == 0 && session == 9);
    rp_auth_reply_encode (0, buf);
    assert (rp_auth_reply_decode (buf, &session, &why) == -1);
    rp_auth_reply_encode (9, buf);
    buf[8] = 1;  /* reserved */
    assert (rp_auth_reply_decode (buf, &session, &why) == -1);
    rp_list_reply_encode (77, 2, buf);
    memset (buf + 16, 0, 16);
    buf[16] = 0x11;
    buf[24] = 0x22;
    assert (rp_list_reply_decode (buf, 32, 2, &next, &n, &why) == 0);
    assert (next == 77 && n == 2);
    assert (rp_list_reply_handle (buf, 0) == 0x11);
    assert (rp_list_reply_handle (buf, 1) == 0x22);
    /* Length and count must agree, and count stay within what was
     * asked.
     */
    assert (rp_list_reply_decode (buf, 31, 2, &next, &n, &why) == -1);
    assert (rp_list_reply_decode (buf, 40, 2, &next, &n, &why) == -1);
    assert (rp_list_reply_decode (buf, 32, 1, &next, &n, &why) == -1);
    assert (rp_list_reply_decode (buf, 8, 2, &next, &n, &why) == -1);
  }
  {
    struct rp_hello_info h = { .version = 1, .capacity_bytes = 10,
                               .free_bytes = 10, .session = 1,
                               .max_payload = RP_MAX_PAYLOAD * 2 }, o;
    rp_hello_reply_encode (&h, buf);
    assert (rp_hello_reply_decode (buf, &o, &why) == -1);
    struct rp_stat_info s = { .capacity_bytes = 10, .used_bytes = 11 }, so;
    rp_stat_reply_encode (&s, buf);
    assert (rp_stat_reply_decode (buf, &so, &why) == -1);
    s.used_bytes = 5;
    s.owner_bytes = 5;
    rp_stat_reply_encode (&s, buf);
    assert (rp_stat_reply_decode (buf, &so, &why) == 0 && so.used_bytes == 5);
    s.state = RP_STATE_DRAINED;
    rp_stat_reply_encode (&s, buf);
    assert (rp_stat_reply_decode (buf, &so, &why) == 0 &&
            so.state == RP_STATE_DRAINED);
    s.state = RP_STATE_DRAINED + 1;
    rp_stat_reply_encode (&s, buf);
    assert (rp_stat_reply_decode (buf, &so, &why) == -1);
  }
  {
    /* Notices: round trip; magic, kind, reserved, count against length
     * and kind, deadline range.
     */
    struct rp_notice n = { .kind = RP_NOTICE_RECLAIM, .deadline_ms = 10000,
                           .count = 3 }, o;
    struct rp_notice_hdr *h = (struct rp_notice_hdr *) buf;
    rp_notice_encode (&n, buf);
    assert (rp_frame_is_notice (buf));
    assert (rp_notice_decode (buf, &o, &why) == 0);
    assert (o.kind == n.kind && o.deadline_ms == 10000 && o.count == 3 &&
            o.length == 24);
    h->length = htole32 (23);
    assert (rp_notice_decode (buf, &o, &why) == -1);
    n.count = RP_NOTICE_MAX_HANDLES + 1;
    rp_notice_encode (&n, buf);
    assert (rp_notice_decode (buf, &o, &why) == -1);
    n.count = 1;
    n.kind = RP_NOTICE_DRAIN;  /* a DRAIN names no handles */
    rp_notice_encode (&n, buf);
    assert (rp_notice_decode (buf, &o, &why) == -1);
    n.count = 0;
    rp_notice_encode (&n, buf);
    assert (rp_notice_decode (buf, &o, &why) == 0);
    n.kind = 3;
    rp_notice_encode (&n, buf);
    assert (rp_notice_decode (buf, &o, &why) == -1);
    n.kind = RP_NOTICE_DRAIN;
    n.deadline_ms = (uint64_t) RP_DRAIN_MAX_MS + 1;
    rp_notice_encode (&n, buf);
    assert (rp_notice_decode (buf, &o, &why) == -1);
    n.deadline_ms = 0;
    rp_notice_encode (&n, buf);
    h->reserved = 1;
    assert (rp_notice_decode (buf, &o, &why) == -1);
    h->reserved = 0;
    h->magic = 0;
    assert (!rp_frame_is_notice (buf));
    assert (rp_notice_decode (buf, &o, &why) == -1);
  }
  /* The errno table round-trips and unknown values map to EIO. */
  for (uint32_t e = 0; e <= RP_ERROR_MAX; e++)
    assert (rp_errno_to_error (rp_error_to_errno (e)) == e);
  assert (rp_error_to_errno (1000) == EIO);
  assert (rp_errno_to_error (EBADF) == RP_EIO);
  printf ("test_codec: PASS\n");
  return 0;
}
