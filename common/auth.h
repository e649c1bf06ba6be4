/* Cluster-key authentication (mutual challenge-response) and key
 * files.  libsodium does the cryptography: HMAC-SHA-256 for proofs,
 * constant-time comparison, locked key memory.
 *
 * The exchange, on every connection before anything else is served:
 *   1. client -> HELLO  {owner, client_nonce}              (random 32 B)
 *   2. server -> reply  {server_nonce, server_proof}
 *        server_proof = HMAC(K, "rampool-v1 server" | cn | sn | owner | fence)
 *      The client checks server_proof: the server holds K.
 *   3. client -> AUTH   {client_proof}
 *        client_proof = HMAC(K, "rampool-v1 client" | cn | sn | owner | fence)
 *      (fence: the HELLO's connection generation, 8 bytes little-endian;
 *      covered so an on-path attacker cannot raise it in flight to lock
 *      the client out of the server.)
 *      The server checks client_proof: the client holds K.
 * Both nonces are fresh per connection, so a recorded exchange cannot
 * be replayed, and the two proofs differ by their label, so one cannot
 * be reflected as the other.  The key never crosses the wire.
 */
#ifndef RP_AUTH_H
#define RP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define RP_KEY_BYTES 32

enum rp_auth_role { RP_AUTH_SERVER, RP_AUTH_CLIENT };

/* Initialise libsodium (idempotent).  0 or -1. */
int rp_auth_init (void);

/* Read a key file: 64 hex digits (optionally followed by a newline).
 * The key lands in *key (caller's locked buffer).  On error returns -1
 * with a message in err naming the file and why -- never key material.
 * Warns (through err_warn, may be NULL) when the file is readable by
 * group or others.
 */
int rp_key_load (const char *path, uint8_t key[RP_KEY_BYTES],
                 char *err, size_t errlen, char *warn, size_t warnlen);

/* Create a new random key file with mode 0600; fails if it exists. */
int rp_key_generate (const char *path, char *err, size_t errlen);

void rp_auth_proof (const uint8_t key[RP_KEY_BYTES], enum rp_auth_role role,
                    const uint8_t client_nonce[32],
                    const uint8_t server_nonce[32],
                    const uint8_t owner[16], uint64_t fence,
                    uint8_t proof[32]);

/* Constant-time: 1 if proof is right, else 0. */
int rp_auth_check (const uint8_t key[RP_KEY_BYTES], enum rp_auth_role role,
                   const uint8_t client_nonce[32],
                   const uint8_t server_nonce[32],
                   const uint8_t owner[16], uint64_t fence,
                   const uint8_t proof[32]);

/* A key buffer that is locked in RAM and wiped when freed. */
uint8_t *rp_key_alloc (void);
void rp_key_free (uint8_t *key);

#endif /* RP_AUTH_H */
