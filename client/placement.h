/* Placement: power of d choices (Mitzenmacher; as Infiniswap intended,
 * though its released code used d=1).  Sample d eligible servers at
 * random and take the one with the most free donated memory.  A server
 * is eligible when it is up, has room for one extent, holds no replica
 * of this extent yet, and -- when enough servers remain -- held no
 * replica of the previous extent, so consecutive extents stripe across
 * the pool.
 *
 * Pure function of its inputs: unit-tested in tests/test_placement.c.
 */
#ifndef RP_PLACEMENT_H
#define RP_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

struct placement_candidate {
  bool is_eligible;
  bool is_preferred_out;       /* held the previous extent */
  uint64_t free_bytes;
};

/* Returns the chosen index in [0, n), or -1 if no server is eligible.
 * *rng is the caller's xorshift state (non-zero).
 */
int placement_choose (const struct placement_candidate *c, unsigned n,
                      unsigned d, uint64_t *rng);

uint64_t placement_rand (uint64_t *rng);

#endif /* RP_PLACEMENT_H */
