/* Unit test of the memserver's region allocator (memserver/region.c)
 * against a reference model.
 *
 * The model is one entry per granule: which live extent holds it.
 * Random mixes of ALLOCs (64 KiB .. 4 MiB, and some 1 GiB on the big
 * region) and FREEs run on the real allocator and the model side by
 * side, and after every step:
 *   - an extent is aligned to its own size and inside the region;
 *   - it overlaps no live extent (the model says its granules are free);
 *   - a new extent reads as zeros, though the last user of those bytes
 *     left a pattern there (freed memory is zeroed before reuse);
 *   - `used` is the sum of the live extents;
 *   - ENOSPC only when the model has no free aligned run of that size
 *     (the allocator finds room whenever there is some);
 *   - the allocator's own work counter (free-set words touched) grows
 *     by at most TEST_WORK_MAX per ALLOC or FREE, however large or full
 *     the region: that is what keeps one client's ALLOCs from stalling
 *     the event loop (the first-fit scan it replaced read 16 thousand
 *     bitmap words per 64 KiB ALLOC with 63 GiB of a 64 GiB region in
 *     use).
 * Then everything is freed and the whole region must be allocatable
 * again in the largest extents: buddies merged back.
 *
 * Region sizes: 1000 granules and 64 GiB + 192 KiB (neither a power of
 * two, so the tail is made of smaller blocks), and 256 MiB.  The big
 * one is mapped MAP_NORESERVE and never written beyond a few pages, so
 * it costs no memory.  Seeded from RP_TEST_SEED or the clock; the seed
 * is printed so a failure reproduces.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "region.h"

/* Per ALLOC or FREE: 15 orders x (a lookup of at most 6 levels) plus a
 * split or merge per order with its set updates comes to about 200 in
 * the worst case; typical is 5 to 20.
 */
#define TEST_WORK_MAX 256
#define TEST_GRANULE ((uint64_t) REGION_GRANULE)

struct live {
  uint64_t offset, size;
};

struct model {
  struct region r;
  uint32_t *owner;           /* per granule: live index + 1, 0 = free */
  struct live *live;         /* live extents, unordered */
  size_t nlive, cap;
  uint64_t used;
  uint64_t max_work;         /* largest work of one operation seen */
  unsigned long allocs, frees, enospc;
};

static uint64_t rng_state;

static uint64_t
rng (void)
{
  /* xorshift64*: reproducible from the printed seed. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C (2685821657736338717);
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
fail (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "test_region: FAIL: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  exit (1);
}

static void
model_open (struct model *m, uint64_t capacity)
{
  memset (m, 0, sizeof *m);
  if (region_open (&m->r, capacity, false) == -1)
    fail ("region_open (%" PRIu64 "): %s", capacity, strerror (errno));
  /* The probes write single bytes: with huge pages each would fault in
   * and zero 2 MiB, which is most of this test's run time for nothing.
   */
  madvise (m->r.base, m->r.capacity, MADV_NOHUGEPAGE);
  m->owner = calloc (m->r.ngranules, sizeof *m->owner);
  m->cap = 1024;
  m->live = malloc (m->cap * sizeof *m->live);
  if (m->owner == NULL || m->live == NULL)
    fail ("out of memory");
}

static void
model_close (struct model *m)
{
  region_close (&m->r);
  free (m->owner);
  free (m->live);
}

static void
check_work (struct model *m, uint64_t before, const char *what)
{
  uint64_t w = m->r.work - before;

  if (w > m->max_work)
    m->max_work = w;
  if (w > TEST_WORK_MAX)
    fail ("%s cost %" PRIu64 " words of work (at most %d), %" PRIu64
          " of %" PRIu64 " bytes in use", what, w, TEST_WORK_MAX,
          m->r.used, m->r.capacity);
}

