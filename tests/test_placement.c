/* Unit test of placement (client/placement.c).
 *
 * With capacities known: the d servers are drawn in proportion to
 * capacity, without replacement, and the largest free fraction wins
 * (over more free bytes), exactly, also for figures whose products do
 * not fit in 64 bits; ties go to the first drawn, so equal fractions
 * are picked in proportion to capacity.
 *
 * With a capacity unknown (0) among those drawn from: the old rule, d
 * drawn uniformly, the most free bytes wins: with d=2 the server with
 * the least free memory is never chosen when all are eligible; d=1
 * spreads uniformly.
 *
 * Either way: only eligible servers are chosen; the previous extent's
 * servers are avoided while others remain (striping); no candidates =
 * -1.  At the largest table (RP_MAX_SERVERS candidates) every index is
 * reachable, the draws are still without replacement, and candidates
 * beyond it are not considered.
 */
#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "placement.h"
#include "rampool/client.h"

#define GIB (UINT64_C (1) << 30)
#define DRAWS 100000

/* The probability that server k is in a sample of two drawn without
 * replacement in proportion to w[0..n): first, or second after some
 * j != k.
 */
static double
in_sample_of_two (const double *w, unsigned n, unsigned k)
{
  double total = 0, p;

  for (unsigned i = 0; i < n; i++)
    total += w[i];
  p = w[k] / total;
  for (unsigned j = 0; j < n; j++)
    if (j != k)
      p += w[j] / total * w[k] / (total - w[j]);
  return p;
}

/* With capacities known. */
static void
test_weighted (uint64_t *rng)
{
  struct placement_candidate c[8];
  unsigned hits[8];

  /* Equal fractions (half free), 8 and 32 GiB: d=1 draws in proportion
   * to capacity, the larger 4 times as often (uniform would be 1:1).
   */
  memset (c, 0, sizeof c);
  c[0] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 8 * GIB,
                                        .free_bytes = 4 * GIB };
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 32 * GIB,
                                        .free_bytes = 16 * GIB };
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < DRAWS; k++)
    hits[placement_choose (c, 2, 1, rng)]++;
  assert (hits[0] + hits[1] == DRAWS);
  assert (hits[1] > 3 * hits[0] && hits[1] < 5 * hits[0]);
  assert (hits[1] > 78000 && hits[1] < 82000);  /* 80000, sd 126 */
  /* d=2 of 2: both are always drawn, the tie goes to the first drawn,
   * which is again the larger 4 times in 5.
   */
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < DRAWS; k++)
    hits[placement_choose (c, 2, 2, rng)]++;
  assert (hits[1] > 3 * hits[0] && hits[1] < 5 * hits[0]);

  /* Equal fractions, 8, 8, 16 and 32 GiB, d=2: each is picked in
   * proportion to its capacity (1/8, 1/8, 1/4, 1/2).
   */
  for (int i = 0; i < 4; i++) {
    uint64_t cap = (i < 2 ? 8 : i == 2 ? 16 : 32) * GIB;
    c[i] = (struct placement_candidate) { .is_eligible = true,
                                          .capacity_bytes = cap,
                                          .free_bytes = cap / 4 };
  }
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < DRAWS; k++)
    hits[placement_choose (c, 4, 2, rng)]++;
  assert (hits[0] > 11500 && hits[0] < 13500);
  assert (hits[1] > 11500 && hits[1] < 13500);
  assert (hits[2] > 24000 && hits[2] < 26000);
  assert (hits[3] > 49000 && hits[3] < 51000);

  /* A higher fraction wins over more free bytes: with d = n, the 8 GiB
   * server half free beats the 128 GiB one a quarter free (32 GiB),
   * whichever comes first in the array.
   */
  memset (c, 0, sizeof c);
  c[0] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 8 * GIB,
                                        .free_bytes = 4 * GIB };
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 128 * GIB,
                                        .free_bytes = 32 * GIB };
  for (int k = 0; k < 1000; k++)
    assert (placement_choose (c, 2, 2, rng) == 0);
  c[2] = c[0];
  c[0] = c[1];
  c[1] = c[2];
  for (int k = 0; k < 1000; k++)
    assert (placement_choose (c, 2, 2, rng) == 1);
  /* d larger than the candidates: the best fraction of all. */
  c[2] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 32 * GIB,
                                        .free_bytes = 30 * GIB };
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 3, 8, rng) == 2);

  /* Fractions 3/4, 5/8, 1/2, 5/16 of 8, 16, 32, 128 GiB, d=2: the one
   * with the most free bytes (40 GiB) has the least fraction and never
   * wins a sample of two; the best fraction wins whenever it is drawn,
   * as often as weighted sampling without replacement says (0.156;
   * uniform would give 0.5).
   */
  {
    static const double w[4] = { 8, 16, 32, 128 };
    static const unsigned free_gib[4] = { 6, 10, 16, 40 };
    for (int i = 0; i < 4; i++)
      c[i] = (struct placement_candidate) {
        .is_eligible = true, .capacity_bytes = (uint64_t) w[i] * GIB,
        .free_bytes = free_gib[i] * GIB };
    memset (hits, 0, sizeof hits);
    for (int k = 0; k < DRAWS; k++)
      hits[placement_choose (c, 4, 2, rng)]++;
    assert (hits[3] == 0);
    double p0 = in_sample_of_two (w, 4, 0);
    assert (hits[0] > (p0 - 0.01) * DRAWS && hits[0] < (p0 + 0.01) * DRAWS);
    assert (hits[0] > 14600 && hits[0] < 16600);
  }

  /* Exact comparison where the products need 128 bits: 2^63 free of
   * 2^64 - 1 is just over a half, and beats 2^39 of 2^40 (a half);
   * one byte less and it is just under.
   */
  memset (c, 0, sizeof c);
  c[0] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = UINT64_MAX,
                                        .free_bytes = UINT64_C (1) << 63 };
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = UINT64_C (1) << 40,
                                        .free_bytes = UINT64_C (1) << 39 };
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 2, 2, rng) == 0);
  c[0].free_bytes--;
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 2, 2, rng) == 1);
  /* 3/4 of 2^62 beats a half of 2^64 - 1 (free 2^63 - 1). */
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = UINT64_C (1) << 62,
                                        .free_bytes = UINT64_C (3) << 60 };
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 2, 2, rng) == 1);

