/* See store.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rampool/protocol.h"
#include "store.h"
#include "util.h"

#define STORE_INDEX_BITS 24

_Static_assert ((uint64_t) REGION_GRANULE << REGION_MAX_ORDER ==
                RP_MAX_EXTENT_SIZE, "the region allocates every extent size"
                " the protocol allows");
_Static_assert (REGION_GRANULE == RP_MIN_EXTENT_SIZE, "the smallest extent"
                " is one granule");

int
store_open (struct store *s, uint64_t capacity, bool use_mlock,
            uint32_t max_owners, uint32_t lease_ms)
{
  uint64_t n;

  memset (s, 0, sizeof *s);
  if (region_open (&s->region, capacity, use_mlock) == -1)
    return -1;
  n = s->region.ngranules;
  if (n > (UINT32_C (1) << STORE_INDEX_BITS) - 2)
    n = (UINT32_C (1) << STORE_INDEX_BITS) - 2;
  s->max_extents = n;
  s->extents = calloc (n, sizeof *s->extents);
  s->owners = calloc (max_owners, sizeof *s->owners);
  if (s->extents == NULL || s->owners == NULL) {
    store_close (s);
    errno = ENOMEM;
    return -1;
  }
  for (uint32_t i = 0; i < n; i++)
    s->extents[i].next_free = i + 2 <= n ? i + 2 : 0;
  s->free_head = 1;
  s->max_owners = max_owners;
  s->lease_ms = lease_ms;
  return 0;
}

void
store_close (struct store *s)
{
  for (uint32_t i = 0; s->extents && i < s->max_extents; i++)
    if (s->extents[i].handle && s->extents[i].remote)
      s->release_remote (s->extents[i].remote);
  region_close (&s->region);
  free (s->extents);
  free (s->owners);
  memset (s, 0, sizeof *s);
}

struct owner *
store_owner_attach (struct store *s, const uint8_t id[16])
{
  struct owner *vacant = NULL;

  for (uint32_t i = 0; i < s->max_owners; i++) {
    struct owner *o = &s->owners[i];
    if (o->in_use && memcmp (o->id, id, 16) == 0) {
      o->nconns++;
      return o;
    }
    if (!o->in_use && vacant == NULL)
      vacant = o;
  }
  if (vacant == NULL) {
    errno = EUSERS;
    return NULL;
  }
  memset (vacant, 0, sizeof *vacant);
  memcpy (vacant->id, id, 16);
  vacant->in_use = true;
  vacant->nconns = 1;
  vacant->session = ++s->sessions_made;
  return vacant;
}

void
store_owner_detach (struct store *s, struct owner *o)
{
  if (--o->nconns == 0) {
    o->idle_since_ms = rp_now_ms ();
    if (o->nextents == 0)
      o->in_use = false;
  }
}

unsigned
store_expire_owners (struct store *s, uint64_t now_ms)
{
  unsigned expired = 0;

  for (uint32_t i = 0; i < s->max_owners; i++) {
    struct owner *o = &s->owners[i];
    if (!o->in_use || o->nconns > 0 ||
        now_ms - o->idle_since_ms < s->lease_ms)
      continue;
    while (o->first_extent)
      store_free (s, &s->extents[o->first_extent - 1]);
    o->in_use = false;
    expired++;
  }
  return expired;
}

int
store_alloc (struct store *s, struct owner *o, uint64_t size,
             uint64_t *handle)
{
  uint32_t idx;
  int64_t off;
  uint64_t rnd;
  struct extent *e;

  if (s->free_head == 0) {
    errno = ENOSPC;
    return -1;
  }
  /* The handle's random part first: without it, nothing is taken.  A
   * clock-derived fallback would let another client guess handles.
   */
  if (rp_random_bytes (&rnd, sizeof rnd) == -1) {
    errno = EIO;
    return -1;
  }
  off = region_alloc (&s->region, size);
  if (off == -1)
    return -1;
  idx = s->free_head - 1;
  e = &s->extents[idx];
  s->free_head = e->next_free;
  rnd &= (UINT64_C (1) << (64 - STORE_INDEX_BITS)) - 1;
  if (rnd == 0)
    rnd = 1;
  e->handle = (rnd << STORE_INDEX_BITS) | (idx + 1);
  e->offset = off;
  e->size = size;
  e->owner = o;
  e->next_free = 0;
  e->access_ms = rp_now_ms ();
  e->reclaim_ms = 0;
  e->is_sole = false;
  e->is_held = false;
  e->owner_prev = 0;
  e->owner_next = o->first_extent;
  if (o->first_extent)
    s->extents[o->first_extent - 1].owner_prev = idx + 1;
  o->first_extent = idx + 1;
  o->nextents++;
  o->bytes += size;
  s->nextents++;
  *handle = e->handle;
  return 0;
}

struct extent *
store_lookup (struct store *s, struct owner *o, uint64_t handle)
{
  uint64_t idx = handle & ((UINT64_C (1) << STORE_INDEX_BITS) - 1);
  struct extent *e;

  if (idx == 0 || idx > s->max_extents)
    return NULL;
  e = &s->extents[idx - 1];
  if (e->handle != handle || e->owner != o)
    return NULL;
  return e;
}

void
store_free (struct store *s, struct extent *e)
{
  uint32_t idx = e - s->extents;
  struct owner *o = e->owner;

  /* Unreachable first (an old rkey must reach nothing), then freed. */
  if (e->remote) {
    s->release_remote (e->remote);
    e->remote = NULL;
  }
  region_free (&s->region, e->offset, e->size);
  if (e->owner_prev)
    s->extents[e->owner_prev - 1].owner_next = e->owner_next;
  else
    o->first_extent = e->owner_next;
  if (e->owner_next)
    s->extents[e->owner_next - 1].owner_prev = e->owner_prev;
  o->nextents--;
  o->bytes -= e->size;
  if (o->nextents == 0 && o->nconns == 0)
    o->in_use = false;
  s->nextents--;
  e->handle = 0;
  e->owner = NULL;
  e->next_free = s->free_head;
  s->free_head = idx + 1;
}

uint32_t
store_owners_holding (const struct store *s)
{
  uint32_t n = 0;

  for (uint32_t i = 0; i < s->max_owners; i++)
    if (s->owners[i].in_use && s->owners[i].nextents > 0)
      n++;
  return n;
}

uint32_t
store_list (const struct store *s, const struct owner *o, uint64_t cursor,
            uint32_t max, uint32_t scan_slots, uint64_t *out, uint64_t *next)
{
  uint64_t end = cursor + scan_slots, i;
  uint32_t n = 0;

  if (cursor >= s->max_extents) {
    *next = UINT64_MAX;
    return 0;
  }
  if (end > s->max_extents)
    end = s->max_extents;
  for (i = cursor; i < end && n < max; i++)
    if (s->extents[i].handle && s->extents[i].owner == o)
      out[n++] = s->extents[i].handle;
  *next = i >= s->max_extents ? UINT64_MAX : i;
  return n;
}
