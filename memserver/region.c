/* See region.h for what the region is, why memory is locked per
 * extent, and how free blocks are found.
 *
 * This file keeps two views of the same state: the granule bitmap (what
 * is allocated, one bit per 64 KiB) and the free sets (maximal free
 * buddy blocks by order, for finding one fast).  Allocation and free
 * update both; the bitmap is also checked, so a bug in the free sets
 * aborts instead of giving one range to two clients.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "region.h"

/* --- free sets: bitmaps with summary levels --- */

/* Words needed for a set of n indexes, level by level; returns the
 * total and fills words[] and *nlevels.
 */
static uint64_t
region_set_layout (uint64_t n, uint64_t words[REGION_SET_LEVELS],
                   unsigned *nlevels)
{
  uint64_t total = 0;

  *nlevels = 0;
  while (n > 0) {
    uint64_t w = (n + 63) / 64;
    if (*nlevels == REGION_SET_LEVELS)
      abort ();  /* 2^36 granules: see REGION_SET_LEVELS */
    words[(*nlevels)++] = w;
    total += w;
    if (w == 1)
      break;
    n = w;
  }
  return total;
}

static bool
region_set_has (const struct region_set *s, uint64_t i)
{
  return i < s->n && ((s->level[0][i / 64] >> (i % 64)) & 1);
}

static void
region_set_add (struct region *r, struct region_set *s, uint64_t i)
{
  for (unsigned l = 0; l < s->nlevels; l++, i /= 64) {
    uint64_t *w = &s->level[l][i / 64];
    bool was_empty = *w == 0;

    *w |= UINT64_C (1) << (i % 64);
    r->work++;
    if (!was_empty)
      break;  /* the levels above already say this word has members */
  }
}

static void
region_set_remove (struct region *r, struct region_set *s, uint64_t i)
{
  for (unsigned l = 0; l < s->nlevels; l++, i /= 64) {
    uint64_t *w = &s->level[l][i / 64];

    *w &= ~(UINT64_C (1) << (i % 64));
    r->work++;
    if (*w != 0)
      break;  /* the word still has members: levels above unchanged */
  }
}

/* The lowest member, or -1 if the set is empty: one word per level. */
static int64_t
region_set_first (struct region *r, const struct region_set *s)
{
  uint64_t i = 0;

  if (s->nlevels == 0 || s->level[s->nlevels - 1][0] == 0)
    return -1;
  for (unsigned l = s->nlevels; l-- > 0; ) {
    uint64_t w = s->level[l][i];
    r->work++;
    i = i * 64 + (uint64_t) __builtin_ctzll (w);
  }
  return (int64_t) i;
}

/* --- the granule bitmap --- */

/* Set (value true) or clear the bits of [g, g+n), whole words at a
 * time; returns false, changing nothing, if any bit already had that
 * value.
 */
static bool
region_mark_run (struct region *r, uint64_t g, uint64_t n, bool value)
{
  for (int pass = 0; pass < 2; pass++)
    for (uint64_t i = g; i < g + n; ) {
      uint64_t bits = 64 - i % 64 < g + n - i ? 64 - i % 64 : g + n - i;
      uint64_t mask = (bits == 64 ? ~UINT64_C (0)
                       : (UINT64_C (1) << bits) - 1) << (i % 64);
      uint64_t *w = &r->bitmap[i / 64];
      if (pass == 0 && (value ? (*w & mask) != 0 : (*w & mask) != mask))
        return false;
      if (pass == 1)
        *w = value ? *w | mask : *w & ~mask;
      i += bits;
    }
  return true;
}

static void __attribute__ ((noreturn))
region_corrupt (const char *what, uint64_t offset, uint64_t size)
{
  fprintf (stderr, "memserver: error: region: %s: offset %llu, %llu bytes;"
           " aborting rather than give one range to two clients\n", what,
           (unsigned long long) offset, (unsigned long long) size);
  abort ();
}

/* --- open, close --- */

