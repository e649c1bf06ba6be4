/* test_parallel_io: randomized parallel I/O against an NBD export.
 *
 * This program connects to an NBD server (normally nbdkit running the
 * rampool plugin) and checks that the export behaves like a disk when
 * many requests are in flight at once.  It keeps a shadow copy of the
 * whole export in memory, starting as all zeros because a fresh
 * rampool export (like any fresh nbdkit memory disk) reads as zeros.
 * It first checks that a few random regions really do read as zeros,
 * then keeps --inflight requests (default 32) in flight with libnbd's
 * asynchronous API: a random mix of reads, writes, write-zeroes, trims
 * and flushes (zero, trim and flush only if the server advertises
 * them).  Read and write lengths run from 1 byte to 1 MiB (zeroes up
 * to 8 MiB), biased toward small ones; lengths and offsets are often
 * not multiples of 512 and many requests straddle a 1 MiB boundary,
 * since rampool is byte-granular and splits I/O on extent boundaries.
 * If the server advertises a minimum block size, requests honour it.
 *
 * No request is ever issued while an overlapping one is in flight, so
 * the order in which the server executes requests cannot change what a
 * read returns and every read can be checked byte for byte against the
 * shadow when it completes.  The content of a trimmed range is
 * undefined in NBD (rampool happens to return zeros, but this test
 * does not rely on it): trimmed bytes are marked unknown in a
 * one-bit-per-byte bitmap and are not checked until they are written
 * or zeroed again.  Write-zeroes must read back as zeros.
 *
 * After --ops operations (default 20000) the program drains the
 * queue, flushes (if supported), optionally reconnects (--reopen: the
 * data must survive a new NBD connection) and reads the whole export
 * sequentially in 1 MiB chunks, comparing it with the shadow.
 *
 * Everything random comes from --seed (default: derived from the time,
 * and printed).  The parameters and write data of operation number i
 * depend only on the seed and i, so a failure can usually be replayed
 * with the same --seed, --ops and --inflight; only the rare retries
 * made to avoid overlapping an in-flight request depend on timing.
 *
 * Any libnbd error or failed request prints the error and exits 1;
 * any mismatch prints the request, the first differing byte and the
 * expected and actual data, and exits 1.  Exit 0 means no errors and
 * no mismatches.  The hidden option --self-test-corrupt deliberately
 * flips one byte of the shadow half way through and then reads it
 * back, to prove that the comparison does catch a difference (that
 * run must fail).
 *
 * Usage: test_parallel_io [--seed N] [--ops N] [--inflight N] [--reopen]
 *                         [--until-file F] URI
 * e.g.   nbdkit -U - memory 256M --run './test_parallel_io "$uri"'
 */

#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#define MiB ((uint64_t) 1024 * 1024)
#define GiB ((uint64_t) 1024 * 1024 * 1024)

/* Largest disk we are willing to shadow (shadow + bitmap = 1.125x). */
#define MAX_DISK_SIZE (4 * GiB)
/* Largest pread/pwrite; also the chunk size of the final verify pass. */
#define MAX_IO_LEN MiB
/* Largest trim / write-zeroes (they carry no payload). */
#define MAX_NOPAYLOAD_LEN (8 * MiB)
/* How often we retry picking a range that overlaps an in-flight one. */
#define MAX_PICK_TRIES 64
/* How many mismatches are printed in detail. */
#define MAX_REPORTS 10
/* Recently issued writes, candidates for read-back. */
#define RECENT_WRITES 256

enum op_type { OP_READ, OP_WRITE, OP_ZERO, OP_TRIM, OP_FLUSH };

static const char *const op_names[] = {
  "read", "write", "zero", "trim", "flush"
};

struct test;

/* One slot per possible in-flight request. */
struct req {
  struct test *t;
  bool busy;
  enum op_type type;
  uint32_t flags;
  uint64_t offset;
  uint64_t len;
  uint64_t opno;                /* operation number, for replay */
  unsigned char *buf;           /* MAX_IO_LEN bytes */
};

struct range {
  uint64_t offset;
  uint64_t len;
};

