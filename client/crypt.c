/* See crypt.h. */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sodium.h>

#include "crypt.h"

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
  c->tag = crypt_map (c->nblocks * sizeof *c->tag);
  c->zero = crypt_map ((c->nblocks + 63) / 64 * sizeof *c->zero);
  if (c->key == NULL || c->counter == NULL || c->lag == NULL ||
      c->tag == NULL ||
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
    uint8_t nonce[12];

    if (crypt_is_zero (c, b)) {
      memset (data + i * CRYPT_BLOCK, 0, CRYPT_BLOCK);
      continue;
    }
    crypt_nonce (b, crypt_data_counter (c, b), nonce);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached (
          data + i * CRYPT_BLOCK, NULL, data + i * CRYPT_BLOCK, CRYPT_BLOCK,
          c->tag[b], NULL, 0, nonce, c->key) != 0) {
      *bad_block = b;
      errno = EBADMSG;
      return -1;
    }
  }
  return 0;
}

int
crypt_verify (const struct crypt *c, uint64_t first, const uint8_t *data,
              uint64_t n, uint64_t *bad_block)
{
  uint8_t scratch[CRYPT_BLOCK];

  for (uint64_t i = 0; i < n; i++) {
    uint64_t b = first + i;
    uint8_t nonce[12];

    if (crypt_is_zero (c, b))
      continue;  /* reads as zeros whatever the copy holds */
    crypt_nonce (b, crypt_data_counter (c, b), nonce);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached (
          scratch, NULL, data + i * CRYPT_BLOCK, CRYPT_BLOCK,
          c->tag[b], NULL, 0, nonce, c->key) != 0) {
      *bad_block = b;
      errno = EBADMSG;
      return -1;
    }
  }
  return 0;
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
  for (uint64_t b = first; b < first + n; b++)
    c->zero[b / 64] |= UINT64_C (1) << (b % 64);
}
