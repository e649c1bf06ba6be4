/* Unit test of the erasure codec (common/ec.c).
 *
 * For the codes 2+1, 4+2, 6+3, 8+2 and 16+4, at fragment lengths of a
 * 4 KiB block's share (4096/K, rounded up: 683 bytes for K = 6), 64
 * KiB, 1000 bytes and the lengths either side of ISA-L's SIMD cut-over
 * (1, 31, 33), some at odd addresses, on random data from a fixed
 * seed:
 *
 *   parity    rp_ec_encode and rp_ec_encode_parity give the same bytes
 *             as ISA-L's portable C code (ec_encode_data_base, with
 *             tables built coefficient by coefficient by
 *             gf_vect_mul_init) from the same matrix, whose top K rows
 *             are the identity;
 *   decode    for every set of at most M erased fragments, rp_ec_decode
 *             gives back the erased data fragments byte for byte,
 *             touches no other output, reads no erased fragment (its
 *             pointer is NULL), and does the same for a second stripe
 *             with the same erasures (the decoder's cached tables);
 *             the erased parity fragments are rebuilt by
 *             rp_ec_encode_parity;
 *   refusal   every set of M+1 erased fragments, and all of them, is
 *             refused with EIO and a reason, and nothing is written.
 *
 * Then every code supported (K 2-16, M 1-4) decodes every erasure set
 * of at most M fragments at 100 bytes (the Cauchy matrix is MDS), and
 * rp_ec_init refuses the codes outside that range.
 */
#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/erasure_code.h>

#include "ec.h"

#define POISON 0xa5

static unsigned long parity_checks, patterns_decoded, patterns_refused;

static uint64_t
rng_next (uint64_t *s)
{
  uint64_t z = (*s += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* n buffers of len bytes at offset (0 or odd) from 64-byte alignment,
 * in one allocation freed through frag[0] - offset.
 */
static void
buffers_alloc (uint8_t **frag, unsigned n, size_t len, size_t offset)
{
  size_t stride = (len + 64 + 63) / 64 * 64;
  void *base;

  assert (posix_memalign (&base, 64, stride * n) == 0);
  for (unsigned i = 0; i < n; i++)
    frag[i] = (uint8_t *) base + offset + i * stride;
}

static void
buffers_free (uint8_t **frag, size_t offset)
{
  free (frag[0] - offset);
}

static void
fill_random (uint64_t *rng, uint8_t *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t) rng_next (rng);
}

static bool
is_poison (const uint8_t *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != POISON)
      return false;
  return true;
}

static unsigned
popcount (uint32_t x)
{
  return (unsigned) __builtin_popcount (x);
}

/* A random stripe: data fragments filled, parity by rp_ec_encode,
 * checked against ISA-L's portable code.
 */
static void
stripe_make (const struct rp_ec *ec, uint64_t *rng, size_t len, uint8_t **frag)
{
  const unsigned k = ec->k, m = ec->m;
  uint8_t tables[RP_EC_TABLE_BYTES * RP_EC_MAX_K * RP_EC_MAX_M];
  uint8_t *ref[RP_EC_MAX_M], *one;

  for (unsigned i = 0; i < k; i++)
    fill_random (rng, frag[i], len);
  rp_ec_encode (ec, len, (const uint8_t *const *) frag, &frag[k]);

  /* Systematic: the data rows are the identity. */
  for (unsigned r = 0; r < k; r++)
    for (unsigned c = 0; c < k; c++)
      assert (ec->matrix[r * k + c] == (r == c));

  for (unsigned j = 0; j < m; j++)
    for (unsigned i = 0; i < k; i++)
      gf_vect_mul_init (ec->matrix[(k + j) * k + i],
                        &tables[(j * k + i) * RP_EC_TABLE_BYTES]);
  buffers_alloc (ref, m, len, 0);
  ec_encode_data_base ((int) len, (int) k, (int) m, tables, frag, ref);
  assert ((one = malloc (len)) != NULL);
  for (unsigned j = 0; j < m; j++) {
    assert (memcmp (ref[j], frag[k + j], len) == 0);
    memset (one, POISON, len);
    rp_ec_encode_parity (ec, len, (const uint8_t *const *) frag, j, one);
    assert (memcmp (one, frag[k + j], len) == 0);
    parity_checks++;
  }
  free (one);
  buffers_free (ref, 0);
}

/* The n fragments of stripe as a decoder sees them with those in
 * erased (a bit each) missing: frags[i] NULL and present[i] false.
 */
static void
erase (unsigned n, uint8_t **stripe, uint32_t erased, const uint8_t **frags,
       bool *present)
{
  for (unsigned i = 0; i < n; i++) {
    present[i] = !(erased & (UINT32_C (1) << i));
    frags[i] = present[i] ? stripe[i] : NULL;
  }
}

/* Decode stripe orig with the fragments of erased missing; check it. */
static void
decode_one (struct rp_ec_decoder *d, size_t len, uint8_t **orig,
            uint32_t erased, uint8_t **out, uint8_t *rebuilt)
{
  const struct rp_ec *ec = d->ec;
  const unsigned k = ec->k, n = ec->k + ec->m;
  const uint8_t *frags[RP_EC_MAX_FRAGS], *whole[RP_EC_MAX_K];
  bool present[RP_EC_MAX_FRAGS];
  const char *why = NULL;

  erase (n, orig, erased, frags, present);
  for (unsigned i = 0; i < k; i++)
    memset (out[i], POISON, len);
  assert (rp_ec_decode (d, len, frags, present, out, &why) == 0);
  assert (why == NULL);
  for (unsigned i = 0; i < k; i++) {
    if (present[i]) {
      assert (is_poison (out[i], len));
      whole[i] = orig[i];
    }
    else {
      assert (memcmp (out[i], orig[i], len) == 0);
      whole[i] = out[i];
    }
  }
  for (unsigned j = 0; j < ec->m; j++)
    if (!present[k + j]) {
      memset (rebuilt, POISON, len);
      rp_ec_encode_parity (ec, len, whole, j, rebuilt);
      assert (memcmp (rebuilt, orig[k + j], len) == 0);
    }
}

