/* libFuzzer target: what a client reads from a server -- reply and
 * notice headers and the payloads librampool decodes (common/codec.c),
 * the way client/transport_tcp.c and client/donor.c take them apart.
 *
 * The input is the server's byte stream with one byte before each
 * frame naming the request the client had outstanding (its op; the
 * LIST limit is the byte's high bits), since a reply's payload is read
 * by what was asked:
 *   [selector][32-byte header][payload...] [selector][header]...
 * A frame whose header fails to decode ends the stream, as it ends the
 * connection.  Each payload is copied to a buffer of exactly its length
 * so ASan sees any read past it.
 *
 * What counts as a crash besides ASan/UBSan reports: a decoder that
 * accepts what its contract says it refuses -- a notice with a count
 * over RP_NOTICE_MAX_HANDLES, a length other than 8 * count, a DRAIN
 * naming handles, a deadline over RP_DRAIN_MAX_MS; a reply longer than
 * RP_MAX_PAYLOAD or with an unknown error; a STAT whose figures do not
 * add up, a LIST reply whose length and count disagree or exceed what
 * was asked, a HELLO that offers a larger payload than RP_MAX_PAYLOAD;
 * or a -1 without a reason.
 */
#include <config.h>

#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rampool/protocol.h"
#include "codec.h"

#define FUZZ_CHECK(cond)                                             \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf (stderr, "fuzz_replies: %s:%d: %s\n", __FILE__,        \
               __LINE__, #cond);                                     \
      abort ();                                                      \
    }                                                                \
  } while (0)

/* A reply payload of len bytes for a request of op (list_max: LIST). */
static void
fuzz_payload (unsigned op, uint32_t list_max, const uint8_t *p, size_t len)
{
  const char *why = NULL;

  switch (op) {
  case RP_OP_HELLO: {
    struct rp_hello_info h;
    if (len != sizeof (struct rp_hello_reply))
      return;
    if (rp_hello_reply_decode (p, &h, &why) == 0)
      FUZZ_CHECK (h.max_payload <= RP_MAX_PAYLOAD &&
                  (h.flags & RP_HELLO_AUTH ? h.session == 0
                                           : h.session != 0));
    else
      FUZZ_CHECK (why && *why);
    break;
  }
  case RP_OP_STAT: {
    struct rp_stat_info s;
    if (len != sizeof (struct rp_stat_reply))
      return;
    if (rp_stat_reply_decode (p, &s, &why) == 0)
      FUZZ_CHECK (s.used_bytes <= s.capacity_bytes &&
                  s.owner_bytes <= s.used_bytes &&
                  s.owner_extents <= s.extents &&
                  s.limit_bytes <= s.capacity_bytes &&
                  s.state <= RP_STATE_DRAINED);
    else
      FUZZ_CHECK (why && *why);
    break;
  }
  case RP_OP_AUTH: {
    uint64_t session;
    if (len != sizeof (struct rp_auth_reply))
      return;
    if (rp_auth_reply_decode (p, &session, &why) == 0)
      FUZZ_CHECK (session != 0);
    else
      FUZZ_CHECK (why && *why);
    break;
  }
  case RP_OP_LIST: {
    uint64_t next;
    uint32_t n;
    if (rp_list_reply_decode (p, len, list_max, &next, &n, &why) == 0) {
      FUZZ_CHECK (n <= list_max && len == 16 + (size_t) n * 8);
      for (uint32_t i = 0; i < n; i++)
        (void) rp_list_reply_handle (p, i);
    }
    else
      FUZZ_CHECK (why && *why);
    break;
  }
  case RP_OP_ALLOC:
    /* donor.c and replica.c take it only at its exact size. */
    if (len == sizeof (struct rp_alloc_reply)) {
      struct rp_alloc_reply a;
      memcpy (&a, p, sizeof a);
      (void) le64toh (a.handle);
    }
    break;
  default:
    break;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  size_t pos = 0;

  while (pos + 1 + sizeof (struct rp_reply_hdr) <= size) {
    uint8_t sel = data[pos++];
    unsigned op = (sel & 15) % (RP_OP_MAX + 1);
    uint32_t list_max = 1u + (sel >> 4) * 546;   /* 1 .. 8191 */
    const uint8_t *hdr = data + pos;
    const char *why = NULL;
    uint32_t length;

    pos += sizeof (struct rp_reply_hdr);
    if (rp_frame_is_notice (hdr)) {
      struct rp_notice n;
      if (rp_notice_decode (hdr, &n, &why) == -1) {
        FUZZ_CHECK (why && *why);
        return 0;
      }
      FUZZ_CHECK (n.kind == RP_NOTICE_RECLAIM || n.kind == RP_NOTICE_DRAIN);
      FUZZ_CHECK (n.count <= RP_NOTICE_MAX_HANDLES &&
                  n.length == n.count * 8);
      FUZZ_CHECK (n.kind != RP_NOTICE_DRAIN || n.count == 0);
      FUZZ_CHECK (n.deadline_ms <= RP_DRAIN_MAX_MS);
      length = n.length;
    }
    else {
      struct rp_reply r;
      if (rp_reply_decode (hdr, &r, &why) == -1) {
        FUZZ_CHECK (why && *why);
        return 0;
      }
      FUZZ_CHECK (r.length <= RP_MAX_PAYLOAD && r.error <= RP_ERROR_MAX);
      length = r.length;
      if (r.error == RP_OK && pos + length <= size) {
        uint8_t *copy = malloc (length ? length : 1);
        FUZZ_CHECK (copy != NULL);
        memcpy (copy, data + pos, length);
        fuzz_payload (op, list_max, copy, length);
        free (copy);
      }
    }
    if (length > size - pos)
      return 0;  /* the stream ends inside the payload */
    pos += length;
  }
  return 0;
}
