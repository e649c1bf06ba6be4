/* See crypt.h. */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sodium.h>

#include "crypt.h"
#include "logging.h"

static void *
crypt_map (size_t bytes)
{
  void *p = mmap (NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int
crypt_init (struct crypt *c, uint64_t size_bytes)
{
  memset (c, 0, sizeof *c);
  if (sodium_init () < 0) {
    errno = ENOSYS;
    return -1;
  }
  c->nblocks = (size_bytes + CRYPT_BLOCK - 1) / CRYPT_BLOCK;
  c->key = sodium_malloc (crypto_aead_chacha20poly1305_ietf_KEYBYTES);
  c->counter = crypt_map (c->nblocks * sizeof *c->counter);
  c->lag = crypt_map (c->nblocks * sizeof *c->lag);
  c->doubt = crypt_map (CRYPT_DOUBT_SLOTS * sizeof *c->doubt);
  pthread_mutex_init (&c->doubt_lock, NULL);
  c->tag = crypt_map (c->nblocks * sizeof *c->tag);
  c->zero = crypt_map ((c->nblocks + 63) / 64 * sizeof *c->zero);
  if (c->key == NULL || c->counter == NULL || c->lag == NULL ||
      c->doubt == NULL || c->tag == NULL ||
      c->zero == NULL) {
    crypt_destroy (c);
    errno = ENOMEM;
    return -1;
  }
  crypto_aead_chacha20poly1305_ietf_keygen (c->key);
  return 0;
}

void
crypt_destroy (struct crypt *c)
{
  if (c->key)
    sodium_free (c->key);
  if (c->counter)
    munmap (c->counter, c->nblocks * sizeof *c->counter);
  if (c->lag)
    munmap (c->lag, c->nblocks * sizeof *c->lag);
  if (c->doubt) {
    munmap (c->doubt, CRYPT_DOUBT_SLOTS * sizeof *c->doubt);
    pthread_mutex_destroy (&c->doubt_lock);
  }
  if (c->tag)
    munmap (c->tag, c->nblocks * sizeof *c->tag);
  if (c->zero)
    munmap (c->zero, (c->nblocks + 63) / 64 * sizeof *c->zero);
  memset (c, 0, sizeof *c);
}

/* Nonce = block number (8 bytes LE) | counter (4 bytes LE). */
static void
crypt_nonce (uint64_t block, uint32_t counter, uint8_t nonce[12])
{
  uint64_t b = htole64 (block);
  uint32_t k = htole32 (counter);

  memcpy (nonce, &b, 8);
  memcpy (nonce + 8, &k, 4);
}

/* The counter the block's current contents were encrypted with. */
static uint32_t
crypt_data_counter (const struct crypt *c, uint64_t b)
{
  return c->counter[b] - c->lag[b];
}

static int
crypt_is_zero (const struct crypt *c, uint64_t b)
{
  return crypt_data_counter (c, b) == 0 ||
         ((c->zero[b / 64] >> (b % 64)) & 1);
}

/* The slot of block b in the doubt table, or NULL; doubt_lock held.
 * With `vacant`, a free slot of b's set instead when b has none (NULL
 * if the set is full).
 */
static struct crypt_doubt *
crypt_doubt_slot (struct crypt *c, uint64_t b, bool vacant)
{
  /* Consecutive blocks land in different sets (writes come in runs). */
  uint64_t set = (b * UINT64_C (0x9e3779b97f4a7c15)) >> 40;
  struct crypt_doubt *s = &c->doubt[(set % (CRYPT_DOUBT_SLOTS /
                                            CRYPT_DOUBT_WAYS)) *
                                    CRYPT_DOUBT_WAYS];
  struct crypt_doubt *free_slot = NULL;

  for (unsigned i = 0; i < CRYPT_DOUBT_WAYS; i++) {
    if (s[i].block1 == b + 1)
      return &s[i];
    if (s[i].block1 == 0 && free_slot == NULL)
      free_slot = &s[i];
  }
  return vacant ? free_slot : NULL;
}

/* Blocks [first, first+n) are no longer in doubt (written again, or
 * zeroed).  Any lock state: takes doubt_lock only if the table is in
 * use.
 */
static void
crypt_doubt_clear (struct crypt *c, uint64_t first, uint64_t n)
{
  if (__atomic_load_n (&c->ndoubt, __ATOMIC_RELAXED) == 0)
    return;
  pthread_mutex_lock (&c->doubt_lock);
  for (uint64_t b = first; b < first + n && c->ndoubt > 0; b++) {
    struct crypt_doubt *d = crypt_doubt_slot (c, b, false);
    if (d) {
      d->block1 = 0;
      __atomic_store_n (&c->ndoubt, c->ndoubt - 1, __ATOMIC_RELAXED);
    }
  }
  pthread_mutex_unlock (&c->doubt_lock);
}

/* The failed write's tag of block b into tag; false if b is not in
 * doubt.
 */
static bool
crypt_doubt_tag (struct crypt *c, uint64_t b, uint8_t tag[16])
{
  struct crypt_doubt *d;

  if (__atomic_load_n (&c->ndoubt, __ATOMIC_RELAXED) == 0)
    return false;
  pthread_mutex_lock (&c->doubt_lock);
  d = crypt_doubt_slot (c, b, false);
  if (d)
    memcpy (tag, d->tag, 16);
  pthread_mutex_unlock (&c->doubt_lock);
  return d != NULL;
}

/* Decrypt one block into out (may be in), or with out NULL only check
 * it, against tag with the nonce of counter k.  0 or -1.  A failed
 * decryption zeroes out (libsodium does), so a second try in place
 * needs a check first.
 */
static int
crypt_open_block (const struct crypt *c, uint64_t b, uint32_t k,
                  const uint8_t tag[16], const uint8_t *in, uint8_t *out)
{
  uint8_t nonce[12];

  crypt_nonce (b, k, nonce);
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached (
    out, NULL, in, CRYPT_BLOCK, tag, NULL, 0, nonce, c->key) == 0 ? 0 : -1;
}

int
crypt_encrypt (struct crypt *c, uint64_t first, uint8_t *data, uint64_t n)
{
  for (uint64_t i = 0; i < n; i++) {
    uint64_t b = first + i;
    uint8_t nonce[12];

    if (c->counter[b] == UINT32_MAX) {
      errno = EOVERFLOW;
      return -1;
    }
    c->counter[b]++;
    c->lag[b] = 0;
    crypt_doubt_clear (c, b, 1);
    c->zero[b / 64] &= ~(UINT64_C (1) << (b % 64));
    crypt_nonce (b, c->counter[b], nonce);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached (
      data + i * CRYPT_BLOCK, c->tag[b], NULL,
      data + i * CRYPT_BLOCK, CRYPT_BLOCK, NULL, 0, NULL, nonce, c->key);
  }
  return 0;
}

int
crypt_decrypt (struct crypt *c, uint64_t first, uint8_t *data, uint64_t n,
               uint64_t *bad_block)
{
  for (uint64_t i = 0; i < n; i++) {
    uint64_t b = first + i;
    uint8_t alt[16], *d = data + i * CRYPT_BLOCK;
    uint32_t k = crypt_data_counter (c, b);

    if (crypt_is_zero (c, b)) {
      memset (d, 0, CRYPT_BLOCK);
      continue;
    }
    if (!crypt_doubt_tag (c, b, alt)) {
      if (crypt_open_block (c, b, k, c->tag[b], d, d) == 0)
        continue;
    }
    /* In doubt: the current version, or the failed write that this
     * copy executed after all.
     */
    else if (crypt_open_block (c, b, k, c->tag[b], d, NULL) == 0) {
      if (crypt_open_block (c, b, k, c->tag[b], d, d) == 0)
        continue;
    }
    else if (crypt_open_block (c, b, c->counter[b], alt, d, d) == 0)
      continue;
    *bad_block = b;
    errno = EBADMSG;
    return -1;
  }
  return 0;
}

int
crypt_version (struct crypt *c, uint64_t b, const uint8_t *data)
{
  uint8_t alt[16];

  if (crypt_is_zero (c, b) ||
      crypt_open_block (c, b, crypt_data_counter (c, b), c->tag[b], data,
                        NULL) == 0)
    return 0;
  if (crypt_doubt_tag (c, b, alt) &&
      crypt_open_block (c, b, c->counter[b], alt, data, NULL) == 0)
    return 1;
  return -1;
}

int
crypt_verify (struct crypt *c, uint64_t first, const uint8_t *data,
              uint64_t n, uint64_t *bad_block)
{
  for (uint64_t i = 0; i < n; i++) {
    if (crypt_version (c, first + i, data + i * CRYPT_BLOCK) < 0) {
      *bad_block = first + i;
      errno = EBADMSG;
      return -1;
    }
  }
  return 0;
}

unsigned
crypt_doubts (struct crypt *c)
{
  return __atomic_load_n (&c->ndoubt, __ATOMIC_RELAXED);
}

unsigned
crypt_doubt_list (struct crypt *c, uint64_t *out, unsigned max)
{
  unsigned n = 0;

  if (crypt_doubts (c) == 0)
    return 0;
  pthread_mutex_lock (&c->doubt_lock);
  for (unsigned i = 0; i < CRYPT_DOUBT_SLOTS && n < max; i++)
    if (c->doubt[i].block1)
      out[n++] = c->doubt[i].block1 - 1;
  pthread_mutex_unlock (&c->doubt_lock);
  return n;
}

void
crypt_settle (struct crypt *c, uint64_t b, bool is_new)
{
  uint8_t alt[16];

  if (is_new && crypt_doubt_tag (c, b, alt)) {
    memcpy (c->tag[b], alt, 16);
    c->lag[b] = 0;
    c->zero[b / 64] &= ~(UINT64_C (1) << (b % 64));
  }
  crypt_doubt_clear (c, b, 1);
}

/* Keep tag as block b's failed write in doubt (crypt_undo). */
static void
crypt_doubt_keep (struct crypt *c, uint64_t b, const uint8_t tag[16])
{
  struct crypt_doubt *d;

  pthread_mutex_lock (&c->doubt_lock);
  d = crypt_doubt_slot (c, b, true);
  if (d) {
    if (d->block1 == 0)
      __atomic_store_n (&c->ndoubt, c->ndoubt + 1, __ATOMIC_RELAXED);
    d->block1 = b + 1;
    memcpy (d->tag, tag, 16);
  }
  else if (!c->is_doubt_full_logged) {
    /* The caller logs nothing of this; it reads as EIO if a stalled
     * donor executes the write after all.
     */
    c->is_doubt_full_logged = true;
    logging_msg (LOGGING_WARN, "encrypt: more writes in doubt than the"
                 " table holds (%d); some blocks may read as EIO",
                 CRYPT_DOUBT_SLOTS);
  }
  pthread_mutex_unlock (&c->doubt_lock);
}

void
crypt_save (const struct crypt *c, uint64_t first, uint64_t n,
            struct crypt_undo *u)
{
  for (uint64_t i = 0; i < n; i++) {
    uint64_t b = first + i;
    memcpy (u[i].tag, c->tag[b], 16);
    u[i].counter = c->counter[b];
    u[i].lag = c->lag[b];
    u[i].is_zero = (c->zero[b / 64] >> (b % 64)) & 1;
  }
}

uint64_t
crypt_undo (struct crypt *c, uint64_t first, uint64_t n,
            const struct crypt_undo *u)
{
  uint64_t failed = 0;

  for (uint64_t i = 0; i < n; i++) {
    uint64_t b = first + i;
    if (c->counter[b] != u[i].counter + 1)
      continue;  /* encrypted again since: the newer write stands */
    if (u[i].lag == UINT8_MAX) {
      failed++;
      continue;
    }
    crypt_doubt_keep (c, b, c->tag[b]);
    memcpy (c->tag[b], u[i].tag, 16);
    c->lag[b] = u[i].lag + 1;
    if (u[i].is_zero)
      c->zero[b / 64] |= UINT64_C (1) << (b % 64);
  }
  return failed;
}

void
crypt_mark_zero (struct crypt *c, uint64_t first, uint64_t n)
{
  crypt_doubt_clear (c, first, n);
  for (uint64_t b = first; b < first + n; b++)
    c->zero[b / 64] |= UINT64_C (1) << (b % 64);
}
