/* Unit test of the RDMA transport's bounce pool (client/transport_rdma.c,
 * compiled in: its ring is static), which needs no RDMA device: spans
 * taken and released in many orders, each checked against the spans
 * held at the time.
 *
 * Checked: every span lies in the pool, starts on RDMAT_SPAN_ALIGN and
 * covers what was asked; no two spans held at once overlap; no more
 * spans are held than there are slots; a span of any size up to the
 * pool always fits once every span is released (so a sender waiting
 * for room always gets it); in-order release (what an RC send queue
 * does) lets the ring wrap and reuse all of the pool, and releasing out
 * of order only delays reuse.  Not checked here: anything that needs a
 * device (connect, posting, completions): that is the VM's (tests/vm).
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport_rdma.c"

/* The ring uses none of conn.c; these keep the link to this file. */
struct conn_call *
conn_reply_call (struct conn *c, const struct rp_reply *r, const char **why)
{
  abort ();
}

void
conn_reply_done (struct conn *c, const struct rp_reply *r,
                 struct conn_call *call)
{
  abort ();
}

void
conn_end (struct conn *c, const char *why)
{
  abort ();
}

void
conn_notice (struct conn *c, const struct rp_notice *n,
             const uint8_t *payload)
{
  abort ();
}

#define NSLOTS 8

static int failures;

#define CHECK(cond, ...) do {                                        \
    if (!(cond)) {                                                   \
      fprintf (stderr, "test_rdma_ring: %s:%d: ", __FILE__, __LINE__); \
      fprintf (stderr, __VA_ARGS__);                                 \
      fputc ('\n', stderr);                                          \
      failures++;                                                    \
      return;                                                        \
    }                                                                \
  } while (0)

/* A held span: its index in spans[], where it lies and what was asked. */
struct held {
  unsigned span;
  size_t off, len;
};

/* Every span held now, for the overlap check. */
static struct held *live[64];
static unsigned nlive;

static void
ring_init (struct rdmat *rd, struct rdmat_span *spans, size_t pool_len)
{
  memset (rd, 0, sizeof *rd);
  memset (spans, 0, NSLOTS * sizeof *spans);
  rd->nslots = NSLOTS;
  rd->pool_len = pool_len;
  rd->spans = spans;
  nlive = 0;
}

/* Take len bytes into *h; check the span.  0, -1 if no room. */
static int
take (struct rdmat *rd, size_t len, struct held *h)
{
  unsigned i;

  if (rdmat_span_take (rd, len, &i) == -1)
    return -1;
  h->span = i;
  h->off = rd->spans[i].off;
  h->len = len;
  if (i >= NSLOTS || rd->spans[i].len < len ||
      h->off % RDMAT_SPAN_ALIGN != 0 ||
      h->off + rd->spans[i].len > rd->pool_len) {
    fprintf (stderr, "test_rdma_ring: span %u [%zu, +%zu) for %zu bytes"
             " is wrong (pool %zu)\n", i, h->off, rd->spans[i].len, len,
             rd->pool_len);
    failures++;
    return -1;
  }
  for (unsigned j = 0; j < nlive; j++)
    if (h->off < live[j]->off + live[j]->len &&
        live[j]->off < h->off + len) {
      fprintf (stderr, "test_rdma_ring: span [%zu, +%zu) overlaps the held"
               " [%zu, +%zu)\n", h->off, len, live[j]->off, live[j]->len);
      failures++;
      return -1;
    }
  live[nlive++] = h;
  return 0;
}

static void
release (struct rdmat *rd, const struct held *h)
{
  for (unsigned j = 0; j < nlive; j++)
    if (live[j] == h) {
      live[j] = live[--nlive];
      break;
    }
  rdmat_span_release (rd, h->span);
}

