/* Client-side encryption (encrypt=on): every 4 KiB block is encrypted
 * and authenticated with ChaCha20-Poly1305 (IETF) before it leaves the
 * host; donors and the wire see only ciphertext, and never the tag.
 *
 * Key: random per pool, made at open and held in locked memory.  A
 * rampool disk does not outlive its nbdkit process anyway, so there is
 * no key to manage, and a dead session's pages are unreadable forever.
 *
 * Per block, kept locally (bounded, allocated at open):
 *   counter  4 B  bumped on every encryption of the block, never
 *                 lowered; with the block number it forms the nonce,
 *                 so no nonce is ever used twice, and an old ciphertext
 *                 replayed by a donor (or a stale replica) fails
 *                 authentication;
 *   lag      1 B  the current contents were encrypted with counter -
 *                 lag: a write that reached no copy is undone
 *                 (crypt_undo) by going back to the previous tag while
 *                 the counter stays where it is, so the next write still
 *                 takes a fresh nonce;
 *   tag     16 B  the Poly1305 tag of the current contents;
 *   zero    1 bit the block reads as zeros (never written, or its
 *                 extent was trimmed) whatever the donor holds.
 * That is 21.125 bytes per 4 KiB: 5.3 MiB of local RAM per GiB of disk.
 *
 * A block that fails authentication is treated like a failed replica:
 * the read fails over to another copy, and returns EIO only if every
 * copy fails.  Never wrong data.
 *
 * Writes in doubt.  A write that reached no copy as far as the client
 * knows (every copy failed or timed out) is undone (crypt_undo), but a
 * stalled donor may still execute it when it resumes: its copy then
 * holds the failed write's ciphertext.  So undo also keeps the failed
 * write's tag, for that block, in a small table (CRYPT_DOUBT_SLOTS
 * entries, 128 KiB, made at init): a copy that fails the current tag is
 * tried against it, and either version reads (NBD leaves a failed
 * write's range undefined; the rest of the block is the same in both).
 * Recovery settles each doubt against the copies (crypt_settle): if any
 * holds the failed write, that version becomes the block's, and the
 * copies that hold the other are repaired from it.  The next write of
 * the block ends the doubt too.  Only the latest failed write of a
 * block is kept; a full table logs and falls back to the plain undo.
 *
 * Locking: callers hold the extent's stripe lock (write lock to
 * encrypt, read or write lock to decrypt), which orders counter and
 * tag updates with the data on the wire.
 */
#ifndef RP_CRYPT_H
#define RP_CRYPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define CRYPT_BLOCK 4096u

/* A block whose last write is in doubt (see the top). */
struct crypt_doubt {
  uint64_t block1;             /* block number + 1; 0 = free slot */
  uint8_t tag[16];             /* the failed write's tag: its nonce is
                                  the block's counter (lag 0) */
};
#define CRYPT_DOUBT_SLOTS 4096
#define CRYPT_DOUBT_WAYS 8     /* a block lives in one set of this many */

struct crypt {
  uint8_t *key;                /* 32 bytes, sodium_malloc'd */
  uint64_t nblocks;
  uint32_t *counter;           /* nblocks, mmap'd */
  uint8_t *lag;                /* nblocks, mmap'd */
  struct crypt_doubt *doubt;   /* CRYPT_DOUBT_SLOTS, mmap'd; guarded by
                                  doubt_lock (stripe locks do not cover
                                  it: one table for every stripe) */
  pthread_mutex_t doubt_lock;
  unsigned ndoubt;             /* entries in use; read unlocked as a
                                  hint (0: skip the table), atomic */
  bool is_doubt_full_logged;   /* under doubt_lock */
  uint8_t (*tag)[16];          /* nblocks, mmap'd */
  uint64_t *zero;              /* nblocks bits, 1 = reads as zeros */
};

/* 0 or -1 with errno. */
int crypt_init (struct crypt *c, uint64_t size_bytes);
void crypt_destroy (struct crypt *c);

/* Encrypt n whole blocks in place, the first being block `first`.
 * Returns 0, or -1 with errno = EOVERFLOW if a block's counter would
 * wrap (2^32 - 1 writes of one block in one session).
 */
int crypt_encrypt (struct crypt *c, uint64_t first, uint8_t *data, uint64_t n);

/* Decrypt n whole blocks in place.  Zero blocks become zeros.  Returns
 * 0, or -1 with errno = EBADMSG if any block fails authentication
 * (*bad_block set); the buffer is then garbage.
 */
int crypt_decrypt (struct crypt *c, uint64_t first, uint8_t *data, uint64_t n,
                   uint64_t *bad_block);

/* Like crypt_decrypt, but only checks n blocks of ciphertext (recovery
 * verifies a copy before it spreads it): data is left as it is.  0, or
 * -1 with errno = EBADMSG and *bad_block.
 */
int crypt_verify (struct crypt *c, uint64_t first, const uint8_t *data,
                  uint64_t n, uint64_t *bad_block);

/* Blocks [first, first+n) read as zeros from now on (trim, zero). */
void crypt_mark_zero (struct crypt *c, uint64_t first, uint64_t n);

/* One block's state before an encryption, to undo it. */
struct crypt_undo {
  uint8_t tag[16];
  uint32_t counter;
  uint8_t lag;
  uint8_t is_zero;
};

/* Save blocks [first, first+n) into u[0..n) before crypt_encrypt. */
void crypt_save (const struct crypt *c, uint64_t first, uint64_t n,
                 struct crypt_undo *u);

/* The write encrypted after crypt_save reached no copy: make each of
 * those blocks read its previous contents again, unless the block has
 * been encrypted again since (then that newer write stands).  The
 * counter is not lowered.  Returns how many blocks could not be undone
 * (their lag would pass 255: a block whose writes kept failing); they
 * keep the failed write's tag and read as EIO until rewritten.
 */
uint64_t crypt_undo (struct crypt *c, uint64_t first, uint64_t n,
                     const struct crypt_undo *u);

/* Which version of block b data (one block of ciphertext) is: 0 the
 * current one, 1 the failed write in doubt, -1 neither (or, for a block
 * that reads as zeros, 0).  Stripe lock held.
 */
int crypt_version (struct crypt *c, uint64_t b, const uint8_t *data);

/* Blocks in doubt now (a gauge for operators and tests). */
unsigned crypt_doubts (struct crypt *c);

/* Up to max blocks in doubt, from the table, into out; how many. */
unsigned crypt_doubt_list (struct crypt *c, uint64_t *out, unsigned max);

/* End the doubt of block b: is_new (some copy holds the failed write)
 * makes that version the block's; else the current one stays.  Write
 * lock held.
 */
void crypt_settle (struct crypt *c, uint64_t b, bool is_new);

#endif /* RP_CRYPT_H */