/* Is there a free aligned run of n granules in the model? */
static bool
model_has_room (const struct model *m, uint64_t n)
{
  for (uint64_t g = 0; g + n <= m->r.ngranules; g += n) {
    uint64_t i = 0;
    while (i < n && m->owner[g + i] == 0)
      i++;
    if (i == n)
      return true;
  }
  return false;
}

/* Bytes worth checking in an extent: first, last, and one in between. */
static void
probe_offsets (uint64_t size, uint64_t out[3])
{
  out[0] = 0;
  out[1] = size - 1;
  out[2] = rng () % size;
}

static bool
model_alloc (struct model *m, uint64_t size)
{
  uint64_t before = m->r.work, n = size / TEST_GRANULE, probe[3];
  int64_t off = region_alloc (&m->r, size);

  check_work (m, before, "ALLOC");
  if (off == -1) {
    if (errno != ENOSPC)
      fail ("ALLOC of %" PRIu64 ": %s", size, strerror (errno));
    if (model_has_room (m, n))
      fail ("ALLOC of %" PRIu64 " got ENOSPC, but an aligned run is free",
            size);
    m->enospc++;
    return false;
  }
  if ((uint64_t) off % size != 0)
    fail ("extent of %" PRIu64 " at %" PRId64 ": not aligned", size, off);
  if ((uint64_t) off + size > m->r.capacity)
    fail ("extent of %" PRIu64 " at %" PRId64 ": past the region's end",
          size, off);
  for (uint64_t g = off / TEST_GRANULE; g < off / TEST_GRANULE + n; g++)
    if (m->owner[g])
      fail ("extent of %" PRIu64 " at %" PRId64 " overlaps a live one at"
            " %" PRIu64, size, off, m->live[m->owner[g] - 1].offset);
  probe_offsets (size, probe);
  for (int i = 0; i < 3; i++)
    if (m->r.base[off + probe[i]] != 0)
      fail ("a new extent at %" PRId64 " holds %#x at +%" PRIu64
            ": not zeroed", off, m->r.base[off + probe[i]], probe[i]);
  /* Left for the next user of these bytes to find. */
  for (int i = 0; i < 3; i++)
    m->r.base[off + probe[i]] = 0xa5;
  if (m->nlive == m->cap) {
    m->cap *= 2;
    m->live = realloc (m->live, m->cap * sizeof *m->live);
    if (m->live == NULL)
      fail ("out of memory");
  }
  m->live[m->nlive++] = (struct live) { .offset = off, .size = size };
  for (uint64_t g = off / TEST_GRANULE; g < off / TEST_GRANULE + n; g++)
    m->owner[g] = m->nlive;
  m->used += size;
  m->allocs++;
  if (m->r.used != m->used)
    fail ("region counts %" PRIu64 " bytes used, the extents %" PRIu64,
          m->r.used, m->used);
  return true;
}

static void
model_free (struct model *m, size_t i)
{
  struct live e = m->live[i];
  uint64_t before = m->r.work;

  region_free (&m->r, e.offset, e.size);
  check_work (m, before, "FREE");
  for (uint64_t g = e.offset / TEST_GRANULE;
       g < (e.offset + e.size) / TEST_GRANULE; g++)
    m->owner[g] = 0;
  /* The last live extent takes slot i. */
  m->live[i] = m->live[--m->nlive];
  if (i < m->nlive) {
    struct live *l = &m->live[i];
    for (uint64_t g = l->offset / TEST_GRANULE;
         g < (l->offset + l->size) / TEST_GRANULE; g++)
      m->owner[g] = i + 1;
  }
  m->used -= e.size;
  m->frees++;
  if (m->r.used != m->used)
    fail ("region counts %" PRIu64 " bytes used after FREE, the extents %"
          PRIu64, m->r.used, m->used);
}

/* 64 KiB .. 4 MiB, small ones more often, as librampool asks. */
static uint64_t
random_size (void)
{
  unsigned k = rng () % 16;
  unsigned order = k < 6 ? 0 : k < 10 ? 1 : k < 12 ? 2 : k < 14 ? 4 : 6;
  return TEST_GRANULE << order;
}