struct test {
  const char *uri;
  struct nbd_handle *nbd;
  uint64_t seed;
  uint64_t nr_ops;
  unsigned max_inflight;
  bool reopen;
  const char *until_file;       /* stop issuing once this file exists */
  bool until_reached;
  bool self_test_corrupt;

  uint64_t size;                /* export size */
  uint64_t usable;              /* size rounded down to align */
  uint64_t align;               /* server's minimum block size, or 1 */
  uint64_t max_io;              /* largest pread/pwrite we issue */
  bool can_zero, can_trim, can_flush, can_fua;

  unsigned char *shadow;        /* expected content of the export */
  uint64_t *unknown;            /* bit set = byte content undefined */

  struct req *reqs;
  unsigned inflight;
  uint64_t issued;
  bool stop;                    /* set on the first error or mismatch */

  struct range recent[RECENT_WRITES];
  unsigned nr_recent;
  uint64_t nr_writes_issued;

  /* --self-test-corrupt: force a read of this byte next. */
  bool force_pending;
  uint64_t force_offset;

  /* Statistics. */
  uint64_t ops_done[5];
  uint64_t bytes_read, bytes_written, bytes_zeroed, bytes_trimmed;
  uint64_t bytes_checked, bytes_skipped;
  uint64_t overlap_retries;
  uint64_t mismatches;
  uint64_t errors;
};

static const char *progname = "test_parallel_io";

/* PRNG.  splitmix64 derives per-operation seeds and fills write
 * buffers; xoshiro256** makes the decisions.  Both are tiny and
 * public-domain algorithms, written out here from their definitions.
 */
static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct rng {
  uint64_t s[4];
};

