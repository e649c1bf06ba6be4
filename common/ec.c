/* Erasure coding over ISA-L.  See ec.h.  The field arithmetic, the
 * matrix inversion and the SIMD multiply are all ISA-L's; this file
 * chooses the matrix, picks the rows a decode needs and keeps the
 * tables, and does nothing else.
 *
 * The matrix: gf_gen_cauchy1_matrix, the identity over a Cauchy
 * matrix.  Every square submatrix of a Cauchy matrix is invertible, so
 * every K x K submatrix of [I; C] is: any K fragments decode, for
 * every K and M (an MDS code).  ISA-L's other generator,
 * gf_gen_rs_matrix (the identity over a Vandermonde-like matrix), is
 * documented (erasure_code.h) to have singular K x K submatrices for
 * some sizes; the sizes supported here happen to be among those it
 * lists as safe (M <= 4), but with Cauchy no such list has to be kept
 * in mind when the limits move.  Encoding costs the same either way:
 * K x M coefficients.
 *
 * Decoding: the first K present fragments (data first, which makes
 * more of the chosen rows identity rows) give K rows of the matrix;
 * their inverse (gf_invert_matrix) maps those fragments back to the
 * data, and the rows of the inverse for the missing data fragments are
 * the decode matrix, run through ec_encode_data like any encode.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/erasure_code.h>

#include "ec.h"

_Static_assert (RP_EC_MAX_FRAGS <= 32, "a pattern is a 32-bit mask");
_Static_assert (RP_EC_MAX_FRAG_BYTES <= INT_MAX, "ISA-L takes an int");

int
rp_ec_init (struct rp_ec *ec, unsigned k, unsigned m, char *err, size_t errlen)
{
  if (k < RP_EC_MIN_K || k > RP_EC_MAX_K) {
    snprintf (err, errlen, "erasure code %u+%u: K (data fragments) must "
              "be %d to %d", k, m, RP_EC_MIN_K, RP_EC_MAX_K);
    errno = EINVAL;
    return -1;
  }
  if (m < RP_EC_MIN_M || m > RP_EC_MAX_M) {
    snprintf (err, errlen, "erasure code %u+%u: M (parity fragments) "
              "must be %d to %d", k, m, RP_EC_MIN_M, RP_EC_MAX_M);
    errno = EINVAL;
    return -1;
  }

  memset (ec, 0, sizeof *ec);
  ec->k = k;
  ec->m = m;
  gf_gen_cauchy1_matrix (ec->matrix, (int) (k + m), (int) k);
  ec_init_tables ((int) k, (int) m, &ec->matrix[k * k], ec->tables);
  for (unsigned j = 0; j < m; j++)
    ec_init_tables ((int) k, 1, &ec->matrix[(k + j) * k], ec->row_tables[j]);
  return 0;
}

void
rp_ec_destroy (struct rp_ec *ec)
{
  /* Nothing to free; k = 0 makes a use after this fail loudly. */
  ec->k = ec->m = 0;
}

size_t
rp_ec_frag_bytes (const struct rp_ec *ec, size_t block_bytes)
{
  size_t frag = (block_bytes + ec->k - 1) / ec->k;

  return (frag + RP_EC_FRAG_ALIGN - 1) / RP_EC_FRAG_ALIGN * RP_EC_FRAG_ALIGN;
}

/* A length ISA-L can take (its int), and a code that was set up: the
 * caller's bug otherwise, not a condition to report.
 */
static void
ec_check_call (const struct rp_ec *ec, size_t len)
{
  if (len < 1 || len > RP_EC_MAX_FRAG_BYTES || ec->k < RP_EC_MIN_K) {
    fprintf (stderr, "rp_ec: fragment length %zu or code %u+%u out of "
             "range\n", len, ec->k, ec->m);
    abort ();
  }
}

