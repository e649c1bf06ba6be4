/* libFuzzer target: the memserver's frame parser and request handling.
 *
 * The input is what clients send to one memserver.  It drives real
 * sessions (memserver/session.c) over a real store (store.c, region.c:
 * an 8 MiB region, not locked), with no sockets: this file is the
 * transport, keeping a receive buffer per connection the way server.c
 * does and handing it to session_process after every "read".
 *
 * Input layout:
 *   byte 0     mode: bit 0  the server has a cluster key (AUTH paths)
 *                    bit 1  tight limits: max-client-size=1M,
 *                           max-client-connections=1
 *                    bit 2  three connections instead of one
 *                    bits 3-7  three connections: chunk size, 8*(v+1)
 *                    bit 3  one connection: an RDMA session (READ and
 *                           WRITE frames refused, LIST answers at most
 *                           RP_RDMA_LIST_MAX handles)
 *   one connection:    the rest is its byte stream.
 *   three connections: bytes 1-2 and 3-4 (little-endian) are the
 *                      lengths of the first two streams, the rest is
 *                      the third; the streams are delivered in turns,
 *                      one chunk each, so HELLOs of one owner with
 *                      different generations fence each other and a
 *                      full owner table refuses the third.
 *
 * One connection's stream is run three times, each from the same
 * store state: all at once with 16 MiB of reply room, one byte per
 * read with room for one maximal reply (SESSION_REPLY_MAX: a frame runs
 * only when its whole reply fits, so less room would block a 4 MiB
 * READ for good), and in chunks of pseudo-random size.  The protocol
 * must not care how TCP cuts the stream, so the three runs must give
 * the same replies and close for the same reason.
 *
 * What else counts as a crash besides ASan/UBSan reports:
 *   - a reply that does not decode, or that answers a different
 *     request id than the next executed frame, or whose length does
 *     not fit its op (HELLO 120, STAT 64, ALLOC 8, READ count, errors 0);
 *   - HELLO or STAT payloads the client's own decoders reject;
 *   - store accounting that does not add up (owner bytes/extents vs
 *     the extent table, region used bytes, the free list);
 *   - anything left in the store once every session is gone and the
 *     leases expired.
 *
 * To make handles and the AUTH exchange reachable, randomness and the
 * clock are replaced at link time (-Wl,--wrap): rp_random_bytes gives
 * zeros, so the first extent's handle is 0x1000001 and the server
 * nonce is all zeros (tests/fuzz/make-seeds.py computes valid AUTH
 * proofs for the key below), and rp_now_ms is frozen.
 */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/asan_interface.h>

#include "auth.h"
#include "codec.h"
#include "session.h"
#include "store.h"
#include "util.h"

#define FUZZ_REGION_BYTES (8u * 1024 * 1024)
#define FUZZ_MAX_OWNERS 2          /* small: three connections fill it */
#define FUZZ_NOW_MS UINT64_C (1000000)
#define FUZZ_MAX_CONNS 3
#define REQ_HDR_SIZE sizeof (struct rp_req_hdr)
#define REPLY_HDR_SIZE sizeof (struct rp_reply_hdr)

/* The cluster key in keyed mode: bytes 0..31 (make-seeds.py knows it). */
static uint8_t fuzz_key[RP_KEY_BYTES];

static struct settings fuzz_settings;
static bool fuzz_is_verbose;      /* FUZZ_VERBOSE set: log and trace replies */
static struct session_core fuzz_core;

/* --- link-time replacements (see the top of the file) --- */

int __wrap_rp_random_bytes (void *buf, size_t len);
uint64_t __wrap_rp_now_ms (void);

int
__wrap_rp_random_bytes (void *buf, size_t len)
{
  memset (buf, 0, len);
  return 0;
}

