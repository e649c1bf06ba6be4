/* See auth.h. */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sodium.h>

#include "auth.h"

int
rp_auth_init (void)
{
  return sodium_init () < 0 ? -1 : 0;
}

int
rp_key_load (const char *path, uint8_t key[RP_KEY_BYTES],
             char *err, size_t errlen, char *warn, size_t warnlen)
{
  char hex[2 * RP_KEY_BYTES + 2];
  struct stat st;
  size_t bin_len = 0;
  ssize_t n;
  int fd;

  if (warn && warnlen)
    warn[0] = '\0';
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    snprintf (err, errlen, "key file %s: %s", path, strerror (errno));
    return -1;
  }
  if (fstat (fd, &st) == 0 && (st.st_mode & 077) && warn)
    snprintf (warn, warnlen, "key file %s is readable by group or others"
              " (chmod 600 it)", path);
  n = read (fd, hex, sizeof hex);
  close (fd);
  if (n < 0) {
    snprintf (err, errlen, "key file %s: %s", path, strerror (errno));
    return -1;
  }
  if (n > 2 * RP_KEY_BYTES &&
      !(n == 2 * RP_KEY_BYTES + 1 && hex[n - 1] == '\n'))
    goto bad;
  if (n < 2 * RP_KEY_BYTES)
    goto bad;
  if (sodium_hex2bin (key, RP_KEY_BYTES, hex, 2 * RP_KEY_BYTES, NULL,
                      &bin_len, NULL) != 0 || bin_len != RP_KEY_BYTES)
    goto bad;
  sodium_memzero (hex, sizeof hex);
  return 0;
 bad:
  sodium_memzero (hex, sizeof hex);
  snprintf (err, errlen, "key file %s: not a rampool key (64 hex digits;"
            " make one with: rampool keygen FILE)", path);
  return -1;
}

int
rp_key_generate (const char *path, char *err, size_t errlen)
{
  uint8_t key[RP_KEY_BYTES];
  char hex[2 * RP_KEY_BYTES + 1];
  int fd;

  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd == -1) {
    snprintf (err, errlen, "%s: %s", path, strerror (errno));
    return -1;
  }
  randombytes_buf (key, sizeof key);
  sodium_bin2hex (hex, sizeof hex, key, sizeof key);
  hex[2 * RP_KEY_BYTES] = '\n';
  if (write (fd, hex, sizeof hex) != (ssize_t) sizeof hex || fsync (fd) == -1) {
    snprintf (err, errlen, "%s: %s", path, strerror (errno));
    close (fd);
    unlink (path);
    sodium_memzero (key, sizeof key);
    sodium_memzero (hex, sizeof hex);
    return -1;
  }
  close (fd);
  sodium_memzero (key, sizeof key);
  sodium_memzero (hex, sizeof hex);
  return 0;
}

void
rp_auth_proof (const uint8_t key[RP_KEY_BYTES], enum rp_auth_role role,
               const uint8_t client_nonce[32], const uint8_t server_nonce[32],
               const uint8_t owner[16], uint64_t fence, uint8_t proof[32])
{
  uint64_t fence_le = htole64 (fence);
  static const char label_server[] = "rampool-v1 server";
  static const char label_client[] = "rampool-v1 client";
  crypto_auth_hmacsha256_state st;

  crypto_auth_hmacsha256_init (&st, key, RP_KEY_BYTES);
  if (role == RP_AUTH_SERVER)
    crypto_auth_hmacsha256_update (&st, (const uint8_t *) label_server,
                                   sizeof label_server);
  else
    crypto_auth_hmacsha256_update (&st, (const uint8_t *) label_client,
                                   sizeof label_client);
  crypto_auth_hmacsha256_update (&st, client_nonce, 32);
  crypto_auth_hmacsha256_update (&st, server_nonce, 32);
  crypto_auth_hmacsha256_update (&st, owner, 16);
  crypto_auth_hmacsha256_update (&st, (const uint8_t *) &fence_le, 8);
  crypto_auth_hmacsha256_final (&st, proof);
  sodium_memzero (&st, sizeof st);
}

int
rp_auth_check (const uint8_t key[RP_KEY_BYTES], enum rp_auth_role role,
               const uint8_t client_nonce[32], const uint8_t server_nonce[32],
               const uint8_t owner[16], uint64_t fence, const uint8_t proof[32])
{
  uint8_t expect[32];
  int ok;

  rp_auth_proof (key, role, client_nonce, server_nonce, owner, fence, expect);
  ok = crypto_verify_32 (expect, proof) == 0;
  sodium_memzero (expect, sizeof expect);
  return ok;
}

uint8_t *
rp_key_alloc (void)
{
  return sodium_malloc (RP_KEY_BYTES);
}

void
rp_key_free (uint8_t *key)
{
  if (key)
    sodium_free (key);  /* wipes and unlocks */
}