static void
run_random (struct model *m, unsigned long ops)
{
  for (unsigned long op = 0; op < ops; op++) {
    /* Mostly allocate until ENOSPC shows up, then churn. */
    bool do_alloc = m->nlive == 0 || rng () % 100 < (m->enospc ? 50 : 70);
    if (do_alloc)
      model_alloc (m, random_size ());
    else
      model_free (m, rng () % m->nlive);
  }
}

/* Free everything, then the region must take its largest extents
 * again from the start: every buddy pair merged.
 */
static void
check_merges_back (struct model *m)
{
  uint64_t top = TEST_GRANULE << REGION_MAX_ORDER, expect = 0, left;

  while (m->nlive)
    model_free (m, rng () % m->nlive);
  if (m->r.used != 0)
    fail ("%" PRIu64 " bytes used after freeing everything", m->r.used);
  /* What fits: 1 GiB blocks, then the tail in ever smaller ones. */
  left = m->r.ngranules * TEST_GRANULE;
  for (uint64_t size = top; size >= TEST_GRANULE; size /= 2) {
    while (left >= size) {
      if (!model_alloc (m, size))
        fail ("after freeing everything, an ALLOC of %" PRIu64 " failed"
              " with %" PRIu64 " bytes left: buddies not merged", size, left);
      left -= size;
      expect += size;
    }
  }
  if (region_alloc (&m->r, TEST_GRANULE) != -1 || errno != ENOSPC)
    fail ("a full region gave out one more granule");
  if (m->used != m->r.capacity || expect != m->r.capacity)
    fail ("the region held %" PRIu64 " of %" PRIu64 " bytes when full",
          m->used, m->r.capacity);
  while (m->nlive)
    model_free (m, m->nlive - 1);
}

int
main (void)
{
  const char *seed_env = getenv ("RP_TEST_SEED");
  uint64_t seed = seed_env ? strtoull (seed_env, NULL, 0)
    : (uint64_t) time (NULL) * 2654435761u;
  struct model m;

  rng_state = seed | 1;
  printf ("test_region: seed %" PRIu64 " (RP_TEST_SEED to repeat)\n", seed);

  /* Small, odd size: 1000 granules (62.5 MiB) and a ragged tail. */
  model_open (&m, 1000 * TEST_GRANULE + 12345);
  run_random (&m, 200000);
  printf ("test_region: 1000 granules: %lu allocs, %lu frees, %lu ENOSPC,"
          " most work %" PRIu64 "\n", m.allocs, m.frees, m.enospc, m.max_work);
  check_merges_back (&m);
  model_close (&m);

  /* 256 MiB: a power of two, a different churn. */
  model_open (&m, 256 * 1024 * 1024);
  run_random (&m, 100000);
  check_merges_back (&m);
  printf ("test_region: 256 MiB: %lu allocs, %lu frees, %lu ENOSPC,"
          " most work %" PRIu64 "\n", m.allocs, m.frees, m.enospc, m.max_work);
  model_close (&m);

  /* 64 GiB + 192 KiB, 63 GiB of it in 1 GiB extents (the case that took
   * 0.61 ms per ALLOC), then mixed sizes in the rest until it is full,
   * then churn.  The work bound must hold just the same.
   */
  model_open (&m, (UINT64_C (64) << 30) + 3 * TEST_GRANULE);
  for (int i = 0; i < 63; i++)
    if (!model_alloc (&m, TEST_GRANULE << REGION_MAX_ORDER))
      fail ("1 GiB extent %d of 63 refused", i);
  while (model_alloc (&m, random_size ()))
    ;
  run_random (&m, 50000);
  printf ("test_region: 64 GiB: %lu allocs, %lu frees, %lu ENOSPC,"
          " most work %" PRIu64 "\n", m.allocs, m.frees, m.enospc, m.max_work);
  check_merges_back (&m);
  model_close (&m);

  printf ("test_region: PASS\n");
  return 0;
}
