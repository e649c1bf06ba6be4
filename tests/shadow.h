/* What the two librampool checkers (test_pool_io.c, test_chaos.c)
 * share: their random numbers, and rampool's trim as it applies to a
 * shadow copy of the disk, so that both hold the engine to the same
 * semantics.  Header-only (static functions): each is a program of its
 * own, with its own shadow.
 */
#ifndef RP_TESTS_SHADOW_H
#define RP_TESTS_SHADOW_H

#include <stdint.h>
#include <string.h>

/* xorshift64: the next number of the sequence in *s (never 0 unless
 * *s was).  Deterministic, so that a seed replays a run.
 */
static inline uint64_t
rnd (uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* rampool's trim on the shadow of a disk of disk_size bytes in extents
 * of extent_size: whole extents inside [off, off + len) become zeros
 * (the last one too when the range reaches the end of the disk, even
 * if the disk ends inside it); partly covered extents keep their data.
 */
static inline void
shadow_trim (uint8_t *shadow, uint64_t disk_size, uint64_t extent_size,
             uint64_t off, uint64_t len)
{
  uint64_t first = (off + extent_size - 1) / extent_size * extent_size;
  uint64_t end = (off + len) / extent_size * extent_size;

  if (off + len == disk_size)
    end = off + len;
  if (first < end)
    memset (shadow + first, 0, end - first);
}

#endif /* RP_TESTS_SHADOW_H */
