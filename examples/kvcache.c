/* kvcache: a key-value store whose values live in far memory, the
 * pool of a rampool cluster, with a small hot set in local memory: an
 * application that knows its data uses far memory directly instead of
 * leaving it to the kernel's swap.  An example of librampool(3).
 *
 * Keys are 0 .. keys-1; each has a record of value-size bytes at
 * key x value-size in the pool: a 4-byte length, then the value (at
 * most value-size - 4 bytes).  A length of 0 is an absent key, which is
 * also what a never-written record reads as (the pool reads zeros where
 * nothing was written), so the store needs no index.  Puts write
 * through to the pool and into the hot set; gets are served from the
 * hot set, else read from the pool and kept there (a direct-mapped
 * cache of `hot` records); deletes zero the record.
 *
 * The program checks itself: it fills every key, runs random gets,
 * puts and deletes (most on a small set of hot keys) against a shadow
 * of each key's version, then reads every key back and compares every
 * byte with what it must hold.  Exit status 0 when all match.
 *
 * Build against an installed librampool:
 *   cc -o kvcache kvcache.c $(pkg-config --cflags --libs rampool)
 * Run against memservers:
 *   ./kvcache --keys=20000 servers=10.0.0.21:7070,10.0.0.22:7070 replicas=2
 *
 * Not here: persistence (the pool is volatile: its contents go with
 * the process), concurrency (one thread; librampool itself is
 * thread-safe).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rampool/client.h>

struct kvcache_slot {
  uint64_t key;                /* UINT64_MAX: empty */
  uint32_t len;                /* the value's length; 0: absent key */
  uint8_t *value;              /* value-size bytes, owned */
};

struct kvcache {
  struct rp_pool *pool;
  uint32_t value_size;         /* bytes per record, with the length */
  uint64_t keys;
  struct kvcache_slot *hot;    /* the hot set, `nhot` slots */
  uint32_t nhot;
  uint64_t hits, misses;
};

/* The record of `key` as it goes to the pool: length, then value. */
static int
kvcache_write (struct kvcache *kv, uint64_t key, const void *value,
               uint32_t len, uint8_t *record)
{
  memcpy (record, &len, 4);
  memcpy (record + 4, value, len);
  memset (record + 4 + len, 0, kv->value_size - 4 - len);
  return rp_pool_pwrite (kv->pool, record, kv->value_size,
                         key * kv->value_size);
}

static struct kvcache_slot *
kvcache_slot_of (struct kvcache *kv, uint64_t key)
{
  return &kv->hot[key % kv->nhot];
}

/* Store value (len bytes, 1 .. value-size - 4) under key.  0 or -1. */
static int
kvcache_put (struct kvcache *kv, uint64_t key, const void *value,
             uint32_t len)
{
  struct kvcache_slot *s = kvcache_slot_of (kv, key);

  if (key >= kv->keys || len == 0 || len > kv->value_size - 4) {
    errno = EINVAL;
    return -1;
  }
  /* Write through: the slot's buffer is the record sent. */
  if (kvcache_write (kv, key, value, len, s->value) == -1) {
    s->key = UINT64_MAX;
    return -1;
  }
  s->key = key;
  s->len = len;
  return 0;
}

/* The value of key into buf (value-size bytes), its length in *len
 * (0: absent).  0 or -1.
 */
static int
kvcache_get (struct kvcache *kv, uint64_t key, uint8_t *buf, uint32_t *len)
{
  struct kvcache_slot *s = kvcache_slot_of (kv, key);

  if (key >= kv->keys) {
    errno = EINVAL;
    return -1;
  }
  if (s->key != key) {
    kv->misses++;
    if (rp_pool_pread (kv->pool, s->value, kv->value_size,
                       key * kv->value_size) == -1) {
      s->key = UINT64_MAX;
      return -1;
    }
    memcpy (&s->len, s->value, 4);
    if (s->len > kv->value_size - 4) {
      s->key = UINT64_MAX;
      errno = EIO;  /* not a record this program wrote */
      return -1;
    }
    s->key = key;
  }
  else
    kv->hits++;
  *len = s->len;
  memcpy (buf, s->value + 4, s->len);
  return 0;
}