int
region_open (struct region *r, uint64_t capacity, bool use_mlock)
{
  uint64_t words[REGION_MAX_ORDER + 1][REGION_SET_LEVELS];
  uint64_t total = 0, g;

  memset (r, 0, sizeof *r);
  capacity -= capacity % REGION_GRANULE;
  if (capacity == 0) {
    errno = EINVAL;
    return -1;
  }
  r->ngranules = capacity / REGION_GRANULE;
  for (int k = 0; k <= REGION_MAX_ORDER; k++) {
    r->free[k].n = r->ngranules >> k;
    total += region_set_layout (r->free[k].n, words[k], &r->free[k].nlevels);
  }
  /* About 2 bits per granule in all (64 KiB per 4 GiB donated), so
   * calloc'd up front: nothing to fail later.
   */
  r->bitmap = calloc ((r->ngranules + 63) / 64, sizeof (uint64_t));
  r->set_words = calloc (total, sizeof (uint64_t));
  if (r->bitmap == NULL || r->set_words == NULL)
    goto err_free_index;
  total = 0;
  for (int k = 0; k <= REGION_MAX_ORDER; k++)
    for (unsigned l = 0; l < r->free[k].nlevels; l++) {
      r->free[k].level[l] = r->set_words + total;
      total += words[k][l];
    }

  r->base = mmap (NULL, capacity, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r->base == MAP_FAILED) {
    int err = errno;
    r->base = NULL;
    free (r->bitmap);
    free (r->set_words);
    memset (r, 0, sizeof *r);
    errno = err;
    return -1;
  }
  /* THP where the kernel allows it; failure only costs TLB misses. */
#ifdef MADV_HUGEPAGE
  madvise (r->base, capacity, MADV_HUGEPAGE);
#endif
  /* A core dump of a donor must not contain its clients' pages. */
#ifdef MADV_DONTDUMP
  madvise (r->base, capacity, MADV_DONTDUMP);
#endif
  r->capacity = capacity;
  r->limit = capacity;
  r->use_mlock = use_mlock;

  /* Everything is free: the largest aligned blocks that fit, left to
   * right (a region that is not a multiple of 1 GiB ends in smaller
   * ones, whose buddies lie past the end and are never free).
   */
  for (g = 0; g < r->ngranules; ) {
    int k = REGION_MAX_ORDER;
    while (k > 0 && (g % (UINT64_C (1) << k) != 0 ||
                     g + (UINT64_C (1) << k) > r->ngranules))
      k--;
    region_set_add (r, &r->free[k], g >> k);
    g += UINT64_C (1) << k;
  }
  r->work = 0;
  return 0;

 err_free_index:
  free (r->bitmap);
  free (r->set_words);
  memset (r, 0, sizeof *r);
  errno = ENOMEM;
  return -1;
}

void
region_close (struct region *r)
{
  if (r->base)
    munmap (r->base, r->capacity);
  free (r->bitmap);
  free (r->set_words);
  memset (r, 0, sizeof *r);
}

/* --- allocate, free --- */

/* Give block (k, i) back: merge with its buddy while that is free too. */
static void
region_release (struct region *r, int k, uint64_t i)
{
  while (k < REGION_MAX_ORDER && region_set_has (&r->free[k], i ^ 1)) {
    r->work++;
    region_set_remove (r, &r->free[k], i ^ 1);
    i /= 2;
    k++;
  }
  region_set_add (r, &r->free[k], i);
}

int64_t
region_alloc (struct region *r, uint64_t size)
{
  int k = 0, j;
  int64_t i = -1;

  if (size < REGION_GRANULE || (size & (size - 1)) ||
      size > (uint64_t) REGION_GRANULE << REGION_MAX_ORDER) {
    errno = EINVAL;
    return -1;
  }
  if (region_free_bytes (r) < size) {
    errno = ENOSPC;
    return -1;
  }
  while (((uint64_t) REGION_GRANULE << k) < size)
    k++;
  /* The smallest order with a free block, split down to k: the right
   * halves become free blocks of the orders below.
   */
  for (j = k; j <= REGION_MAX_ORDER; j++)
    if ((i = region_set_first (r, &r->free[j])) >= 0)
      break;
  if (i < 0) {
    errno = ENOSPC;  /* enough bytes free, but no aligned run */
    return -1;
  }
  region_set_remove (r, &r->free[j], i);
  for (; j > k; j--) {
    i *= 2;
    region_set_add (r, &r->free[j - 1], i + 1);
  }

  uint64_t g = (uint64_t) i << k, offset = g * REGION_GRANULE;
  uint8_t *p = r->base + offset;

  if (!region_mark_run (r, g, size / REGION_GRANULE, true))
    region_corrupt ("a free block is allocated", offset, size);
  /* mlock populates the range; on a fresh or DONTNEED'd range that
   * means zero pages, so a new extent never shows old data.  A failed
   * mlock may have locked and populated part of it: undo both.
   */
  if (r->use_mlock && mlock (p, size) == -1) {
    munlock (p, size);
    madvise (p, size, MADV_DONTNEED);
    region_mark_run (r, g, size / REGION_GRANULE, false);
    region_release (r, k, (uint64_t) i);
    errno = ENOMEM;
    return -1;
  }
  r->used += size;
  return (int64_t) offset;
}

void
region_free (struct region *r, uint64_t offset, uint64_t size)
{
  uint8_t *p = r->base + offset;
  uint64_t g = offset / REGION_GRANULE;
  int k = 0;

  while (((uint64_t) REGION_GRANULE << k) < size)
    k++;
  if (offset % size != 0 || offset + size > r->capacity ||
      !region_mark_run (r, g, size / REGION_GRANULE, false))
    region_corrupt ("freeing a range that is not allocated", offset, size);
  if (r->use_mlock)
    munlock (p, size);
  /* Drops the pages: memory returns to the donor, and the next reader
   * of this range sees zeros.  If madvise were to fail (it cannot on a
   * private anonymous mapping we own) zero by hand so nothing leaks.
   */
  if (madvise (p, size, MADV_DONTNEED) == -1)
    memset (p, 0, size);
  region_release (r, k, g >> k);
  r->used -= size;
}
