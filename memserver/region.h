/* The donated region: one anonymous mapping of `capacity` bytes,
 * carved into extents by a first-fit bitmap allocator with 64 KiB
 * granules.  An extent of size S (a power of two) is always aligned to
 * S in the region (buddy-style alignment: bounds fragmentation for mixed
 * sizes and lets transparent huge pages back 2 MiB+ extents).
 *
 * Memory is committed and locked per extent, not up front: ALLOC
 * mlock()s the extent (which populates it with zero pages), FREE
 * munlock()s it and MADV_DONTNEEDs it, so freed memory goes back to the
 * donor host at once and the next owner always starts from zeros.  An
 * idle memserver therefore pins nothing; --size is the cap of what it
 * will donate.  Single-threaded: called only from the event loop.
 */
#ifndef MS_REGION_H
#define MS_REGION_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct region {
  uint8_t *base;           /* mapping; owned, unmapped by region_close */
  uint64_t capacity;       /* bytes, multiple of REGION_GRANULE */
  uint64_t used;           /* bytes allocated to extents */
  uint64_t *bitmap;        /* 1 bit per granule, 1 = allocated; owned */
  uint64_t ngranules;
  bool use_mlock;          /* false with --no-mlock */
};

#define REGION_GRANULE (64u * 1024)

/* Map the region.  capacity is rounded down to the granule.  0 or -1
 * with errno (the caller logs).
 */
int region_open (struct region *r, uint64_t capacity, bool use_mlock);
void region_close (struct region *r);

/* Allocate `size` bytes (power of two >= REGION_GRANULE).  Returns the
 * offset in the region, or -1 with errno = ENOSPC (no aligned run free)
 * or ENOMEM (mlock failed: the donor has no memory to give now).
 */
int64_t region_alloc (struct region *r, uint64_t size);

/* Free and zero an extent allocated by region_alloc. */
void region_free (struct region *r, uint64_t offset, uint64_t size);

static inline uint64_t
region_free_bytes (const struct region *r)
{
  return r->capacity - r->used;
}

#endif /* MS_REGION_H */