static void
rng_init (struct rng *r, uint64_t seed, uint64_t stream)
{
  uint64_t sm = seed ^ (stream * 0xd1342543de82ef95ULL);
  size_t i;

  for (i = 0; i < 4; i++)
    r->s[i] = splitmix64 (&sm);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next (struct rng *r)
{
  uint64_t *s = r->s;
  uint64_t result = rotl (s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;

  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

/* Uniform in [0, n); n > 0.  The modulo bias is irrelevant here. */
static uint64_t
rng_below (struct rng *r, uint64_t n)
{
  return rng_next (r) % n;
}

/* True with probability pct/100. */
static bool
rng_pct (struct rng *r, unsigned pct)
{
  return rng_below (r, 100) < pct;
}

/* Write data for operation opno: depends only on the seed and opno. */
static void
fill_random (unsigned char *buf, uint64_t len, uint64_t seed, uint64_t opno)
{
  uint64_t sm = seed ^ 0x5eed5eed5eed5eedULL ^ (opno * 0x9e3779b97f4a7c15ULL);
  uint64_t i, v;

  for (i = 0; i + 8 <= len; i += 8) {
    v = splitmix64 (&sm);
    memcpy (&buf[i], &v, 8);
  }
  if (i < len) {
    v = splitmix64 (&sm);
    memcpy (&buf[i], &v, len - i);
  }
}

static void __attribute__ ((noreturn))
die_nbd (const char *what)
{
  fprintf (stderr, "%s: %s: %s\n", progname, what, nbd_get_error ());
  exit (EXIT_FAILURE);
}

static void __attribute__ ((noreturn))
usage (int status)
{
  fprintf (
    status ? stderr : stdout,
    "usage: %s [--seed N] [--ops N] [--inflight N] [--reopen] URI\n"
    "  --seed N      PRNG seed (default: from the time; printed)\n"
    "  --ops N       number of random operations (default 20000)\n"
    "  --inflight N  requests kept in flight (default 32)\n"
    "  --reopen      reconnect before the final full read\n"
    "  --until-file F  stop issuing ops once file F exists (--ops is the cap)\n"
    "URI is an NBD URI, e.g. nbd+unix:///?socket=PATH\n",
    progname);
  exit (status);
}

static uint64_t
parse_u64 (const char *opt, const char *s)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull (s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
    fprintf (stderr, "%s: %s: invalid number '%s'\n", progname, opt, s);
    exit (EXIT_FAILURE);
  }
  return v;
}

/* Unknown-byte bitmap. */
static inline bool
is_unknown (const struct test *t, uint64_t off)
{
  return (t->unknown[off / 64] >> (off % 64)) & 1;
}

static void
set_unknown (struct test *t, uint64_t off, uint64_t len, bool unknown)
{
  uint64_t end = off + len;

  /* Head, bit by bit up to a word boundary. */
  while (off < end && off % 64 != 0) {
    if (unknown)
      t->unknown[off / 64] |= 1ULL << (off % 64);
    else
      t->unknown[off / 64] &= ~(1ULL << (off % 64));
    off++;
  }
  /* Whole words. */
  if (end - off >= 64) {
    uint64_t words = (end - off) / 64;

    memset (&t->unknown[off / 64], unknown ? 0xff : 0, words * 8);
    off += words * 64;
  }
  /* Tail. */
  while (off < end) {
    if (unknown)
      t->unknown[off / 64] |= 1ULL << (off % 64);
    else
      t->unknown[off / 64] &= ~(1ULL << (off % 64));
    off++;
  }
}

/* Compare buf (len bytes read at disk offset off) with the shadow,
 * skipping unknown bytes.  Returns the number of differing bytes and
 * sets *first to the index (in buf) of the first one.
 */
static uint64_t
compare_shadow (struct test *t, uint64_t off, const unsigned char *buf,
                uint64_t len, uint64_t *first)
{
  uint64_t i = 0, diffs = 0;

  while (i < len) {
    uint64_t p = off + i;
    uint64_t run = 64 - p % 64;
    uint64_t j;

    if (run > len - i)
      run = len - i;

    if (t->unknown[p / 64] == 0) {
      /* Extend over following all-known words. */
      while (i + run < len && t->unknown[(p + run) / 64] == 0) {
        run += 64;
        if (run > len - i)
          run = len - i;
      }
      if (memcmp (&t->shadow[p], &buf[i], run) == 0) {
        t->bytes_checked += run;
        i += run;
        continue;
      }
    }

    /* Some bytes unknown or different: byte by byte. */
    for (j = 0; j < run; j++) {
      if (is_unknown (t, p + j)) {
        t->bytes_skipped++;
        continue;
      }
      t->bytes_checked++;
      if (t->shadow[p + j] != buf[i + j]) {
        if (diffs == 0)
          *first = i + j;
        diffs++;
      }
    }
    i += run;
  }
  return diffs;
}

static void
dump_bytes (const char *label, const unsigned char *p, uint64_t n,
            const struct test *t, uint64_t disk_off, bool mark_unknown)
{
  uint64_t i;

  fprintf (stderr, "  %-9s", label);
  for (i = 0; i < n; i++) {
    if (mark_unknown && is_unknown (t, disk_off + i))
      fprintf (stderr, " ??");
    else
      fprintf (stderr, " %02x", p[i]);
  }
  fprintf (stderr, "\n");
}

/* Check a completed read; report and count a mismatch. */
static void
check_read (struct test *t, const char *what, uint64_t opno,
            uint64_t off, uint64_t len, const unsigned char *buf)
{
  uint64_t first = 0, diffs, n, at;

  diffs = compare_shadow (t, off, buf, len, &first);
  if (diffs == 0)
    return;

  t->mismatches++;
  t->stop = true;
  if (t->mismatches > MAX_REPORTS) {
    if (t->mismatches == MAX_REPORTS + 1)
      fprintf (stderr, "%s: further mismatches are counted, not shown\n",
               progname);
    return;
  }

  at = off + first;
  fprintf (stderr,
           "%s: MISMATCH in %s (op %" PRIu64 ", seed %" PRIu64 "): "
           "offset %" PRIu64 " length %" PRIu64 "\n"
           "  first differing byte at disk offset %" PRIu64
           " (+%" PRIu64 " into the request): "
           "expected 0x%02x, got 0x%02x; %" PRIu64 " byte(s) differ\n",
           progname, what, opno, t->seed, off, len, at, first,
           t->shadow[at], buf[first], diffs);
  n = len - first < 16 ? len - first : 16;
  fprintf (stderr, "  bytes from disk offset %" PRIu64 ":\n", at);
  dump_bytes ("expected:", &t->shadow[at], n, t, at, true);
  dump_bytes ("actual:", &buf[first], n, t, at, false);
}

static bool
overlaps_inflight (const struct test *t, uint64_t off, uint64_t len)
{
  unsigned i;

  for (i = 0; i < t->max_inflight; i++) {
    const struct req *q = &t->reqs[i];

    if (!q->busy || q->type == OP_FLUSH)
      continue;
    if (off < q->offset + q->len && q->offset < off + len)
      return true;
  }
  return false;
}

/* Make a range legal: aligned to the server's minimum block size, no
 * longer than maxlen, and inside the export.
 */
static void
normalize (const struct test *t, uint64_t *off, uint64_t *len,
           uint64_t maxlen)
{
  uint64_t a = t->align;

  if (*len < 1)
    *len = 1;
  if (*len > maxlen)
    *len = maxlen;
  *len = (*len + a - 1) / a * a;
  if (*len > maxlen)
    *len -= a;
  *off = *off / a * a;
  if (*off + *len > t->usable)
    *off = t->usable - *len;
}

/* A random length, biased toward small: log-uniform between 512 and
 * maxlen, sometimes a multiple of 512, sometimes tiny.
 */
static uint64_t
random_len (struct rng *r, uint64_t maxlen)
{
  uint64_t len;
  unsigned e;

  if (rng_pct (r, 5))
    len = 1 + rng_below (r, 511);
  else {
    e = 9 + rng_below (r, 12);          /* 2^9 .. 2^20 */
    len = (1ULL << e) + rng_below (r, 1ULL << e);
    if (rng_pct (r, 50))
      len = len / 512 * 512;
  }
  if (len > maxlen)
    len = maxlen;
  return len;
}

/* A random offset for a request of len bytes. */
static uint64_t
random_offset (const struct test *t, struct rng *r, uint64_t len)
{
  uint64_t off;
  unsigned k = rng_below (r, 100);

  if (k < 30 && t->usable > MiB && len >= 2) {
    /* Straddle a 1 MiB boundary b: off < b < off + len. */
    uint64_t b = MiB * (1 + rng_below (r, (t->usable - 1) / MiB));

    off = b - 1 - rng_below (r, len - 1 < b ? len - 1 : b);
  }
  else if (k < 55)
    off = rng_below (r, t->usable / 512 + 1) * 512;
  else
    off = rng_below (r, t->usable);
  return off;
}

/* Pick the type and range of operation t->issued, avoiding in-flight
 * ranges.  Returns false if no free range was found this time.
 */
static bool
pick_op (struct test *t, enum op_type *type, uint32_t *flags,
         uint64_t *off, uint64_t *len)
{
  struct rng r;
  unsigned k, tries;
  uint64_t maxlen;

  rng_init (&r, t->seed, t->issued + 1);
  *flags = 0;

  if (t->force_pending) {
    /* Self-test: read a small range around the corrupted byte. */
    *type = OP_READ;
    *off = t->force_offset - rng_below (&r, t->force_offset < 100
                                               ? t->force_offset + 1 : 100);
    *len = t->force_offset - *off + 1 + rng_below (&r, 100);
    normalize (t, off, len, t->max_io);
    if (*off > t->force_offset || *off + *len <= t->force_offset) {
      *off = t->force_offset / t->align * t->align;
      *len = t->align;
    }
    if (overlaps_inflight (t, *off, *len))
      return false;
    t->force_pending = false;
    return true;
  }

  /* 45% read, 42% write, 8% zero, 4% trim, 1% flush. */
  k = rng_below (&r, 100);
  if (k < 45)
    *type = OP_READ;
  else if (k < 87)
    *type = OP_WRITE;
  else if (k < 95)
    *type = t->can_zero ? OP_ZERO : OP_WRITE;
  else if (k < 99)
    *type = t->can_trim ? OP_TRIM : OP_READ;
  else
    *type = t->can_flush ? OP_FLUSH : OP_WRITE;

  if (*type == OP_FLUSH) {
    *off = *len = 0;
    return true;
  }
  if (*type == OP_WRITE && t->can_fua && rng_pct (&r, 10))
    *flags |= LIBNBD_CMD_FLAG_FUA;
  if (*type == OP_ZERO && rng_pct (&r, 50))
    *flags |= LIBNBD_CMD_FLAG_NO_HOLE;

  /* Trims get ordinary lengths (every trimmed byte is unchecked until
   * rewritten); write-zeroes may be longer than a pwrite.
   */
  maxlen = t->max_io;
  if (*type == OP_ZERO)
    maxlen = MAX_NOPAYLOAD_LEN < t->usable ? MAX_NOPAYLOAD_LEN : t->usable;

  for (tries = 0; tries < MAX_PICK_TRIES; tries++) {
    if (*type == OP_READ && t->nr_recent > 0 && rng_pct (&r, 25)) {
      /* Read back (part of) a recently issued write. */
      const struct range *w = &t->recent[rng_below (&r, t->nr_recent)];
      uint64_t skip = rng_pct (&r, 50) ? 0 : rng_below (&r, w->len);

      *off = w->offset + skip;
      *len = w->len - skip;
      if (rng_pct (&r, 50))
        *len = 1 + rng_below (&r, *len);
    }
    else {
      *len = random_len (&r, maxlen);
      if (maxlen > MAX_IO_LEN && rng_pct (&r, 20))
        *len = 1 + rng_below (&r, maxlen);
      *off = random_offset (t, &r, *len);
    }
    normalize (t, off, len, maxlen);
    if (!overlaps_inflight (t, *off, *len))
      return true;
    t->overlap_retries++;
  }
  return false;
}

static int
complete (void *user_data, int *error)
{
  struct req *q = user_data;
  struct test *t = q->t;

  if (*error != 0) {
    fprintf (stderr,
             "%s: %s (op %" PRIu64 ") offset %" PRIu64 " length %" PRIu64
             " failed: %s\n",
             progname, op_names[q->type], q->opno, q->offset, q->len,
             strerror (*error));
    t->errors++;
    t->stop = true;
  }
  else {
    switch (q->type) {
    case OP_READ:
      t->bytes_read += q->len;
      check_read (t, "read", q->opno, q->offset, q->len, q->buf);
      break;
    case OP_WRITE:
      t->bytes_written += q->len;
      memcpy (&t->shadow[q->offset], q->buf, q->len);
      set_unknown (t, q->offset, q->len, false);
      break;
    case OP_ZERO:
      t->bytes_zeroed += q->len;
      memset (&t->shadow[q->offset], 0, q->len);
      set_unknown (t, q->offset, q->len, false);
      break;
    case OP_TRIM:
      t->bytes_trimmed += q->len;
      set_unknown (t, q->offset, q->len, true);
      break;
    case OP_FLUSH:
      break;
    }
    t->ops_done[q->type]++;
  }

  q->busy = false;
  t->inflight--;
  return 1;                     /* retire the command */
}

/* --self-test-corrupt: flip one known shadow byte that no in-flight
 * request touches, and make the next operation read it.
 */
static void
corrupt_shadow (struct test *t)
{
  struct rng r;
  unsigned tries;

  rng_init (&r, t->seed, UINT64_MAX);
  for (tries = 0; tries < 100000; tries++) {
    uint64_t p = rng_below (&r, t->usable);

    if (is_unknown (t, p) || overlaps_inflight (t, p / t->align * t->align,
                                                t->align))
      continue;
    t->shadow[p] ^= 0x5a;
    t->force_pending = true;
    t->force_offset = p;
    fprintf (stderr, "%s: self-test: corrupted shadow byte at offset %"
             PRIu64 ", this run must fail\n", progname, p);
    return;
  }
}

/* Issue one operation.  Returns false if none could be issued now. */
static bool
issue_one (struct test *t)
{
  struct req *q = NULL;
  enum op_type type;
  uint32_t flags;
  uint64_t off, len;
  nbd_completion_callback cb;
  int64_t cookie = -1;
  unsigned i;

  if (t->self_test_corrupt && t->issued == t->nr_ops / 2
      && !t->force_pending) {
    t->self_test_corrupt = false;
    corrupt_shadow (t);
  }

  if (!pick_op (t, &type, &flags, &off, &len))
    return false;

  for (i = 0; i < t->max_inflight; i++) {
    if (!t->reqs[i].busy) {
      q = &t->reqs[i];
      break;
    }
  }
  if (q == NULL) {
    fprintf (stderr, "%s: internal error: no free request slot\n", progname);
    exit (EXIT_FAILURE);
  }

  q->busy = true;
  q->type = type;
  q->flags = flags;
  q->offset = off;
  q->len = len;
  q->opno = t->issued;
  cb.callback = complete;
  cb.user_data = q;
  cb.free = NULL;
  /* Count it before issuing, in case libnbd completes it at once. */
  t->inflight++;
  t->issued++;

  switch (type) {
  case OP_READ:
    memset (q->buf, 0xa5, len);  /* catch short reads */
    cookie = nbd_aio_pread (t->nbd, q->buf, len, off, cb, flags);
    break;
  case OP_WRITE:
    if (len >= 512 && (q->opno % 32) == 0)
      memset (q->buf, 0, len);   /* zeros written as data */
    else
      fill_random (q->buf, len, t->seed, q->opno);
    cookie = nbd_aio_pwrite (t->nbd, q->buf, len, off, cb, flags);
    t->recent[t->nr_writes_issued++ % RECENT_WRITES]
      = (struct range) { .offset = off, .len = len };
    if (t->nr_recent < RECENT_WRITES)
      t->nr_recent++;
    break;
  case OP_ZERO:
    cookie = nbd_aio_zero (t->nbd, len, off, cb, flags);
    break;
  case OP_TRIM:
    cookie = nbd_aio_trim (t->nbd, len, off, cb, flags);
    break;
  case OP_FLUSH:
    cookie = nbd_aio_flush (t->nbd, cb, flags);
    break;
  }
  if (cookie == -1) {
    fprintf (stderr, "%s: op %" PRIu64 ": %s offset %" PRIu64
             " length %" PRIu64 "\n",
             progname, q->opno, op_names[type], off, len);
    die_nbd ("nbd_aio_* (issuing request)");
  }
  return true;
}

static struct nbd_handle *
open_export (const char *uri)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd == NULL)
    die_nbd ("nbd_create");
  if (nbd_connect_uri (nbd, uri) == -1)
    die_nbd ("nbd_connect_uri");
  return nbd;
}