/* Simple cases: whole pool, wrap, full. */
static void
test_basic (void)
{
  struct rdmat rd;
  struct rdmat_span spans[NSLOTS];
  struct held a, b, c, d;
  size_t pool = 1 << 20;

  ring_init (&rd, spans, pool);
  CHECK (take (&rd, pool, &a) == 0, "the whole pool does not fit an"
         " empty ring");
  CHECK (take (&rd, 1, &b) == -1, "a full pool gave a span");
  release (&rd, &a);
  CHECK (rd.span_count == 0, "a released ring holds %u spans",
         rd.span_count);

  /* [a: 0..600K) [b: 600K..1000K), release a, c wraps to 0. */
  CHECK (take (&rd, 600 << 10, &a) == 0, "600K");
  CHECK (take (&rd, 400 << 10, &b) == 0, "400K after 600K");
  CHECK (take (&rd, 100 << 10, &c) == -1, "100K fits in 24K");
  release (&rd, &a);
  CHECK (take (&rd, 100 << 10, &c) == 0, "100K does not wrap");
  CHECK (rd.spans[c.span].off == 0, "the wrapped span is at %zu",
         rd.spans[c.span].off);
  /* Wrapped: room only between c's end and b's start. */
  CHECK (take (&rd, 600 << 10, &d) == -1, "600K fits into 500K");
  CHECK (take (&rd, 500 << 10, &d) == 0, "500K between head and tail");
  release (&rd, &b);
  release (&rd, &c);
  release (&rd, &d);
  CHECK (rd.span_count == 0, "%u spans left", rd.span_count);
  CHECK (take (&rd, pool, &a) == 0, "the whole pool after a wrap");
  release (&rd, &a);
}

/* Released out of order: a later span's release frees nothing until
 * the older ones go.
 */
static void
test_out_of_order (void)
{
  struct rdmat rd;
  struct rdmat_span spans[NSLOTS];
  struct held h[4], x;
  size_t pool = 1 << 20;

  ring_init (&rd, spans, pool);
  for (unsigned k = 0; k < 4; k++)
    CHECK (take (&rd, pool / 4, &h[k]) == 0, "quarter %u", k);
  release (&rd, &h[2]);
  release (&rd, &h[3]);
  CHECK (take (&rd, 1, &x) == -1, "room behind the oldest held span");
  release (&rd, &h[0]);
  CHECK (take (&rd, pool / 4, &x) == 0, "the oldest quarter back");
  release (&rd, &h[1]);
  release (&rd, &x);
  CHECK (rd.span_count == 0, "%u spans left", rd.span_count);
}

/* Random sizes, mostly in-order releases (as an RC send queue
 * completes), sometimes out of order.
 */
static void
test_random (unsigned seed, size_t pool, size_t maxlen, bool in_order,
             unsigned steps)
{
  struct rdmat rd;
  struct rdmat_span spans[NSLOTS];
  struct held store[NSLOTS];
  struct held *order[NSLOTS];  /* held, oldest first */
  bool is_used[NSLOTS] = { false };
  unsigned nheld = 0;
  uint64_t bytes = 0;

  srand (seed);
  ring_init (&rd, spans, pool);
  for (unsigned step = 0; step < steps; step++) {
    size_t len = 1 + (size_t) rand () % maxlen;
    unsigned f = 0, j;

    while (f < NSLOTS && is_used[f])
      f++;
    if (f < NSLOTS && take (&rd, len, &store[f]) == 0) {
      is_used[f] = true;
      order[nheld++] = &store[f];
      bytes += len;
      continue;
    }
    if (failures)
      return;
    CHECK (nheld > 0, "an empty ring refused %zu bytes", len);
    /* No room (or no slot): release one, the oldest or any. */
    j = in_order || rand () % 4 ? 0 : (unsigned) rand () % nheld;
    release (&rd, order[j]);
    is_used[order[j] - store] = false;
    memmove (&order[j], &order[j + 1], (nheld - j - 1) * sizeof order[0]);
    nheld--;
    CHECK (rd.span_count <= NSLOTS, "%u spans", rd.span_count);
  }
  for (unsigned j = 0; j < nheld; j++)
    release (&rd, order[j]);
  CHECK (rd.span_count == 0, "%u spans left", rd.span_count);
  CHECK (bytes > 10 * (uint64_t) pool, "only %" PRIu64 " bytes through"
         " a %zu-byte pool", bytes, pool);
}

int
main (void)
{
  test_basic ();
  test_out_of_order ();
  test_random (1, 1 << 20, 64 << 10, true, 1000000);
  test_random (2, 1 << 20, 1 << 20, true, 100000);
  test_random (3, (1 << 20) + 4096, 300 << 10, false, 1000000);
  test_random (4, 8 << 20, 4 << 20, true, 100000);
  if (failures) {
    fprintf (stderr, "test_rdma_ring: %d failure(s)\n", failures);
    return 1;
  }
  printf ("test_rdma_ring: PASS\n");
  return 0;
}