#ifdef __SIZEOF_INT128__
  /* Against 128-bit arithmetic where the compiler has it: random
   * figures of up to 64 bits, and near-ties one byte apart.
   */
  for (int k = 0; k < DRAWS; k++) {
    uint64_t f0 = placement_rand (rng), c0 = placement_rand (rng) | 1;
    uint64_t f1 = placement_rand (rng), c1 = placement_rand (rng) | 1;
    if (k % 2) {
      c1 = c0;
      f1 = f0 + (k % 4 == 1 ? 1 : -1);
    }
    unsigned __int128 p0 = (unsigned __int128) f0 * c1;
    unsigned __int128 p1 = (unsigned __int128) f1 * c0;
    if (p0 == p1)
      continue;
    c[0] = (struct placement_candidate) { .is_eligible = true,
                                          .capacity_bytes = c0,
                                          .free_bytes = f0 };
    c[1] = (struct placement_candidate) { .is_eligible = true,
                                          .capacity_bytes = c1,
                                          .free_bytes = f1 };
    assert (placement_choose (c, 2, 2, rng) == (p1 > p0 ? 1 : 0));
  }
#endif

  /* A capacity under 1 MiB still gets drawn (weight 1 MiB), and wins
   * by fraction: all free against a quarter.
   */
  c[0] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 512 << 10,
                                        .free_bytes = 512 << 10 };
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 8 * GIB,
                                        .free_bytes = 2 * GIB };
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, 2, 2, rng) == 0);

  /* Only eligible servers, the previous extent's avoided while others
   * remain, and used when nobody else is eligible.
   */
  for (int i = 0; i < 8; i++)
    c[i] = (struct placement_candidate) { .is_eligible = i % 3 == 0,
                                          .capacity_bytes = (i + 1) * GIB,
                                          .free_bytes = GIB / 2 };
  for (int k = 0; k < 1000; k++) {
    int s = placement_choose (c, 8, 2, rng);
    assert (s >= 0 && s % 3 == 0);
  }
  for (int i = 0; i < 4; i++)
    c[i] = (struct placement_candidate) { .is_eligible = true,
                                          .is_preferred_out = i >= 2,
                                          .capacity_bytes = 8 * GIB,
                                          .free_bytes = (i + 1) * GIB };
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < 1000; k++)
    hits[placement_choose (c, 4, 2, rng)]++;
  assert (hits[1] == 1000);  /* of 0 and 1, the better fraction */
  c[0].is_eligible = c[1].is_eligible = false;
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < 1000; k++)
    hits[placement_choose (c, 4, 2, rng)]++;
  assert (hits[3] == 1000);
  for (int i = 0; i < 4; i++)
    c[i].is_eligible = false;
  assert (placement_choose (c, 4, 2, rng) == -1);
}