/* Every erasure set of up to M fragments decodes; every set of M+1,
 * and the set of all, is refused.
 */
static void
test_code (unsigned k, unsigned m, size_t len, size_t offset, uint64_t *rng)
{
  const unsigned n = k + m;
  struct rp_ec ec;
  struct rp_ec_decoder d;
  uint8_t *a[RP_EC_MAX_FRAGS], *b[RP_EC_MAX_FRAGS], *out[RP_EC_MAX_K];
  uint8_t *rebuilt;
  char err[128];

  assert (rp_ec_init (&ec, k, m, err, sizeof err) == 0);
  rp_ec_decoder_init (&d, &ec);
  buffers_alloc (a, n, len, offset);
  buffers_alloc (b, n, len, offset);
  buffers_alloc (out, k, len, offset);
  assert ((rebuilt = malloc (len)) != NULL);
  stripe_make (&ec, rng, len, a);
  stripe_make (&ec, rng, len, b);

  for (uint32_t erased = 0; erased < (UINT32_C (1) << n); erased++) {
    unsigned lost = popcount (erased);

    if (lost <= m) {
      decode_one (&d, len, a, erased, out, rebuilt);
      decode_one (&d, len, b, erased, out, rebuilt);
      patterns_decoded++;
    }
    else if (lost == m + 1 || lost == n) {
      const uint8_t *frags[RP_EC_MAX_FRAGS];
      bool present[RP_EC_MAX_FRAGS];
      const char *why = NULL;

      erase (n, a, erased, frags, present);
      for (unsigned i = 0; i < k; i++)
        memset (out[i], POISON, len);
      errno = 0;
      assert (rp_ec_decode (&d, len, frags, present, out, &why) == -1);
      assert (errno == EIO && why != NULL && *why);
      for (unsigned i = 0; i < k; i++)
        assert (is_poison (out[i], len));
      patterns_refused++;
    }
  }

  free (rebuilt);
  buffers_free (out, offset);
  buffers_free (b, offset);
  buffers_free (a, offset);
  rp_ec_destroy (&ec);
}

/* Every code supported decodes every erasure set it should. */
static void
test_all_codes (uint64_t *rng)
{
  const size_t len = 100;

  for (unsigned k = RP_EC_MIN_K; k <= RP_EC_MAX_K; k++)
    for (unsigned m = RP_EC_MIN_M; m <= RP_EC_MAX_M; m++) {
      struct rp_ec ec;
      struct rp_ec_decoder d;
      uint8_t *a[RP_EC_MAX_FRAGS], *out[RP_EC_MAX_K], rebuilt[100];
      char err[128];

      assert (rp_ec_init (&ec, k, m, err, sizeof err) == 0);
      rp_ec_decoder_init (&d, &ec);
      buffers_alloc (a, k + m, len, 0);
      buffers_alloc (out, k, len, 0);
      stripe_make (&ec, rng, len, a);
      for (uint32_t erased = 1; erased < (UINT32_C (1) << (k + m)); erased++)
        if (popcount (erased) <= m) {
          decode_one (&d, len, a, erased, out, rebuilt);
          patterns_decoded++;
        }
      buffers_free (out, 0);
      buffers_free (a, 0);
      rp_ec_destroy (&ec);
    }
}

static void
test_init_limits (void)
{
  static const unsigned bad[][2] = {
    { 0, 0 }, { 1, 1 }, { 1, 2 }, { 17, 1 }, { 2, 0 }, { 2, 5 },
    { 16, 5 }, { 17, 4 }, { 100, 2 },
  };
  struct rp_ec ec;
  char err[128];

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    errno = 0;
    assert (rp_ec_init (&ec, bad[i][0], bad[i][1], err, sizeof err) == -1);
    assert (errno == EINVAL);
    assert (strstr (err, bad[i][0] < RP_EC_MIN_K || bad[i][0] > RP_EC_MAX_K
                    ? "K (data" : "M (parity") != NULL);
  }
  assert (rp_ec_init (&ec, 16, 4, err, sizeof err) == 0);
  assert (rp_ec_frag_bytes (&ec, 4096) == 256);
  assert (rp_ec_init (&ec, 6, 2, err, sizeof err) == 0);
  assert (rp_ec_frag_bytes (&ec, 4096) == 704);
  assert (rp_ec_frag_bytes (&ec, 1) == 64);
}

int
main (void)
{
  static const struct {
    unsigned k, m;
  } codes[] = { { 2, 1 }, { 4, 2 }, { 6, 3 }, { 8, 2 }, { 16, 4 } };
  uint64_t rng = 20240613;

  test_init_limits ();
  for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++) {
    const unsigned k = codes[c].k, m = codes[c].m;
    const size_t block_share = (4096 + k - 1) / k;

    /* 16+4 has 21,700 sets to check: its share of a block only. */
    test_code (k, m, block_share, 0, &rng);
    if (k == 16)
      continue;
    test_code (k, m, 65536, 0, &rng);
    test_code (k, m, 1000, 1, &rng);
    test_code (k, m, 1, 0, &rng);
    test_code (k, m, 31, 3, &rng);
    test_code (k, m, 33, 0, &rng);
  }
  test_all_codes (&rng);

  printf ("test_ec: %lu parity fragments checked against ISA-L's portable "
          "code, %lu erasure sets decoded, %lu refused\n",
          parity_checks, patterns_decoded, patterns_refused);
  return 0;
}