/* Remove key: its record reads as zeros (absent) afterwards. */
static int
kvcache_del (struct kvcache *kv, uint64_t key)
{
  struct kvcache_slot *s = kvcache_slot_of (kv, key);

  if (s->key == key)
    s->key = UINT64_MAX;
  return rp_pool_zero (kv->pool, kv->value_size, key * kv->value_size, true);
}

/* --- the self-check --- */

#define KVCACHE_ABSENT (UINT32_C (1) << 31)

static uint64_t
kvcache_rand (uint64_t *state)
{
  uint64_t x = *state;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

/* The value a key holds at a version: its length and bytes follow from
 * (key, version) alone, so the check needs only the versions.
 */
static uint32_t
kvcache_expected (const struct kvcache *kv, uint64_t key, uint32_t version,
                  uint8_t *buf)
{
  uint64_t st = (key + 1) * UINT64_C (0x9e3779b97f4a7c15) ^ version;
  uint32_t len;

  st = st ? st : 1;
  len = 1 + kvcache_rand (&st) % (kv->value_size - 4);
  for (uint32_t i = 0; i < len; i++)
    buf[i] = kvcache_rand (&st) >> 56;
  return len;
}

static int
kvcache_usage (void)
{
  fprintf (stderr,
           "usage: kvcache [--keys=N] [--value-size=BYTES] [--hot=N]"
           " [--ops=N] KEY=VALUE...\n"
           "  KEY=VALUE: the pool's keys (servers=, replicas=, key-file=..."
           " as for nbdkit-rampool-plugin(1));\n"
           "  size= is taken from --keys and --value-size\n");
  return 2;
}

int
main (int argc, char **argv)
{
  uint64_t keys = 10000, ops = 50000, seed = 42;
  uint32_t value_size = 4096, nhot = 256;
  struct rp_config cfg;
  struct kvcache kv = { .hot = NULL };
  uint32_t *version = NULL;    /* the shadow: per key, the version of
                                  its value, | KVCACHE_ABSENT if deleted */
  uint8_t *buf = NULL, *want = NULL;
  char err[1024], size[32];
  uint64_t bad = 0;
  int status = 1;

  rp_config_init (&cfg);
  for (int i = 1; i < argc; i++) {
    char *eq = strchr (argv[i], '=');
    if (strncmp (argv[i], "--keys=", 7) == 0)
      keys = strtoull (argv[i] + 7, NULL, 10);
    else if (strncmp (argv[i], "--value-size=", 13) == 0)
      value_size = strtoul (argv[i] + 13, NULL, 10);
    else if (strncmp (argv[i], "--hot=", 6) == 0)
      nhot = strtoul (argv[i] + 6, NULL, 10);
    else if (strncmp (argv[i], "--ops=", 6) == 0)
      ops = strtoull (argv[i] + 6, NULL, 10);
    else if (argv[i][0] != '-' && eq) {
      *eq = '\0';
      if (rp_config_set (&cfg, argv[i], eq + 1, err, sizeof err) == -1) {
        fprintf (stderr, "kvcache: %s\n", err);
        goto out_config;
      }
    }
    else {
      status = kvcache_usage ();
      goto out_config;
    }
  }
  if (keys == 0 || value_size < 8 || nhot == 0) {
    status = kvcache_usage ();
    goto out_config;
  }
  /* The disk: one record per key, in whole extents. */
  uint64_t bytes = keys * value_size;
  uint64_t es = cfg.extent_size;
  snprintf (size, sizeof size, "%" PRIu64, (bytes + es - 1) / es * es);
  if (rp_config_set (&cfg, "size", size, err, sizeof err) == -1 ||
      rp_config_check (&cfg, err, sizeof err) == -1) {
    fprintf (stderr, "kvcache: %s\n", err);
    goto out_config;
  }
  kv.pool = rp_pool_open (&cfg, err, sizeof err);
  if (kv.pool == NULL) {
    fprintf (stderr, "kvcache: cannot open the pool: %s\n", err);
    goto out_config;
  }
  kv.value_size = value_size;
  kv.keys = keys;
  kv.nhot = nhot;
  kv.hot = calloc (nhot, sizeof *kv.hot);
  version = calloc (keys, sizeof *version);
  buf = malloc (value_size);
  want = malloc (value_size);
  if (kv.hot == NULL || version == NULL || buf == NULL || want == NULL)
    goto out_nomem;
  for (uint32_t i = 0; i < nhot; i++) {
    kv.hot[i].key = UINT64_MAX;
    if ((kv.hot[i].value = malloc (value_size)) == NULL)
      goto out_nomem;
  }

  /* Fill every key, then random work: 80 % gets, 15 % puts, 5 %
   * deletes, nine in ten on the first 1/64 of the keys (the hot ones).
   */
  for (uint64_t k = 0; k < keys; k++) {
    uint32_t len = kvcache_expected (&kv, k, 1, want);
    if (kvcache_put (&kv, k, want, len) == -1) {
      fprintf (stderr, "kvcache: put %" PRIu64 ": %s\n", k, strerror (errno));
      goto out_close;
    }
    version[k] = 1;
  }
  uint64_t hot_keys = keys / 64 ? keys / 64 : 1;
  for (uint64_t n = 0; n < ops; n++) {
    uint64_t r = kvcache_rand (&seed);
    uint64_t k = r % 10 ? (r >> 8) % hot_keys : (r >> 8) % keys;
    unsigned what = (r >> 40) % 100;
    uint32_t len;
    if (what < 80) {
      if (kvcache_get (&kv, k, buf, &len) == -1) {
        fprintf (stderr, "kvcache: get %" PRIu64 ": %s\n", k,
                 strerror (errno));
        goto out_close;
      }
    }
    else if (what < 95) {
      uint32_t v = (version[k] & ~KVCACHE_ABSENT) + 1;
      len = kvcache_expected (&kv, k, v, want);
      if (kvcache_put (&kv, k, want, len) == -1) {
        fprintf (stderr, "kvcache: put %" PRIu64 ": %s\n", k,
                 strerror (errno));
        goto out_close;
      }
      version[k] = v;
    }
    else {
      if (kvcache_del (&kv, k) == -1) {
        fprintf (stderr, "kvcache: del %" PRIu64 ": %s\n", k,
                 strerror (errno));
        goto out_close;
      }
      version[k] |= KVCACHE_ABSENT;
    }
  }

  /* Every key, through the store: what it must hold, byte for byte. */
  for (uint64_t k = 0; k < keys; k++) {
    uint32_t len, wlen = 0;
    bool is_absent = (version[k] & KVCACHE_ABSENT) != 0;
    if (kvcache_get (&kv, k, buf, &len) == -1) {
      fprintf (stderr, "kvcache: get %" PRIu64 ": %s\n", k, strerror (errno));
      goto out_close;
    }
    if (!is_absent)
      wlen = kvcache_expected (&kv, k, version[k], want);
    if (len != wlen || memcmp (buf, want, len) != 0) {
      if (bad++ < 5)
        fprintf (stderr, "kvcache: key %" PRIu64 ": %u bytes, expected %u"
                 "%s\n", k, len, wlen, len == wlen ? " (content differs)" : "");
    }
  }
  printf ("kvcache: %" PRIu64 " keys of up to %" PRIu32 " bytes in the pool,"
          " %" PRIu32 " kept locally; %" PRIu64 " ops: %" PRIu64 " hits, %"
          PRIu64 " misses; %" PRIu64 " keys checked: %s\n", keys,
          value_size - 4, nhot, ops, kv.hits, kv.misses, keys,
          bad ? "MISMATCH" : "OK");
  status = bad ? 1 : 0;
  goto out_close;

 out_nomem:
  fprintf (stderr, "kvcache: out of memory\n");
 out_close:
  if (kv.hot)
    for (uint32_t i = 0; i < nhot; i++)
      free (kv.hot[i].value);
  free (kv.hot);
  free (version);
  free (buf);
  free (want);
  rp_pool_close (kv.pool);
 out_config:
  rp_config_free (&cfg);
  return status;
}