/* A capacity unknown among those drawn from: the old rule for the
 * whole choice.
 */
static void
test_unknown_capacity (uint64_t *rng)
{
  struct placement_candidate c[3];
  unsigned hits[3];

  /* By bytes: the 32 GiB free wins over the 8 GiB server half free,
   * which would win by fraction were both capacities known.
   */
  memset (c, 0, sizeof c);
  c[0] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 8 * GIB,
                                        .free_bytes = 4 * GIB };
  c[1] = (struct placement_candidate) { .is_eligible = true,
                                        .capacity_bytes = 0,
                                        .free_bytes = 32 * GIB };
  for (int k = 0; k < 1000; k++)
    assert (placement_choose (c, 2, 2, rng) == 1);
  /* Drawn uniformly: d=1 picks each half the time (weighting the
   * unknown one as 1 MiB would pick it about once in 8000).
   */
  memset (hits, 0, sizeof hits);
  for (int k = 0; k < DRAWS; k++)
    hits[placement_choose (c, 2, 1, rng)]++;
  assert (hits[0] > 48000 && hits[0] < 52000);
  /* An unknown capacity on a server not drawn from (not eligible, or
   * the previous extent's while others remain) changes nothing.
   */
  c[1].capacity_bytes = 128 * GIB;
  c[2] = (struct placement_candidate) { .is_eligible = false,
                                        .free_bytes = 64 * GIB };
  for (int k = 0; k < 1000; k++)
    assert (placement_choose (c, 3, 3, rng) == 0);
  c[2].is_eligible = c[2].is_preferred_out = true;
  for (int k = 0; k < 1000; k++)
    assert (placement_choose (c, 3, 3, rng) == 0);
}

/* A table of RP_MAX_SERVERS candidates (and one more). */
static void
test_large (uint64_t *rng)
{
  static struct placement_candidate c[RP_MAX_SERVERS + 1];
  static unsigned hits[RP_MAX_SERVERS + 1];
  const unsigned n = RP_MAX_SERVERS;

  for (unsigned i = 0; i <= n; i++)
    c[i] = (struct placement_candidate) { .is_eligible = true,
                                          .capacity_bytes = 8 * GIB,
                                          .free_bytes = 4 * GIB };
  /* d = n: every one drawn once, the best fraction of all wins, at
   * either end of the table.
   */
  c[n - 1].free_bytes = 5 * GIB;
  assert (placement_choose (c, n, n, rng) == (int) n - 1);
  c[n - 1].free_bytes = 4 * GIB;
  c[0].free_bytes = 5 * GIB;
  assert (placement_choose (c, n, n, rng) == 0);
  c[0].free_bytes = 4 * GIB;
  /* Only the last eligible (the last bit of the drawn set): chosen.
   * The candidate past the largest table is not considered.
   */
  for (unsigned i = 0; i < n - 1; i++)
    c[i].is_eligible = false;
  for (int k = 0; k < 100; k++)
    assert (placement_choose (c, n + 1, 2, rng) == (int) n - 1);
  c[n - 1].is_eligible = false;
  assert (placement_choose (c, n + 1, 2, rng) == -1);
  /* d=1, all alike: spread evenly over the whole table.  8192 draws
   * into 64 runs of 64 servers: 128 each, sd 11.
   */
  for (unsigned i = 0; i < n; i++)
    c[i].is_eligible = true;
  for (int k = 0; k < 8192; k++)
    hits[placement_choose (c, n, 1, rng) / 64]++;
  for (unsigned i = 0; i < n / 64; i++)
    assert (hits[i] > 64 && hits[i] < 192);
}

int
main (void)
{
  struct placement_candidate c[8];
  unsigned hits[8];
  uint64_t rng = 88172645463325252ULL;

  memset (c, 0, sizeof c);
  assert (placement_choose (c, 8, 2, &rng) == -1);

  test_weighted (&rng);
  test_unknown_capacity (&rng);
  test_large (&rng);

  /* The rest leaves capacity_bytes 0 (unknown): the old rule. */

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