uint64_t
__wrap_rp_now_ms (void)
{
  return FUZZ_NOW_MS;
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
fuzz_fail (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "fuzz_frames: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  abort ();
}

/* --- one connection --- */

/* What a request asked for, kept until its reply is seen. */
struct fuzz_expect {
  uint64_t id;
  uint16_t op;
  uint32_t count;
};

struct fuzz_conn {
  struct session s;
  bool is_open;                 /* between session_init and session_fini */
  const uint8_t *stream;        /* what the client sends, not owned */
  size_t stream_len;
  size_t sent;                  /* stream bytes delivered so far */
  uint8_t *rbuf;                /* receive buffer, stream_len bytes, owned;
                                   the part past rlen is poisoned so ASan
                                   sees a read of bytes not yet received */
  size_t rlen;
  struct fuzz_expect *expect;   /* executed frames awaiting their reply */
  size_t nexpect, expect_head;
  size_t out_room;              /* passed to session_process */
  uint64_t hash;                /* of every reply, header and payload */
  size_t nreplies;
  const char *close_why;        /* the session's, kept past session_fini */
};

static void
fuzz_close_session (struct session *s)
{
  /* server.c closes the socket and frees the session on a later loop
   * turn; here the main loop finishes it after session_process returns.
   */
  s->is_closing = true;
}

/* Sessions are RDMA's (rdma_listener.c sets the same two fields). */
static bool fuzz_is_one_sided;

/* The fuzzer's transport: a stream, as TCP (no one-sided access). */
static const struct session_ops fuzz_session_ops = {
  .close = fuzz_close_session,
};

static uint64_t
fuzz_hash (uint64_t h, const uint8_t *p, size_t n)
{
  /* FNV-1a: the point is equality between runs, not quality. */
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * UINT64_C (0x100000001b3);
  return h;
}

static void
fuzz_conn_start (struct fuzz_conn *c, const uint8_t *stream, size_t len,
                 size_t out_room)
{
  memset (c, 0, sizeof *c);
  c->stream = stream;
  c->stream_len = len;
  c->out_room = out_room;
  c->hash = UINT64_C (0xcbf29ce484222325);
  c->rbuf = malloc (len ? len : 1);
  /* At most one reply per 40 stream bytes. */
  c->expect = malloc ((len / REQ_HDR_SIZE + 1) * sizeof *c->expect);
  if (c->rbuf == NULL || c->expect == NULL)
    fuzz_fail ("out of memory");
  ASAN_POISON_MEMORY_REGION (c->rbuf, len);
  session_init (&c->s, &fuzz_core);
  c->s.ops = &fuzz_session_ops;
  /* Large READ replies refer to the region until the output is taken,
   * as over TCP: the run with everything at once executes a READ and a
   * later WRITE of the same bytes in one call, so a reply that was not
   * filled before the WRITE would differ from the byte-by-byte run's.
   */
  c->s.may_refer = true;
  c->s.is_one_sided = fuzz_is_one_sided;
  c->s.list_max = fuzz_is_one_sided ? RP_RDMA_LIST_MAX : 0;
  strcpy (c->s.peer, "fuzz");
  c->is_open = true;
}

static void
fuzz_conn_finish (struct fuzz_conn *c)
{
  if (!c->is_open)
    return;
  if (c->s.close_why)
    c->close_why = c->s.close_why;
  session_fini (&c->s);
  c->is_open = false;
}

static void
fuzz_conn_free (struct fuzz_conn *c)
{
  fuzz_conn_finish (c);
  ASAN_UNPOISON_MEMORY_REGION (c->rbuf, c->stream_len);
  free (c->rbuf);
  free (c->expect);
}

/* Check one batch of replies: whole frames, each answering the next
 * executed request with a length that fits its op.
 */
static void
fuzz_conn_check_output (struct fuzz_conn *c, const uint8_t *out, size_t len)
{
  size_t pos = 0;

  while (pos < len) {
    struct rp_reply r;
    const char *why;

    if (len - pos < REPLY_HDR_SIZE)
      fuzz_fail ("a reply header cut short (%zu bytes left)", len - pos);
    if (rp_reply_decode (out + pos, &r, &why) == -1)
      fuzz_fail ("the server sent a reply its clients reject: %s", why);
    if (len - pos - REPLY_HDR_SIZE < r.length)
      fuzz_fail ("a reply payload cut short");
    if (c->expect_head == c->nexpect)
      fuzz_fail ("a reply (id %" PRIu64 ") to no request", r.id);

    const struct fuzz_expect *e = &c->expect[c->expect_head++];
    const uint8_t *payload = out + pos + REPLY_HDR_SIZE;
    uint32_t want = 0;

    if (fuzz_is_verbose)
      fprintf (stderr, "fuzz_frames: reply id %" PRIu64 " %s error %" PRIu32
               " length %" PRIu32 "\n", r.id, rp_op_name (e->op), r.error,
               r.length);
    if (r.id != e->id)
      fuzz_fail ("reply id %" PRIu64 ", expected %" PRIu64 " (%s)",
                 r.id, e->id, rp_op_name (e->op));
    if (r.error == RP_OK) {
      switch (e->op) {
      case RP_OP_HELLO: want = sizeof (struct rp_hello_reply); break;
      case RP_OP_STAT: want = sizeof (struct rp_stat_reply); break;
      case RP_OP_ALLOC: want = sizeof (struct rp_alloc_reply); break;
      case RP_OP_READ: want = e->count; break;
      case RP_OP_AUTH: want = sizeof (struct rp_auth_reply); break;
      case RP_OP_LIST: {
        uint64_t next;
        uint32_t n;
        if (rp_list_reply_decode (payload, r.length, e->count, &next, &n,
                                  &why) == -1)
          fuzz_fail ("LIST reply rejected by the client: %s", why);
        want = r.length;
        break;
      }
      default: break;
      }
    }
    if (r.length != want)
      fuzz_fail ("%s reply with error %" PRIu32 " has %" PRIu32
                 " payload bytes, expected %" PRIu32, rp_op_name (e->op),
                 r.error, r.length, want);
    if (r.error == RP_OK && e->op == RP_OP_HELLO) {
      struct rp_hello_info hi;
      if (rp_hello_reply_decode (payload, &hi, &why) == -1)
        fuzz_fail ("HELLO reply rejected by the client: %s", why);
    }
    if (r.error == RP_OK && e->op == RP_OP_AUTH) {
      uint64_t session;
      if (rp_auth_reply_decode (payload, &session, &why) == -1)
        fuzz_fail ("AUTH reply rejected by the client: %s", why);
    }
    if (r.error == RP_OK && e->op == RP_OP_STAT) {
      struct rp_stat_info si;
      if (rp_stat_reply_decode (payload, &si, &why) == -1)
        fuzz_fail ("STAT reply rejected by the client: %s", why);
    }
    /* Headers whole, payloads by their first 4 KiB: a 4 MiB READ is
     * region bytes that every run reads the same way, and hashing all
     * of it would cost more than executing it.
     */
    c->hash = fuzz_hash (c->hash, out + pos, REPLY_HDR_SIZE);
    c->hash = fuzz_hash (c->hash, payload, r.length < 4096 ? r.length : 4096);
    c->nreplies++;
    pos += REPLY_HDR_SIZE + r.length;
  }
}

/* Record the frames session_process consumed (it consumes whole frames
 * only), so their replies can be matched.
 */
static void
fuzz_conn_note_frames (struct fuzz_conn *c, size_t consumed)
{
  size_t pos = 0;

  while (pos < consumed) {
    struct rp_req req;
    const char *why;

    if (consumed - pos < REQ_HDR_SIZE ||
        rp_req_decode (c->rbuf + pos, &req, &why) == -1 ||
        consumed - pos - REQ_HDR_SIZE < req.length)
      fuzz_fail ("session_process consumed %zu bytes, not whole frames",
                 consumed);
    c->expect[c->nexpect++] = (struct fuzz_expect) {
      .id = req.id, .op = req.op, .count = req.count,
    };
    pos += REQ_HDR_SIZE + req.length;
  }
}

/* The store adds up: every extent belongs to an owner in use and lies
 * in the region, owners' counters match the table, the free list holds
 * exactly the free slots.
 */
static void
fuzz_check_store (const struct store *st)
{
  uint64_t owner_bytes[FUZZ_MAX_OWNERS] = { 0 }, bytes = 0;
  uint32_t owner_extents[FUZZ_MAX_OWNERS] = { 0 }, n = 0, nfree = 0;

  for (uint32_t i = 0; i < st->max_extents; i++) {
    const struct extent *e = &st->extents[i];
    if (e->handle == 0)
      continue;
    size_t o = e->owner - st->owners;
    if (e->owner == NULL || o >= st->max_owners || !e->owner->in_use)
      fuzz_fail ("extent %" PRIu32 " has no owner in use", i);
    if (e->offset + e->size > st->region.capacity || e->size == 0)
      fuzz_fail ("extent %" PRIu32 " outside the region", i);
    owner_bytes[o] += e->size;
    owner_extents[o]++;
    bytes += e->size;
    n++;
  }
  if (n != st->nextents || bytes != st->region.used)
    fuzz_fail ("store counts %" PRIu32 " extents / %" PRIu64 " bytes, the"
               " table holds %" PRIu32 " / %" PRIu64, st->nextents,
               st->region.used, n, bytes);
  for (uint32_t o = 0; o < st->max_owners; o++)
    if (st->owners[o].in_use &&
        (st->owners[o].bytes != owner_bytes[o] ||
         st->owners[o].nextents != owner_extents[o]))
      fuzz_fail ("owner %" PRIu32 " counts %" PRIu32 " extents / %" PRIu64
                 " bytes, the table holds %" PRIu32 " / %" PRIu64, o,
                 st->owners[o].nextents, st->owners[o].bytes,
                 owner_extents[o], owner_bytes[o]);
  for (uint32_t f = st->free_head; f; f = st->extents[f - 1].next_free) {
    if (f > st->max_extents || st->extents[f - 1].handle != 0 ||
        ++nfree > st->max_extents)
      fuzz_fail ("free list broken at slot %" PRIu32, f);
  }
  if (nfree + st->nextents != st->max_extents)
    fuzz_fail ("free list holds %" PRIu32 " slots, %" PRIu32 " expected",
               nfree, st->max_extents - st->nextents);
}

/* What server.c would place (session_write_place) for the partial
 * frame left in c's buffer must lie inside one of the owner's extents,
 * and only a WRITE that would run (whole frame absent) may be placed.
 * Nothing is received in place here: the replies of the three runs
 * must stay the same.
 */
static void
fuzz_check_place (struct fuzz_conn *c)
{
  const struct store *st = &fuzz_core.store;
  struct rp_req req;
  uint8_t *dst;

  dst = session_write_place (&c->s, c->rbuf, c->rlen, 1, &req);
  if (dst == NULL)
    return;
  if (req.op != RP_OP_WRITE || c->rlen >= REQ_HDR_SIZE + req.length)
    fuzz_fail ("placed a frame that is not a partial WRITE");
  if (!session_write_holds (&c->s, &req, dst))
    fuzz_fail ("a place that does not hold at once");
  for (uint32_t i = 0; i < st->max_extents; i++) {
    const struct extent *e = &st->extents[i];

    if (e->handle != 0 && e->handle == req.handle &&
        e->owner == c->s.owner &&
        dst == st->region.base + e->offset + req.offset &&
        req.offset + req.length <= e->size)
      return;
  }
  fuzz_fail ("a WRITE placed outside its owner's extent");
}

/* Deliver up to n more stream bytes and let the session execute what
 * is complete, draining its replies after every call as a transport
 * whose peer reads promptly would.
 */
static void
fuzz_conn_deliver (struct fuzz_conn *c, size_t n)
{
  if (!c->is_open || c->s.is_closing)
    return;
  if (n > c->stream_len - c->sent)
    n = c->stream_len - c->sent;
  ASAN_UNPOISON_MEMORY_REGION (c->rbuf + c->rlen, n);
  memcpy (c->rbuf + c->rlen, c->stream + c->sent, n);
  c->rlen += n;
  c->sent += n;
  for (;;) {
    size_t consumed = session_process (&c->s, c->rbuf, c->rlen, c->out_room);
    size_t olen;
    uint8_t *out;

    if (consumed > c->rlen)
      fuzz_fail ("consumed %zu of %zu bytes", consumed, c->rlen);
    fuzz_conn_note_frames (c, consumed);
    out = session_take_output (&c->s, &olen);
    if (olen > c->out_room)
      fuzz_fail ("%zu bytes of replies with out_room %zu", olen, c->out_room);
    fuzz_conn_check_output (c, out, olen);
    free (out);
    if (consumed > 0)
      fuzz_check_store (&fuzz_core.store);
    if (c->s.close_why || c->s.is_closing)
      break;
    if (c->expect_head != c->nexpect)
      fuzz_fail ("%zu executed requests without a reply",
                 c->nexpect - c->expect_head);
    /* The session leaves the output full only when out_room stopped
     * it; it was drained above, so no progress means no whole frame:
     * out_room is at least SESSION_REPLY_MAX, room for any one reply.
     */
    if (consumed == 0 && c->s.stop == SESSION_STOP_ROOM)
      fuzz_fail ("a frame needing %zu reply bytes did not run with %zu"
                 " bytes of room", c->s.need_room, c->out_room);
    if (consumed == 0) {
      fuzz_check_place (c);
      break;
    }
    memmove (c->rbuf, c->rbuf + consumed, c->rlen - consumed);
    c->rlen -= consumed;
    ASAN_POISON_MEMORY_REGION (c->rbuf + c->rlen, c->stream_len - c->rlen);
  }
}

/* Every session gone: expire the leases (lease-ms is 0), check that
 * nothing is left, and put the free list back in store_open's order so
 * the next run sees the same handles.
 */
static void
fuzz_reset_store (void)
{
  struct store *st = &fuzz_core.store;

  if (fuzz_core.sessions != NULL || fuzz_core.nsessions != 0)
    fuzz_fail ("sessions left after every connection closed");
  store_expire_owners (st, FUZZ_NOW_MS);
  fuzz_check_store (st);
  if (st->nextents != 0 || st->region.used != 0)
    fuzz_fail ("%" PRIu32 " extents left after every lease expired",
               st->nextents);
  for (uint32_t o = 0; o < st->max_owners; o++)
    if (st->owners[o].in_use)
      fuzz_fail ("owner %" PRIu32 " left after every lease expired", o);
  for (uint64_t w = 0; w < (st->region.ngranules + 63) / 64; w++)
    if (st->region.bitmap[w])
      fuzz_fail ("region bitmap not empty");
  for (uint32_t i = 0; i < st->max_extents; i++)
    st->extents[i].next_free = i + 2 <= st->max_extents ? i + 2 : 0;
  st->free_head = 1;
  /* Session ids (HELLO/AUTH replies) start over, as in a fresh store,
   * so the three runs of one stream give the same replies.
   */
  st->sessions_made = 0;
}

/* --- the runs --- */

struct fuzz_result {
  uint64_t hash;
  size_t nreplies;
  const char *close_why;
};

/* One connection, its stream cut into reads by `split`: 0 all at once,
 * 1 byte by byte, 2 pseudo-random 1..300 bytes (seeded by the length,
 * so a crash reproduces).
 */
static struct fuzz_result
fuzz_run_one (const uint8_t *stream, size_t len, int split)
{
  struct fuzz_conn c;
  struct fuzz_result res;
  uint32_t lcg = (uint32_t) len * 2654435761u + 1;

  fuzz_conn_start (&c, stream, len,
                   split == 0 ? 16u * 1024 * 1024 : split == 1
                   ? SESSION_REPLY_MAX : SESSION_REPLY_MAX + 64 * 1024);
  while (c.sent < len && c.is_open && !c.s.close_why) {
    size_t n;
    if (split == 0)
      n = len;
    else if (split == 1)
      n = 1;
    else {
      lcg = lcg * 1103515245u + 12345u;
      n = 1 + (lcg >> 16) % 300;
    }
    fuzz_conn_deliver (&c, n);
  }
  fuzz_conn_finish (&c);
  res = (struct fuzz_result) {
    .hash = c.hash, .nreplies = c.nreplies, .close_why = c.close_why,
  };
  fuzz_conn_free (&c);
  fuzz_reset_store ();
  return res;
}

static void
fuzz_run_single (const uint8_t *stream, size_t len)
{
  struct fuzz_result r[3];

  for (int split = 0; split < 3; split++) {
    r[split] = fuzz_run_one (stream, len, split);
    if (split > 0 &&
        (r[split].hash != r[0].hash || r[split].nreplies != r[0].nreplies ||
         r[split].close_why != r[0].close_why))
      fuzz_fail ("the stream cut %s gives %zu replies (hash %016" PRIx64
                 ", close: %s) but all at once %zu (hash %016" PRIx64
                 ", close: %s)", split == 1 ? "byte by byte" : "in chunks",
                 r[split].nreplies, r[split].hash,
                 r[split].close_why ? r[split].close_why : "no",
                 r[0].nreplies, r[0].hash,
                 r[0].close_why ? r[0].close_why : "no");
  }
}

static void
fuzz_run_multi (const uint8_t *data, size_t size, unsigned mode)
{
  struct fuzz_conn c[FUZZ_MAX_CONNS];
  size_t len[FUZZ_MAX_CONNS], chunk = 8 * ((mode >> 3) + 1);
  bool is_busy;

  if (size < 4)
    return;
  len[0] = data[0] | (size_t) data[1] << 8;
  len[1] = data[2] | (size_t) data[3] << 8;
  data += 4;
  size -= 4;
  if (len[0] > size)
    len[0] = size;
  if (len[1] > size - len[0])
    len[1] = size - len[0];
  len[2] = size - len[0] - len[1];
  for (int i = 0, off = 0; i < FUZZ_MAX_CONNS; off += len[i], i++)
    fuzz_conn_start (&c[i], data + off, len[i], SESSION_REPLY_MAX);
  do {
    is_busy = false;
    for (int i = 0; i < FUZZ_MAX_CONNS; i++) {
      if (!c[i].is_open)
        continue;
      fuzz_conn_deliver (&c[i], chunk);
      /* Finish every connection closed by this turn -- the one that
       * broke the protocol, or siblings fenced by a newer HELLO --
       * as server.c's close callbacks would before the next read.
       */
      for (int k = 0; k < FUZZ_MAX_CONNS; k++)
        if (c[k].is_open && (c[k].s.close_why || c[k].s.is_closing ||
                             c[k].sent == c[k].stream_len))
          fuzz_conn_finish (&c[k]);
      is_busy |= c[i].is_open;
    }
  } while (is_busy);
  for (int i = 0; i < FUZZ_MAX_CONNS; i++)
    fuzz_conn_free (&c[i]);
  fuzz_reset_store ();
}

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* Warnings per malformed frame would be most of the run time. */
  fuzz_is_verbose = getenv ("FUZZ_VERBOSE") != NULL;
  log_max_level = fuzz_is_verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
  if (rp_auth_init () == -1)
    fuzz_fail ("libsodium init failed");
  for (int i = 0; i < RP_KEY_BYTES; i++)
    fuzz_key[i] = i;
  fuzz_settings.lease_ms = 0;
  fuzz_settings.max_owners = FUZZ_MAX_OWNERS;
  fuzz_settings.max_conns = FUZZ_MAX_CONNS;
  fuzz_core.st = &fuzz_settings;
  fuzz_core.start_ms = FUZZ_NOW_MS;
  memset (fuzz_core.incarnation, 0xab, sizeof fuzz_core.incarnation);
  if (store_open (&fuzz_core.store, FUZZ_REGION_BYTES, false,
                  FUZZ_MAX_OWNERS, 0) == -1)
    fuzz_fail ("store_open: %m");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned mode;

  if (size < 1)
    return 0;
  mode = data[0];
  fuzz_settings.key = (mode & 1) ? fuzz_key : NULL;
  fuzz_settings.max_client_bytes = (mode & 2) ? 1024 * 1024 : 0;
  fuzz_settings.max_client_conns = (mode & 2) ? 1 : 64;
  fuzz_is_one_sided = !(mode & 4) && (mode & 8);
  if (mode & 4)
    fuzz_run_multi (data + 1, size - 1, mode);
  else
    fuzz_run_single (data + 1, size - 1);
  return 0;
}
