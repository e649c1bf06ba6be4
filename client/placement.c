/* See placement.h. */
#include <config.h>

#include "placement.h"
#include "rampool/client.h"

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

int
placement_choose (const struct placement_candidate *c, unsigned n,
                  unsigned d, uint64_t *rng)
{
  unsigned idx[RP_MAX_SERVERS];
  unsigned m = 0, best = 0;
  bool avoid_previous = false;

  /* Avoid the previous extent's servers only if someone else is left. */
  for (unsigned i = 0; i < n; i++)
    if (c[i].is_eligible && !c[i].is_preferred_out)
      avoid_previous = true;
  for (unsigned i = 0; i < n && m < RP_MAX_SERVERS; i++)
    if (c[i].is_eligible && !(avoid_previous && c[i].is_preferred_out))
      idx[m++] = i;
  if (m == 0)
    return -1;
  if (d > m)
    d = m;
  /* Partial Fisher-Yates: the first d of idx become a random sample. */
  for (unsigned i = 0; i < d; i++) {
    unsigned j = i + placement_rand (rng) % (m - i);
    unsigned t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
    if (i == 0 || c[idx[i]].free_bytes > c[idx[best]].free_bytes)
      best = i;
  }
  return idx[best];
}
