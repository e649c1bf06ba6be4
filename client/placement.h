/* Placement: power of d choices (Mitzenmacher; as Infiniswap intended,
 * though its released code used d=1), weighted for donors of different
 * sizes.  Draw d eligible servers at random in proportion to their
 * capacity (the bytes they donate) and take the one with the largest
 * free fraction (free / capacity).  A server is eligible when it is up,
 * has room for one extent, holds no replica of this extent yet, and --
 * when enough servers remain -- held no replica of the previous extent,
 * so consecutive extents stripe across the pool.
 *
 * Why weighted: drawn uniformly, no server is chosen more than d times
 * as often as the average one, however large it is, so with 8, 32 and
 * 128 GiB donors the small ones fill to the brim first while the large
 * ones keep room (bench/placement-sim.py, bench/README.md "Placement
 * at scale": with 1,000 or 10,000 donors filled to 85%, uniform d=2 by
 * free bytes leaves 76-78% of them full, utilisation sd 0.12; by
 * capacity and free fraction, 0.3-5% full, sd 0.05-0.07).  Ranking by
 * fraction without weighting the draw is worse than by bytes: it takes
 * away the one thing that favoured the large donors.
 *
 * If a server it draws from does not know its capacity (0), the whole
 * choice falls back to the unweighted rule: d drawn uniformly, the one
 * with the most free bytes.  It does not track what this client has in
 * flight (the simulator found that changes nothing measurable), and it
 * does not move existing copies (no rebalancing).
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
  uint64_t free_bytes;         /* free donated bytes, as last reported */
  uint64_t capacity_bytes;     /* donated bytes in all (HELLO), 0 if
                                  unknown */
};

/* Returns the chosen index in [0, n), or -1 if no server is eligible.
 * *rng is the caller's xorshift state (non-zero).  n is at most
 * RP_MAX_SERVERS (candidates beyond are not considered).  Allocates
 * nothing (it runs on the I/O path), and its stack does not grow with
 * n (a bit per candidate, 512 bytes): O(n * d) time.
 */
int placement_choose (const struct placement_candidate *c, unsigned n,
                      unsigned d, uint64_t *rng);

uint64_t placement_rand (uint64_t *rng);

#endif /* RP_PLACEMENT_H */
