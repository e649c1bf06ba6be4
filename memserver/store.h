/* The extent table and its owners.
 *
 * An owner is a client session (a random 16-byte id sent in HELLO),
 * not a connection: one nbdkit process opens several connections per
 * memserver, and a connection that drops and comes back (a network
 * blip) must find its extents again.  When an owner's last connection
 * closes, its extents are kept for `lease_ms`, then freed, so a client
 * that died returns its memory to the donor.
 *
 * A handle is (40 random bits << 24) | (table index + 1): unguessable,
 * and it names one table slot, so lookup is O(1) and a stale or forged
 * handle (wrong random part, other owner) is simply "no such extent".
 * The random bits come from getrandom only: without it ALLOC fails
 * (EIO) rather than hand out a handle that could be guessed.
 *
 * Each owner's extents are also on a list of their own, so expiring
 * an owner costs its own extents, not a walk of the whole table (up to
 * 2^24 slots) per owner.
 * Single-threaded: called only from the event loop.
 */
#ifndef MS_STORE_H
#define MS_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "region.h"

struct owner {
  uint8_t id[16];          /* from HELLO */
  bool in_use;
  uint32_t nconns;         /* connections that said HELLO with this id */
  uint32_t nextents;       /* extents it holds */
  uint64_t bytes;          /* bytes it holds */
  uint64_t idle_since_ms;  /* when nconns dropped to 0 */
  uint64_t fence;          /* newest connection generation seen */
  uint64_t session;        /* this record's id, unique within the
                              server's incarnation (never 0): a client
                              that finds a different one after a
                              reconnect knows its extents are gone */
  uint32_t first_extent;   /* its extents' list (index + 1), 0 = none */
  uint32_t drain_gen;      /* the drain it was told of (reclaim.c), */
  uint64_t drain_fence;    /*   on its connections of this generation */
  uint64_t reclaim_fence;  /* the generation of its connections told of
                              what is asked back (reclaim.c) */
};

struct extent {
  uint64_t handle;         /* 0 = slot free */
  uint64_t offset;         /* in the region */
  uint64_t size;           /* bytes, power of two */
  struct owner *owner;
  uint32_t next_free;      /* free-list link (index + 1), 0 = end */
  uint32_t owner_prev;     /* owner's list (index + 1), 0 = first */
  uint32_t owner_next;     /* owner's list (index + 1), 0 = last */
  uint64_t access_ms;      /* last two-sided access (ALLOC, READ, WRITE,
                              ZERO): what reclaim picks the least
                              recently used by.  RDMA's one-sided
                              accesses are not seen: their extents look
                              as old as their last two-sided one */
  uint64_t reclaim_ms;     /* a RECLAIM notice asked it back: dropped at
                              this time (rp_now_ms); 0 = not asked */
  bool is_sole;            /* ALLOC with RP_FLAG_SOLE: never dropped
                              without --reclaim-sole */
  bool is_held;            /* the owner said HOLD: never dropped */
  void *remote;            /* a transport's registration of it (RDMA:
                              the memory region), released through
                              store.release_remote before the memory is
                              freed; NULL = none */
};

struct store {
  struct region region;
  struct extent *extents;  /* table, owned */
  uint32_t max_extents;
  uint32_t nextents;       /* in use */
  uint32_t free_head;      /* index + 1 of first free slot, 0 = none */
  struct owner *owners;    /* table, owned */
  uint32_t max_owners;
  uint32_t lease_ms;       /* keep a disconnected owner's extents this long */
  uint64_t sessions_made;  /* owner records created; the last session id */
  /* Undo a transport's registration of an extent (extent.remote), so
   * no old key reaches its memory once freed.  Set by the transport
   * that registers; called by store_free and store_close.
   */
  void (*release_remote) (void *remote);
};

int store_open (struct store *s, uint64_t capacity, bool use_mlock,
                uint32_t max_owners, uint32_t lease_ms);
void store_close (struct store *s);

/* Find or create the owner with this id; NULL with errno = EUSERS when
 * the owner table is full.  Counts the connection (nconns++).
 */
struct owner *store_owner_attach (struct store *s, const uint8_t id[16]);
void store_owner_detach (struct store *s, struct owner *o);

/* Free the extents of owners idle for longer than the lease.  Returns
 * how many owners were expired.
 */
unsigned store_expire_owners (struct store *s, uint64_t now_ms);

/* ALLOC: 0 and *handle, or -1 with errno ENOSPC (no room), ENOMEM
 * (mlock failed) or EIO (no randomness for the handle).
 */
int store_alloc (struct store *s, struct owner *o, uint64_t size,
                 uint64_t *handle);

/* The extent behind handle if o owns it, else NULL. */
struct extent *store_lookup (struct store *s, struct owner *o,
                             uint64_t handle);

void store_free (struct store *s, struct extent *e);

uint32_t store_owners_holding (const struct store *s);

/* LIST: o's handles in table slots [cursor, ...), at most max of them
 * (out[0..max)), examining at most scan_slots slots.  Returns how many
 * were stored; *next is where to continue, or UINT64_MAX when the
 * table has been scanned to its end.
 */
uint32_t store_list (const struct store *s, const struct owner *o,
                     uint64_t cursor, uint32_t max, uint32_t scan_slots,
                     uint64_t *out, uint64_t *next);

#endif /* MS_STORE_H */