/* ISA-L's prototypes take no const; it reads data and tables only. */
void
rp_ec_encode (const struct rp_ec *ec, size_t len, const uint8_t *const *data,
              uint8_t *const *parity)
{
  ec_check_call (ec, len);
  ec_encode_data ((int) len, (int) ec->k, (int) ec->m,
                  (unsigned char *) ec->tables, (unsigned char **) data,
                  (unsigned char **) parity);
}

void
rp_ec_encode_parity (const struct rp_ec *ec, size_t len,
                     const uint8_t *const *data, unsigned j, uint8_t *out)
{
  ec_check_call (ec, len);
  if (j >= ec->m) {
    fprintf (stderr, "rp_ec: parity fragment %u of %u\n", j, ec->m);
    abort ();
  }
  ec_encode_data ((int) len, (int) ec->k, 1,
                  (unsigned char *) ec->row_tables[j], (unsigned char **) data,
                  &out);
}

void
rp_ec_decoder_init (struct rp_ec_decoder *d, const struct rp_ec *ec)
{
  memset (d, 0, sizeof *d);
  d->ec = ec;
}

/* Make the decode tables for the fragments present in pattern (at
 * least K of them, some data fragment missing).  0, or -1 if the K
 * rows chosen are singular, which a Cauchy matrix rules out.
 */
static int
ec_decoder_prepare (struct rp_ec_decoder *d, uint32_t pattern)
{
  const struct rp_ec *ec = d->ec;
  const unsigned k = ec->k, n = ec->k + ec->m;
  uint8_t rows[RP_EC_MAX_K * RP_EC_MAX_K];
  uint8_t inverse[RP_EC_MAX_K * RP_EC_MAX_K];
  uint8_t decode[RP_EC_MAX_M * RP_EC_MAX_K];
  unsigned nsrc = 0, nlost = 0;

  d->pattern = 0;
  for (unsigned i = 0; i < n && nsrc < k; i++)
    if (pattern & (UINT32_C (1) << i)) {
      memcpy (&rows[nsrc * k], &ec->matrix[i * k], k);
      d->src[nsrc++] = (uint8_t) i;
    }
  for (unsigned i = 0; i < k; i++)
    if (!(pattern & (UINT32_C (1) << i)))
      d->lost[nlost++] = (uint8_t) i;

  /* gf_invert_matrix destroys rows[]. */
  if (gf_invert_matrix (rows, inverse, (int) k) != 0)
    return -1;
  for (unsigned l = 0; l < nlost; l++)
    memcpy (&decode[l * k], &inverse[d->lost[l] * k], k);
  ec_init_tables ((int) k, (int) nlost, decode, d->tables);
  d->nlost = nlost;
  d->pattern = pattern;
  return 0;
}

int
rp_ec_decode (struct rp_ec_decoder *d, size_t len,
              const uint8_t *const *frags, const bool *present,
              uint8_t *const *out, const char **why)
{
  const struct rp_ec *ec = d->ec;
  const uint32_t all_data = (UINT32_C (1) << ec->k) - 1;
  const uint8_t *src[RP_EC_MAX_K];
  uint8_t *dst[RP_EC_MAX_M];
  uint32_t pattern = 0;
  unsigned npresent = 0;

  ec_check_call (ec, len);
  for (unsigned i = 0; i < ec->k + ec->m; i++)
    if (present[i]) {
      pattern |= UINT32_C (1) << i;
      npresent++;
    }
  if (npresent < ec->k) {
    *why = "fewer than K fragments present: more erasures than parity";
    errno = EIO;
    return -1;
  }
  if ((pattern & all_data) == all_data)
    return 0;
  if (pattern != d->pattern && ec_decoder_prepare (d, pattern) == -1) {
    *why = "the fragments present give a singular matrix";
    errno = EIO;
    return -1;
  }

  for (unsigned s = 0; s < ec->k; s++)
    src[s] = frags[d->src[s]];
  for (unsigned l = 0; l < d->nlost; l++)
    dst[l] = out[d->lost[l]];
  ec_encode_data ((int) len, (int) ec->k, (int) d->nlost, d->tables,
                  (unsigned char **) src, dst);
  return 0;
}
