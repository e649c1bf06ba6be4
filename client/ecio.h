/* Erasure-coded extents (redundancy=ec:K+M): the data path, the
 * rebuild of lost fragments and the stripe counts, over the codec of
 * common/ec.h (ISA-L).
 *
 * Layout.  Every 4 KiB block is cut into K data fragments of 4096/K
 * bytes (byte i*4096/K.. of the block is data fragment i) and coded
 * into M parity fragments of the same size, as Hydra does.  Fragment f
 * of every block of an extent is kept on one server, in an extent of
 * extent-size/K bytes there (block b's fragment at b*4096/K), so an
 * extent is a stripe of K+M fragment extents on K+M distinct servers,
 * in the fixed slots of extent_map_frags.  Why per block and not per
 * extent (Carbink's spans): a full-block write, which is every swap
 * write, needs no read; a page-in reads K fragments of 4096/K bytes at
 * once instead of one 4 KiB read; a span would need each write to read
 * the old data and parity back (read-modify-write) and update M parity
 * extents.  bench/ec-bench.sh measures what it costs.
 *
 * The copy-state invariant (replica.h) holds for every fragment as for
 * a replica: a fragment is good (read from, used to rebuild) only while
 * its server is up with its epoch and it missed no write.  A write goes
 * to every good fragment under the extent's write lock (fragments of
 * one extent are ordered alike on every server, as replicas are); the
 * fragments it could not reach are marked stale first.  It succeeds
 * when at least K fragments took it; the rest are marked stale and
 * rebuilt.  A read decodes from any K good fragments, data first, and
 * fails with EIO only when fewer than K are left: never wrong data.
 * With encrypt=on blocks are encrypted before they are coded, and a
 * block that fails authentication after decoding is decoded again
 * without each fragment in turn, to find (and mark) the bad one.
 *
 * Partial blocks are read, modified and written back whole under the
 * write lock (read-modify-write).  An extent whose good fragments are
 * fewer than K but enough with those on servers that are down may
 * come back: requests wait for them (outage-wait-ms) as io.c's do.
 */
#ifndef RP_ECIO_H
#define RP_ECIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Set up p->ec for cfg.ec_k > 0 (nothing otherwise).  0, or -1 with a
 * message in err.
 */
int ecio_open (struct rp_pool *p, char *err, size_t errlen);
void ecio_close (struct rp_pool *p);

/* The public calls' work with redundancy=ec (io.c checks the range).
 * op RP_OP_WRITE (buf) or RP_OP_ZERO (buf NULL; keep_mapped: map
 * unmapped extents rather than skip them).  0 or -1 with errno.
 */
int ecio_pread (struct rp_pool *p, uint8_t *buf, size_t count,
                uint64_t offset);
int ecio_pwrite (struct rp_pool *p, const uint8_t *buf, size_t count,
                 uint64_t offset, uint16_t op, bool keep_mapped);
/* Free extent idx on every server (write lock held). */
void ecio_free_extent (struct rp_pool *p, uint64_t idx);

/* Does extent idx need a fragment rebuilt or moved?  Unlocked
 * pre-check, decided again under the lock.
 */
bool ecio_needs (struct rp_pool *p, uint64_t idx);
/* Rebuild extent idx's missing, stale and leaving fragments from K
 * good ones (write lock held), using buf (len bytes, at least 64 KiB)
 * as scratch.  The bytes written, 0 if nothing could be done now.
 */
int64_t ecio_rebuild (struct rp_pool *p, uint64_t idx, uint8_t *buf,
                      size_t len);

/* How extent idx stands (read lock held): -1 unmapped, else the
 * ECIO_* below.
 */
enum {
  ECIO_HEALTHY, ECIO_DEGRADED, ECIO_UNREACHABLE, ECIO_LOST,
};
int ecio_state (struct rp_pool *p, uint64_t idx);

/* rp_pool_audit with redundancy=ec (audit.c): every fragment counted
 * good checked against its server and against the others (ecio.c).
 */
int ecio_audit (struct rp_pool *p, struct rp_audit *a);

#endif /* RP_ECIO_H */
