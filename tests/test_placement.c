/* Unit test of placement (client/placement.c): only eligible servers
 * are chosen; with d=2 the choice is the fuller-free of two samples,
 * so the server with the least free memory is never chosen when all
 * are eligible; d=1 spreads uniformly; the previous extent's servers
 * are avoided while others remain (striping); no candidates = -1.
 */
#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "placement.h"

int
main (void)
{
  struct placement_candidate c[8];
  unsigned hits[8];
  uint64_t rng = 88172645463325252ULL;

  memset (c, 0, sizeof c);
  assert (placement_choose (c, 8, 2, &rng) == -1);

  /* Only eligible servers. */
  for (int i = 0; i < 8; i++)
    c[i] = (struct placement_candidate) { .is_eligible = i % 3 == 0,
                                          .free_bytes = 100 + i };
  for (int k = 0; k < 1000; k++) {
    int s = placement_choose (c, 8, 2, &rng);
    assert (s >= 0 && s % 3 == 0);
  }

  /* d=2: the least-free server can never win a sample of two. */
  memset (hits, 0, sizeof hits);
  for (int i = 0; i < 4; i++)
    c[i] = (struct placement_candidate) { .is_eligible = true,
                                          .free_bytes = 1000 * (i + 1) };
  for (int k = 0; k < 4000; k++)
    hits[placement_choose (c, 4, 2, &rng)]++;
  assert (hits[0] == 0);
  /* The most-free wins every sample it is in: 1/2 of all samples. */
  assert (hits[3] > 1700 && hits[3] < 2300);
  assert (hits[3] > hits[2] && hits[2] > hits[1]);

  /* d=1: uniform. */
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < 4000; k++)
    hits[placement_choose (c, 4, 1, &rng)]++;
  for (int i = 0; i < 4; i++)
    assert (hits[i] > 800 && hits[i] < 1200);

  /* d larger than the candidates: the best of all. */
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 4, 8, &rng) == 3);

  /* Striping: avoid the previous extent's servers while others remain. */
  c[3].is_preferred_out = true;
  c[2].is_preferred_out = true;
  for (int k = 0; k < 100; k++) {
    int s = placement_choose (c, 4, 2, &rng);
    assert (s == 0 || s == 1);
  }
  /* ...but use them when nobody else is eligible. */
  c[0].is_eligible = c[1].is_eligible = false;
  for (int k = 0; k < 100; k++) {
    int s = placement_choose (c, 4, 2, &rng);
    assert (s == 2 || s == 3);
  }
  printf ("test_placement: PASS\n");
  return 0;
}
