/* The donated region: one anonymous mapping of `capacity` bytes,
 * carved into extents by a buddy allocator with 64 KiB granules.  An
 * extent of size S (a power of two, 64 KiB .. 1 GiB) is always aligned
 * to S in the region (buddy alignment: bounds fragmentation for mixed
 * sizes and lets transparent huge pages back 2 MiB+ extents).
 *
 * Finding a free block costs O(orders x levels), not O(region): the
 * free blocks of each order are a set of indexes kept as a bitmap with
 * summary levels (one bit per 64-bit word of the level below), so the
 * lowest free block of an order is found by following set bits from
 * the top, and freeing merges with the buddy while it is free.  The
 * bit-by-bit first-fit scan this replaced took 0.61 ms per ALLOC with
 * 63 GiB of a 64 GiB region in use, and one client pipelining 12000
 * ALLOCs delayed everyone else by 6 s.
 *
 * Memory is committed and locked per extent, not up front: ALLOC
 * mlock()s the extent (which populates it with zero pages), FREE
 * munlock()s it and MADV_DONTNEEDs it, so freed memory goes back to the
 * donor host at once and the next owner always starts from zeros.  An
 * idle memserver therefore pins nothing; --size is the cap of what it
 * will donate.  This file does not know owners or handles (store.h).
 * Single-threaded: called only from the event loop.
 */
#ifndef MS_REGION_H
#define MS_REGION_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define REGION_GRANULE (64u * 1024)
/* Largest extent, as an order (granules = 1 << order): 1 GiB, the
 * protocol's RP_MAX_EXTENT_SIZE (checked in store.c).
 */
#define REGION_MAX_ORDER 14
/* Summary levels of a free set: 64^6 indexes is 2^36 granules (4 PiB),
 * more than any region.
 */
#define REGION_SET_LEVELS 6

/* The free blocks of one order: block i covers granules
 * [i << order, (i + 1) << order).  Only blocks wholly inside the region
 * exist (n = ngranules >> order).
 */
struct region_set {
  uint64_t *level[REGION_SET_LEVELS]; /* level 0: bit i = block i free;
                                         level l+1: bit w = word w of
                                         level l non-zero.  Point into
                                         region.set_words */
  unsigned nlevels;        /* 0 when n is 0 */
  uint64_t n;              /* blocks of this order in the region */
};

struct region {
  uint8_t *base;           /* mapping; owned, unmapped by region_close */
  uint64_t capacity;       /* bytes, multiple of REGION_GRANULE: the
                              mapping, the most ever donated */
  uint64_t limit;          /* bytes that may be allocated now, <=
                              capacity: capacity, or less while
                              --size auto gives memory back (reclaim.c);
                              used may exceed it until extents go */
  uint64_t used;           /* bytes allocated to extents */
  uint64_t *bitmap;        /* 1 bit per granule, 1 = allocated; owned.
                              What the free sets index, and what
                              region_free checks a run against */
  uint64_t ngranules;
  bool use_mlock;          /* false with --no-mlock */
  struct region_set free[REGION_MAX_ORDER + 1]; /* free blocks by order */
  uint64_t *set_words;     /* every level of every free set; owned */
  uint64_t work;           /* free-set words read or written so far:
                              what a search, split or merge costs.  For
                              tests (tests/test_region.c): it must not
                              grow with the region or how full it is */
};

/* Map the region.  capacity is rounded down to the granule.  0 or -1
 * with errno (the caller logs).
 */
int region_open (struct region *r, uint64_t capacity, bool use_mlock);
void region_close (struct region *r);

/* Allocate `size` bytes (power of two, REGION_GRANULE ..
 * REGION_GRANULE << REGION_MAX_ORDER), from the lowest free block of
 * the smallest order that has one.  Returns the offset in the region,
 * or -1 with errno = ENOSPC (no aligned run free), EINVAL (bad size) or
 * ENOMEM (mlock failed: the donor has no memory to give now).
 */
int64_t region_alloc (struct region *r, uint64_t size);

/* Free and zero an extent allocated by region_alloc.  Aborts if the
 * run is not allocated: handing one range to two owners would show one
 * client's data to another.
 */
void region_free (struct region *r, uint64_t offset, uint64_t size);

static inline uint64_t
region_free_bytes (const struct region *r)
{
  return r->limit > r->used ? r->limit - r->used : 0;
}

#endif /* MS_REGION_H */
