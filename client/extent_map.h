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
  uint8_t pad[2];
  uint32_t wgen;               /* bumped by every write, zero and map
                                  (write lock): a write that reached no
                                  copy undoes its stale marks only if no
                                  later write came meanwhile (io.c) */
};
_Static_assert (sizeof (struct extent) == 128, "extent size");

struct extent_map {
  struct extent *e;         /* n entries, owned */
  uint64_t n;
  unsigned shift;              /* log2 (extent size) */
  pthread_rwlock_t locks[EXTENT_MAP_STRIPES];
};

int extent_map_init (struct extent_map *m, uint64_t size_bytes,
                     uint32_t extent_size);
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

/* Remove replica slot r from e, keeping the array packed. */
void extent_map_drop_replica (struct extent *e, unsigned r);

/* Does e already have a replica on server s? */
bool extent_map_has_server (const struct extent *e, unsigned s);

#endif /* RP_EXTENT_MAP_H */
