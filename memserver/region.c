/* See region.h for what the region is and why memory is locked per
 * extent.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "region.h"

int
region_open (struct region *r, uint64_t capacity, bool use_mlock)
{
  memset (r, 0, sizeof *r);
  capacity -= capacity % REGION_GRANULE;
  if (capacity == 0) {
    errno = EINVAL;
    return -1;
  }
  r->base = mmap (NULL, capacity, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r->base == MAP_FAILED) {
    r->base = NULL;
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
  r->ngranules = capacity / REGION_GRANULE;
  r->bitmap = calloc ((r->ngranules + 63) / 64, sizeof (uint64_t));
  if (r->bitmap == NULL) {
    munmap (r->base, capacity);
    r->base = NULL;
    return -1;
  }
  r->use_mlock = use_mlock;
  return 0;
}

void
region_close (struct region *r)
{
  if (r->base)
    munmap (r->base, r->capacity);
  free (r->bitmap);
  memset (r, 0, sizeof *r);
}

static bool
region_bit (const struct region *r, uint64_t g)
{
  return (r->bitmap[g / 64] >> (g % 64)) & 1;
}

static void
region_set_run (struct region *r, uint64_t g, uint64_t n, bool value)
{
  for (uint64_t i = g; i < g + n; i++) {
    if (value)
      r->bitmap[i / 64] |= UINT64_C (1) << (i % 64);
    else
      r->bitmap[i / 64] &= ~(UINT64_C (1) << (i % 64));
  }
}

/* Is the run [g, g+n) free?  Whole 64-bit words are tested at once when
 * the run covers them (n >= 64 is always word aligned here because runs
 * are aligned to their own power-of-two size).
 */
static bool
region_run_is_free (const struct region *r, uint64_t g, uint64_t n)
{
  if (n >= 64) {
    for (uint64_t w = g / 64; w < (g + n) / 64; w++)
      if (r->bitmap[w])
        return false;
    return true;
  }
  for (uint64_t i = g; i < g + n; i++)
    if (region_bit (r, i))
      return false;
  return true;
}

int64_t
region_alloc (struct region *r, uint64_t size)
{
  uint64_t n = size / REGION_GRANULE;

  if (size < REGION_GRANULE || (size & (size - 1)) || size > r->capacity) {
    errno = size > r->capacity ? ENOSPC : EINVAL;
    return -1;
  }
  if (r->capacity - r->used < size) {
    errno = ENOSPC;
    return -1;
  }
  for (uint64_t g = 0; g + n <= r->ngranules; g += n) {
    if (!region_run_is_free (r, g, n))
      continue;
    uint8_t *p = r->base + g * REGION_GRANULE;
    /* mlock populates the range; on a fresh or DONTNEED'd range that
     * means zero pages, so a new extent never shows old data.
     */
    if (r->use_mlock && mlock (p, size) == -1) {
      errno = ENOMEM;
      return -1;
    }
    region_set_run (r, g, n, true);
    r->used += size;
    return (int64_t) (g * REGION_GRANULE);
  }
  errno = ENOSPC;
  return -1;
}

void
region_free (struct region *r, uint64_t offset, uint64_t size)
{
  uint8_t *p = r->base + offset;

  if (r->use_mlock)
    munlock (p, size);
  /* Drops the pages: memory returns to the donor, and the next reader
   * of this range sees zeros.  If madvise were to fail (it cannot on a
   * private anonymous mapping we own) zero by hand so nothing leaks.
   */
  if (madvise (p, size, MADV_DONTNEED) == -1)
    memset (p, 0, size);
  region_set_run (r, offset / REGION_GRANULE, size / REGION_GRANULE, false);
  r->used -= size;
}
