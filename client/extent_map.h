/* The extent map: for every extent of the virtual disk, where its
 * replicas live.  Preallocated at open (one entry per extent, 128
 * bytes: a 64 GiB disk at 1 MiB extents costs 8 MiB, touched as
 * extents are written), never resized, so the I/O path allocates
 * nothing.
 *
 * Locking: entries are guarded by striped rwlocks (extent index mod
 * EXTENT_MAP_STRIPES).  Writers of an extent (write, zero, trim, map,
 * recovery) hold the stripe's write lock while they change the entry
 * and while they SEND to the replicas, which is what orders
 * overlapping writes identically on every replica (each replica's
 * requests for one extent travel on one connection, executed in
 * order).  Readers hold the read lock until their data arrived, so a
 * trim cannot free an extent under a read in flight.
 *
 * A replica is good when its server is up, its epoch equals the
 * server's epoch (the server has not restarted, nor dropped our
 * session, since; either bumps the epoch and so invalidates every
 * replica there at once, without a scan) and it is not stale (it
 * missed a write, or its server contradicted it).  replica.h states the
 * whole invariant.
 */
#ifndef RP_EXTENT_MAP_H
#define RP_EXTENT_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "rampool/client.h"

#define EXTENT_MAP_STRIPES 4096
/* Copies an entry can hold: `replicas` plus one, so that a copy whose
 * server wants it back can stay until its replacement is filled
 * (recovery.c moves one such copy at a time when all are in use).
 */
#define EXTENT_SLOTS (RP_MAX_REPLICAS + 1)

struct replica {
  uint64_t handle;             /* server's handle; 0 = no replica here */
  uint16_t server;             /* index in pool->servers */
  uint8_t is_stale;            /* missed a write, or its server said it
                                  is gone: not readable (replica.h) */
  uint8_t leaving;             /* its server asked for it back: 1 move
                                  it, 2 held there (no room elsewhere;
                                  HOLD sent) */
  uint32_t epoch;              /* server epoch when allocated */
  uint32_t rkey;               /* from the ALLOC reply, for one-sided */
  uint32_t raddr_64k;          /*   transports (transport.h); 0 over TCP */
};

struct extent {
  struct replica rep[EXTENT_SLOTS];
  uint8_t nrep;                /* replicas with handle != 0 */
  uint8_t is_lost_logged;      /* "extent lost" logged once */
  uint8_t is_coded;            /* redundancy=ec: the extent is mapped,
                                  its fragments in extent_map_frags
                                  (rep[] and nrep stay empty) */
  uint8_t ec_waiting;          /* redundancy=ec: writes of this extent
                                  waiting to retry (ecio.c): its
                                  fragments may disagree until they do */
  uint32_t wgen;               /* bumped by every write, zero and map
                                  (write lock): a write that reached no
                                  copy undoes its stale marks only if no
                                  later write came meanwhile (io.c) */
};
_Static_assert (sizeof (struct extent) == 128, "extent size");

struct extent_map {
  struct extent *e;         /* n entries, owned */
  uint64_t n;
  /* redundancy=ec: nfrag (K+M) fragments per extent, n * nfrag, owned;
   * fragment f of extent idx at frags[idx * nfrag + f] (a fixed slot:
   * which fragment a copy is matters; handle 0 = none).  Guarded by
   * the extent's stripe lock as rep[] is.  NULL and 0 with replicas.
   */
  struct replica *frags;
  unsigned nfrag;
  unsigned shift;              /* log2 (extent size) */
  pthread_rwlock_t locks[EXTENT_MAP_STRIPES];
};

/* nfrag: 0 for replicas, K+M for erasure coding. */
int extent_map_init (struct extent_map *m, uint64_t size_bytes,
                     uint32_t extent_size, unsigned nfrag);
void extent_map_destroy (struct extent_map *m);

static inline uint64_t
extent_map_index (const struct extent_map *m, uint64_t offset)
{
  return offset >> m->shift;
}

static inline pthread_rwlock_t *
extent_map_lock (struct extent_map *m, uint64_t idx)
{
  return &m->locks[idx % EXTENT_MAP_STRIPES];
}

/* redundancy=ec: the nfrag fragment slots of extent idx. */
static inline struct replica *
extent_map_frags (struct extent_map *m, uint64_t idx)
{
  return &m->frags[idx * m->nfrag];
}

/* Every copy of extent idx, whatever the redundancy: its replicas
 * (*n of them), or its fragment slots (some may have handle 0).  For
 * scans that look at copies by server (reconcile, reclaim, removal,
 * close); the caller holds the stripe lock or reads with atomics.
 */
static inline struct replica *
extent_map_copies (struct extent_map *m, uint64_t idx, unsigned *n)
{
  struct extent *e = &m->e[idx];

  if (m->nfrag) {
    *n = __atomic_load_n (&e->is_coded, __ATOMIC_ACQUIRE) ? m->nfrag : 0;
    return extent_map_frags (m, idx);
  }
  *n = __atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE);
  if (*n > EXTENT_SLOTS)
    *n = EXTENT_SLOTS;
  return e->rep;
}

/* Remove replica slot r from e, keeping the array packed. */
void extent_map_drop_replica (struct extent *e, unsigned r);

/* Does e already have a replica on server s? */
bool extent_map_has_server (const struct extent *e, unsigned s);

#endif /* RP_EXTENT_MAP_H */
