/* See placement.h.  Draws are weighted in MiB of capacity; fractions
 * are compared exactly, in bytes, by 64x64 -> 128-bit products built
 * from 32-bit halves (rampool builds on 32-bit Debian architectures
 * too, which have no __int128).
 */
#include <config.h>

#include "placement.h"
#include "rampool/client.h"

/* A candidate's weight in the draw: its capacity in MiB, at least 1.
 * The sum of RP_MAX_SERVERS (2^12) of them is below 2^56, whatever the
 * servers report.
 */
static uint64_t
placement_weight_mib (const struct placement_candidate *c)
{
  uint64_t mib = c->capacity_bytes >> 20;

  return mib > 0 ? mib : 1;
}

/* a * b as the 128-bit number hi:lo. */
static void
placement_mul (uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
  uint64_t a_lo = (uint32_t) a, a_hi = a >> 32;
  uint64_t b_lo = (uint32_t) b, b_hi = b >> 32;
  uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi;
  uint64_t hl = a_hi * b_lo, hh = a_hi * b_hi;
  /* Three numbers below 2^32: no carry lost. */
  uint64_t mid = (ll >> 32) + (uint32_t) lh + (uint32_t) hl;

  *lo = (mid << 32) | (uint32_t) ll;
  *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* Whether b is better than a: more free bytes, or, by fraction, a
 * larger free / capacity, by cross-multiplication:
 * free_b * cap_a > free_a * cap_b.  Strict, so that a tie keeps the
 * earlier of the random sample.
 */
static bool
placement_beats (const struct placement_candidate *b,
                 const struct placement_candidate *a, bool is_by_fraction)
{
  uint64_t b_hi, b_lo, a_hi, a_lo;

  if (!is_by_fraction)
    return b->free_bytes > a->free_bytes;
  placement_mul (b->free_bytes, a->capacity_bytes, &b_hi, &b_lo);
  placement_mul (a->free_bytes, b->capacity_bytes, &a_hi, &a_lo);
  return b_hi > a_hi || (b_hi == a_hi && b_lo > a_lo);
}

uint64_t
placement_rand (uint64_t *rng)
{
  uint64_t x = *rng;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *rng = x;
  return x;
}

/* Whether c may be drawn: eligible, and not one of the previous
 * extent's servers when others are left.
 */
static bool
placement_is_in (const struct placement_candidate *c, bool avoid_previous)
{
  return c->is_eligible && !(avoid_previous && c->is_preferred_out);
}

int
placement_choose (const struct placement_candidate *c, unsigned n,
                  unsigned d, uint64_t *rng)
{
  /* Those drawn so far, a bit each: the only state sized by the
   * candidates, 512 bytes of stack for the most a pool can have.  The
   * draws scan c itself instead of a compacted copy of those in.
   */
  uint64_t drawn[(RP_MAX_SERVERS + 63) / 64] = { 0 };
  uint64_t left_mib = 0;  /* sum of the weights of those in, not drawn */
  unsigned m = 0;         /* those in */
  int best = -1;
  bool avoid_previous = false;
  bool is_weighted = true;

  if (n > RP_MAX_SERVERS)
    n = RP_MAX_SERVERS;
  /* Avoid the previous extent's servers only if someone else is left. */
  for (unsigned i = 0; i < n; i++)
    if (c[i].is_eligible && !c[i].is_preferred_out)
      avoid_previous = true;
  for (unsigned i = 0; i < n; i++)
    if (placement_is_in (&c[i], avoid_previous)) {
      /* An unknown capacity makes the whole choice unweighted: such a
       * server has no free fraction to compare, and any weight we
       * gave it would be a guess that decides how often it is drawn
       * (1 MiB: almost never, yet always winning when drawn, its
       * fraction being huge).  Bytes against bytes is at least the
       * rule rampool had before.  A server is only eligible once its
       * HELLO has told its capacity, so this is for callers that do
       * not know capacities.
       */
      if (c[i].capacity_bytes == 0)
        is_weighted = false;
      left_mib += placement_weight_mib (&c[i]);
      m++;
    }
  if (m == 0)
    return -1;
  if (d > m)
    d = m;
  /* d draws without replacement, in order.  Weighted, each takes one
   * of those left with probability its capacity over theirs; else
   * each of those left alike (weight 1).
   */
  for (unsigned k = 0; k < d; k++) {
    /* r < the sum of the weights of those left: the scan stops at one
     * of them.  The modulo's bias is below left_mib / 2^64: 2^-34 for
     * a pool of a PiB.
     */
    uint64_t r = placement_rand (rng) % (is_weighted ? left_mib : m - k);
    unsigned j;
    for (j = 0; j < n; j++) {
      uint64_t w;
      if (!placement_is_in (&c[j], avoid_previous) ||
          (drawn[j / 64] >> (j % 64)) & 1)
        continue;
      w = is_weighted ? placement_weight_mib (&c[j]) : 1;
      if (r < w)
        break;
      r -= w;
    }
    if (j == n)
      break;                    /* cannot be: r is below their sum */
    drawn[j / 64] |= UINT64_C (1) << (j % 64);
    if (is_weighted)
      left_mib -= placement_weight_mib (&c[j]);
    if (best < 0 || placement_beats (&c[j], &c[best], is_weighted))
      best = j;
  }
  return best;
}
