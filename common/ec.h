/* Erasure coding of one stripe: K data fragments and M parity
 * fragments of the same length, computed by Intel's ISA-L (libisal,
 * Debian's libisal-dev).  The code is systematic Reed-Solomon over
 * GF(2^8): the data fragments are the caller's bytes unchanged, the
 * parity fragments are computed from them, and any K of the K+M
 * fragments give the data back.
 *
 * What it does not do: I/O, or anything about extents, servers or
 * where fragments live; and it allocates nothing.  Every matrix and
 * table is an array in the structs below, sized for the largest code,
 * so the I/O path never allocates.  The engine uses it through
 * client/ecio.c (redundancy=ec:K+M).
 *
 * Threads: a struct rp_ec is read-only after rp_ec_init; any number of
 * threads may encode with it at once.  Decoding needs scratch (the
 * inverted matrix of the fragments at hand and its tables), so each
 * decoding thread owns a struct rp_ec_decoder; decoders share nothing
 * writable.
 *
 * Lengths and alignment: ISA-L takes any fragment length from 1 byte
 * (under 32 bytes it runs its portable C code, from 32 its SIMD code,
 * whose last vector overlaps the one before for a length that is not
 * a multiple of 32) and buffers at any address; tests/test_ec.c checks
 * lengths 1, 31, 33, 1000 and odd addresses against the portable code.
 * rp_ec_frag_bytes still rounds a fragment up to a multiple of 64
 * bytes, so that fragments laid end to end each start on a cache line.
 */
#ifndef RP_EC_H
#define RP_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The codes supported.  K = 1 would be replication (replicas=).  K+M
 * is at most 20, which the two maximums imply.
 */
#define RP_EC_MIN_K 2
#define RP_EC_MAX_K 16
#define RP_EC_MIN_M 1
#define RP_EC_MAX_M 4
#define RP_EC_MAX_FRAGS (RP_EC_MAX_K + RP_EC_MAX_M)

/* The longest fragment: ISA-L takes an int length. */
#define RP_EC_MAX_FRAG_BYTES (UINT32_C (1) << 30)

/* What rp_ec_frag_bytes rounds a fragment up to: a cache line. */
#define RP_EC_FRAG_ALIGN 64

/* ISA-L's expanded tables: 32 bytes per matrix coefficient. */
#define RP_EC_TABLE_BYTES 32

/* A code: K, M, the encoding matrix and its tables.  Read-only after
 * rp_ec_init; owned by the caller (no allocation inside).
 */
struct rp_ec {
  unsigned k;                  /* data fragments per stripe */
  unsigned m;                  /* parity fragments per stripe */
  /* The (K+M) x K encoding matrix, row-major: rows 0..K-1 the identity
   * (the data fragments are the data), rows K..K+M-1 the parity rows,
   * from ISA-L's gf_gen_cauchy1_matrix (ec.c says why Cauchy).
   */
  uint8_t matrix[RP_EC_MAX_FRAGS * RP_EC_MAX_K];
  /* ec_init_tables of the M parity rows together, for rp_ec_encode. */
  uint8_t tables[RP_EC_TABLE_BYTES * RP_EC_MAX_K * RP_EC_MAX_M];
  /* ec_init_tables of each parity row alone, for rp_ec_encode_parity
   * (not a slice of tables[]: how ec_init_tables lays out its rows is
   * ISA-L's business, and later versions with GFNI lay them out
   * differently).
   */
  uint8_t row_tables[RP_EC_MAX_M][RP_EC_TABLE_BYTES * RP_EC_MAX_K];
};

/* One thread's decoding state for one code.  Decoding for the same
 * set of present fragments as the previous call reuses the inverted
 * matrix (a degraded stripe stays degraded the same way for every
 * stripe read until it is rebuilt), so the steady cost of a degraded
 * read is ISA-L's multiply only.
 */
struct rp_ec_decoder {
  const struct rp_ec *ec;      /* the code; not owned, must outlive */
  uint32_t pattern;            /* bit i set: fragment i present, in the
                                  call the fields below were made for;
                                  0 = none yet */
  unsigned nlost;              /* data fragments recovered: <= M */
  uint8_t src[RP_EC_MAX_K];    /* the K fragments decoded from */
  uint8_t lost[RP_EC_MAX_M];   /* the missing data fragments */
  /* ec_init_tables of the rows of the inverse for lost[]. */
  uint8_t tables[RP_EC_TABLE_BYTES * RP_EC_MAX_K * RP_EC_MAX_M];
};

/* Set up the code K+M: 2 <= K <= 16, 1 <= M <= 4.  Returns 0, or -1
 * with errno = EINVAL and a message in err (errlen bytes) naming the
 * bad value.  There is nothing to free; rp_ec_destroy marks it unused.
 */
int rp_ec_init (struct rp_ec *ec, unsigned k, unsigned m, char *err,
                size_t errlen);
void rp_ec_destroy (struct rp_ec *ec);

/* The fragment length for a stripe of block_bytes of user data:
 * block_bytes / K rounded up to a multiple of RP_EC_FRAG_ALIGN (64), so
 * a K that does not divide the block costs padding: 4 KiB with K = 6
 * is 6 fragments of 704 bytes, 4224 bytes, 3% more.  The caller pads
 * the last data fragment with zeros.  block_bytes >= 1.
 */
size_t rp_ec_frag_bytes (const struct rp_ec *ec, size_t block_bytes);

/* Compute the M parity fragments of one stripe: data[0..K-1] are the
 * data fragments, parity[0..M-1] receive the parity, each len bytes,
 * 1 <= len <= RP_EC_MAX_FRAG_BYTES (aborts otherwise: a caller's bug).
 * No buffer may overlap another.
 */
void rp_ec_encode (const struct rp_ec *ec, size_t len,
                   const uint8_t *const *data, uint8_t *const *parity);

/* Compute parity fragment j (0 <= j < M) alone, as rp_ec_encode would:
 * to rebuild a lost parity fragment once the data fragments are whole
 * (after rp_ec_decode if some were lost too).
 */
void rp_ec_encode_parity (const struct rp_ec *ec, size_t len,
                          const uint8_t *const *data, unsigned j, uint8_t *out);

void rp_ec_decoder_init (struct rp_ec_decoder *d, const struct rp_ec *ec);

/* Recover the missing data fragments of one stripe from any K of its
 * fragments.  frags[0..K+M-1] are the fragments (data then parity),
 * present[i] says whether frags[i] holds fragment i; fragments not
 * present are not read (their pointer may be NULL).  For each data
 * fragment i < K not present, its len bytes are written to out[i];
 * out[i] of a present fragment is not touched (may be NULL), nor is
 * any parity: rp_ec_encode_parity rebuilds that.  Buffers written must
 * not overlap those read.  len as for rp_ec_encode.
 *
 * Returns 0 (also when no data fragment is missing: nothing to do), or
 * -1 with errno = EIO and *why set to a static string when fewer than K
 * fragments are present (or if the K chosen were singular, which the
 * Cauchy matrix rules out): then nothing is written.
 */
int rp_ec_decode (struct rp_ec_decoder *d, size_t len,
                  const uint8_t *const *frags, const bool *present,
                  uint8_t *const *out, const char **why);

#endif /* RP_EC_H */
