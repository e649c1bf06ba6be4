/* What the erasure codec (common/ec.c, ISA-L) costs on this CPU: the
 * numbers behind bench/README.md's "Erasure-coding codec cost", for
 * choosing the coding unit.  Built by make check, not run by it (it
 * takes about 10 s and proves nothing by passing):
 *
 *     tests/ec_bench [SECONDS-PER-FIGURE]      (default 0.3)
 *
 * For 4+2 and 8+2, and a stripe unit of one 4 KiB block (fragment
 * 4096/K, as Hydra codes each page), 64 KiB and 256 KiB fragments:
 *
 *   encode      rp_ec_encode of one stripe;
 *   decode      rp_ec_decode of the same stripe with data fragments 0
 *               and 1 lost (from fragments 2..K-1 and both parities),
 *               the decoder's tables reused as for a run of stripes
 *               lost the same way;
 *   decode, new erasures
 *               the same, alternating between losing {0,1} and {0,2}
 *               so that every call inverts the matrix and rebuilds the
 *               tables, as when each stripe lies on other donors.
 *
 * GB/s counts the stripe's user data (K fragments, 10^9 bytes) per
 * second; ns/4KiB is the time per 4096 bytes of user data.  One stripe,
 * reused, so the data is in cache: this is the codec's cost, not the
 * memory's.  Each figure is the best of 20 short runs: other work on a
 * shared machine can only slow a run down.  A K that does not divide
 * 4096 would use rp_ec_frag_bytes (rounded up to 64 bytes); 4 and 8
 * divide it, so the fragments here are exact.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ec.h"

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

enum op { OP_ENCODE, OP_DECODE, OP_DECODE_NEW };

struct stripe {
  const struct rp_ec *ec;
  struct rp_ec_decoder d;
  size_t len;
  uint8_t *frag[RP_EC_MAX_FRAGS];
  uint8_t *out[RP_EC_MAX_K];
  bool all_but_01[RP_EC_MAX_FRAGS];
  bool all_but_02[RP_EC_MAX_FRAGS];
};

static void
run_op (struct stripe *s, enum op op, unsigned long i)
{
  const char *why;
  const bool *present;

  if (op == OP_ENCODE) {
    rp_ec_encode (s->ec, s->len, (const uint8_t *const *) s->frag,
                  &s->frag[s->ec->k]);
    return;
  }
  present = op == OP_DECODE_NEW && (i & 1) ? s->all_but_02 : s->all_but_01;
  if (rp_ec_decode (&s->d, s->len, (const uint8_t *const *) s->frag, present,
                    s->out, &why) == -1) {
    fprintf (stderr, "ec_bench: decode: %s\n", why);
    exit (EXIT_FAILURE);
  }
}

/* Seconds per call: the best of 20 runs, seconds in all. */
static double
measure (struct stripe *s, enum op op, double seconds)
{
  double best = 1e9;

  for (int run = 0; run < 20; run++) {
    unsigned long n = 0, batch = 1;
    double start = now_s (), elapsed;

    do {
      for (unsigned long i = 0; i < batch; i++)
        run_op (s, op, n + i);
      n += batch;
      batch *= 2;
      elapsed = now_s () - start;
    } while (elapsed < seconds / 20);
    if (elapsed / n < best)
      best = elapsed / n;
  }
  return best;
}

static void
bench (unsigned k, unsigned m, size_t len, const char *unit, double seconds)
{
  static const enum op ops[] = { OP_ENCODE, OP_DECODE, OP_DECODE_NEW };
  struct rp_ec ec;
  struct stripe s = { .ec = &ec, .len = len };
  char err[128];
  double user_bytes = (double) k * len;

  if (rp_ec_init (&ec, k, m, err, sizeof err) == -1) {
    fprintf (stderr, "ec_bench: %s\n", err);
    exit (EXIT_FAILURE);
  }
  rp_ec_decoder_init (&s.d, &ec);
  for (unsigned i = 0; i < k + m; i++) {
    if (posix_memalign ((void **) &s.frag[i], 64, len) != 0) {
      perror ("ec_bench: posix_memalign");
      exit (EXIT_FAILURE);
    }
    for (size_t b = 0; b < len; b++)
      s.frag[i][b] = (uint8_t) (b * 31 + i * 7 + 1);
    s.all_but_01[i] = s.all_but_02[i] = true;
  }
  for (unsigned i = 0; i < k; i++)
    if (posix_memalign ((void **) &s.out[i], 64, len) != 0) {
      perror ("ec_bench: posix_memalign");
      exit (EXIT_FAILURE);
    }
  s.all_but_01[0] = s.all_but_01[1] = false;
  s.all_but_02[0] = s.all_but_02[2] = false;

  printf ("| %u+%u | %s | %zu |", k, m, unit, len);
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
    double t = measure (&s, ops[o], seconds);

    printf (" %.1f | %.0f |", user_bytes / t / 1e9,
            t / (user_bytes / 4096) * 1e9);
    fflush (stdout);
  }
  printf ("\n");

  for (unsigned i = 0; i < k + m; i++)
    free (s.frag[i]);
  for (unsigned i = 0; i < k; i++)
    free (s.out[i]);
  rp_ec_destroy (&ec);
}

int
main (int argc, char **argv)
{
  static const unsigned ks[] = { 4, 8 };
  double seconds = argc > 1 ? atof (argv[1]) : 0.3;

  if (seconds <= 0) {
    fprintf (stderr, "usage: ec_bench [SECONDS-PER-FIGURE]\n");
    return EXIT_FAILURE;
  }
  printf ("| code | unit | fragment bytes | encode GB/s | encode ns/4KiB "
          "| decode GB/s | decode ns/4KiB | decode, new erasures GB/s "
          "| decode, new erasures ns/4KiB |\n");
  printf ("|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
    bench (ks[i], 2, 4096 / ks[i], "4 KiB block", seconds);
    bench (ks[i], 2, 65536, "64 KiB fragment", seconds);
    bench (ks[i], 2, 262144, "256 KiB fragment", seconds);
  }
  return 0;
}