static bool
flag_or_die (int r, const char *what)
{
  if (r == -1)
    die_nbd (what);
  return r == 1;
}

/* Before any write: a few random regions (and both ends) must read as
 * zeros, since the shadow starts as all zeros.
 */
static void
check_initially_zero (struct test *t, unsigned char *buf)
{
  struct rng r;
  unsigned i;

  rng_init (&r, t->seed, 0);
  for (i = 0; i < 10; i++) {
    uint64_t len = random_len (&r, t->max_io);
    uint64_t off;

    if (i == 0)
      off = 0;
    else if (i == 1)
      off = t->usable;          /* normalize moves it to the end */
    else
      off = random_offset (t, &r, len);
    normalize (t, &off, &len, t->max_io);
    if (nbd_pread (t->nbd, buf, len, off, 0) == -1)
      die_nbd ("nbd_pread (initial zero check)");
    t->bytes_read += len;
    check_read (t, "initial zero check", 0, off, len, buf);
  }
}

/* Read the whole export in 1 MiB chunks and compare with the shadow. */
static void
verify_all (struct test *t, unsigned char *buf)
{
  uint64_t off, len;

  for (off = 0; off < t->usable; off += len) {
    len = t->usable - off < MAX_IO_LEN ? t->usable - off : MAX_IO_LEN;
    if (len > t->max_io)
      len = t->max_io;
    if (nbd_pread (t->nbd, buf, len, off, 0) == -1)
      die_nbd ("nbd_pread (final verify)");
    t->bytes_read += len;
    check_read (t, "final verify", t->issued, off, len, buf);
  }
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main (int argc, char *argv[])
{
  enum { OPT_SELF_TEST_CORRUPT = 256 };
  static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "inflight", required_argument, NULL, 'i' },
    { "ops", required_argument, NULL, 'o' },
    { "reopen", no_argument, NULL, 'r' },
    { "until-file", required_argument, NULL, 'u' },
    { "seed", required_argument, NULL, 's' },
    { "self-test-corrupt", no_argument, NULL, OPT_SELF_TEST_CORRUPT },
    { NULL, 0, NULL, 0 }
  };
  struct test t;
  unsigned char *buf;
  int64_t size, minblock, maxblock;
  double start, elapsed;
  int c;
  unsigned i;
  bool pass;

  memset (&t, 0, sizeof t);
  t.nr_ops = 20000;
  t.max_inflight = 32;
  t.seed = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);

  while ((c = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage (EXIT_SUCCESS);
    case 'i':
      t.max_inflight = parse_u64 ("--inflight", optarg);
      if (t.max_inflight < 1 || t.max_inflight > 1024) {
        fprintf (stderr, "%s: --inflight must be 1..1024\n", progname);
        exit (EXIT_FAILURE);
      }
      break;
    case 'o':
      t.nr_ops = parse_u64 ("--ops", optarg);
      break;
    case 'r':
      t.reopen = true;
      break;
    case 'u':
      t.until_file = optarg;
      break;
    case 's':
      t.seed = parse_u64 ("--seed", optarg);
      break;
    case OPT_SELF_TEST_CORRUPT:
      t.self_test_corrupt = true;
      break;
    default:
      usage (EXIT_FAILURE);
    }
  }
  if (optind != argc - 1)
    usage (EXIT_FAILURE);
  t.uri = argv[optind];

  printf ("%s: seed %" PRIu64 ", %" PRIu64 " ops, %u in flight%s\n",
          progname, t.seed, t.nr_ops, t.max_inflight,
          t.reopen ? ", reopen" : "");
  fflush (stdout);

  t.nbd = open_export (t.uri);
  size = nbd_get_size (t.nbd);
  if (size == -1)
    die_nbd ("nbd_get_size");
  if (flag_or_die (nbd_is_read_only (t.nbd), "nbd_is_read_only")) {
    fprintf (stderr, "%s: export is read-only\n", progname);
    exit (EXIT_FAILURE);
  }
  t.can_zero = flag_or_die (nbd_can_zero (t.nbd), "nbd_can_zero");
  t.can_trim = flag_or_die (nbd_can_trim (t.nbd), "nbd_can_trim");
  t.can_flush = flag_or_die (nbd_can_flush (t.nbd), "nbd_can_flush");
  t.can_fua = flag_or_die (nbd_can_fua (t.nbd), "nbd_can_fua");
  minblock = nbd_get_block_size (t.nbd, LIBNBD_SIZE_MINIMUM);
  maxblock = nbd_get_block_size (t.nbd, LIBNBD_SIZE_MAXIMUM);
  if (minblock == -1 || maxblock == -1)
    die_nbd ("nbd_get_block_size");

  t.size = size;
  t.align = minblock > 0 ? (uint64_t) minblock : 1;
  t.usable = t.size / t.align * t.align;
  if (t.usable == 0 || t.size > MAX_DISK_SIZE || t.size > SIZE_MAX / 2) {
    fprintf (stderr, "%s: export size %" PRIu64 " not supported "
             "(must be %" PRIu64 "..%" PRIu64 " bytes)\n",
             progname, t.size, t.align, MAX_DISK_SIZE);
    exit (EXIT_FAILURE);
  }
  t.max_io = MAX_IO_LEN;
  if (maxblock > 0 && (uint64_t) maxblock < t.max_io)
    t.max_io = maxblock;
  if (t.max_io > t.usable)
    t.max_io = t.usable;
  t.max_io = t.max_io / t.align * t.align;
  if (t.max_io == 0) {
    fprintf (stderr, "%s: cannot satisfy server block size limits\n",
             progname);
    exit (EXIT_FAILURE);
  }

  printf ("%s: export size %" PRIu64 ", min block %" PRIu64
          ", max I/O %" PRIu64 ", zero %s, trim %s, flush %s, fua %s\n",
          progname, t.size, t.align, t.max_io,
          t.can_zero ? "yes" : "no", t.can_trim ? "yes" : "no",
          t.can_flush ? "yes" : "no", t.can_fua ? "yes" : "no");
  fflush (stdout);

  /* calloc: untouched pages stay shared zero pages until written. */
  t.shadow = calloc (1, t.size);
  t.unknown = calloc ((t.size + 63) / 64, sizeof (uint64_t));
  t.reqs = calloc (t.max_inflight, sizeof (struct req));
  buf = malloc (MAX_IO_LEN);
  if (t.shadow == NULL || t.unknown == NULL || t.reqs == NULL || buf == NULL) {
    perror ("calloc");
    exit (EXIT_FAILURE);
  }
  for (i = 0; i < t.max_inflight; i++) {
    t.reqs[i].t = &t;
    t.reqs[i].buf = malloc (MAX_IO_LEN);
    if (t.reqs[i].buf == NULL) {
      perror ("malloc");
      exit (EXIT_FAILURE);
    }
  }

  start = now ();
  check_initially_zero (&t, buf);

  /* Main loop: keep the queue full until all ops are issued. */
  while ((!t.stop && !t.until_reached && t.issued < t.nr_ops) ||
         t.inflight > 0) {
    /* --until-file: a test running faults alongside says when to stop. */
    if (t.until_file && access (t.until_file, F_OK) == 0)
      t.until_reached = true;
    while (!t.stop && !t.until_reached && t.issued < t.nr_ops &&
           t.inflight < t.max_inflight) {
      if (!issue_one (&t))
        break;
    }
    if (t.inflight > 0 && nbd_poll (t.nbd, -1) == -1)
      die_nbd ("nbd_poll");
  }

  if (!t.stop) {
    if (t.can_flush && nbd_flush (t.nbd, 0) == -1)
      die_nbd ("nbd_flush");
    if (t.reopen) {
      if (nbd_shutdown (t.nbd, 0) == -1)
        die_nbd ("nbd_shutdown");
      nbd_close (t.nbd);
      t.nbd = open_export (t.uri);
      size = nbd_get_size (t.nbd);
      if (size == -1)
        die_nbd ("nbd_get_size (after reopen)");
      if ((uint64_t) size != t.size) {
        fprintf (stderr, "%s: size changed across reconnect: %" PRIu64
                 " -> %" PRIi64 "\n", progname, t.size, size);
        t.errors++;
      }
    }
    if (t.errors == 0)
      verify_all (&t, buf);
  }
  elapsed = now () - start;

  if (nbd_shutdown (t.nbd, 0) == -1)
    die_nbd ("nbd_shutdown");
  nbd_close (t.nbd);

  pass = t.errors == 0 && t.mismatches == 0 &&
    (t.issued == t.nr_ops || t.until_reached);
  printf ("%s: %s: seed %" PRIu64 ", %" PRIu64 " ops (%" PRIu64 " read, %"
          PRIu64 " write, %" PRIu64 " zero, %" PRIu64 " trim, %" PRIu64
          " flush), read %" PRIu64 " MiB, written %" PRIu64 " MiB, zeroed %"
          PRIu64 " MiB, trimmed %" PRIu64 " MiB, checked %" PRIu64
          " MiB (%" PRIu64 " unknown bytes skipped), %" PRIu64
          " overlap retries, %" PRIu64 " mismatches, %" PRIu64
          " errors, %.1f s\n",
          progname, pass ? "PASS" : "FAIL", t.seed, t.issued,
          t.ops_done[OP_READ], t.ops_done[OP_WRITE], t.ops_done[OP_ZERO],
          t.ops_done[OP_TRIM], t.ops_done[OP_FLUSH],
          t.bytes_read / MiB, t.bytes_written / MiB, t.bytes_zeroed / MiB,
          t.bytes_trimmed / MiB, t.bytes_checked / MiB, t.bytes_skipped,
          t.overlap_retries, t.mismatches, t.errors, elapsed);

  for (i = 0; i < t.max_inflight; i++)
    free (t.reqs[i].buf);
  free (t.reqs);
  free (buf);
  free (t.unknown);
  free (t.shadow);
  exit (pass ? EXIT_SUCCESS : EXIT_FAILURE);
}
