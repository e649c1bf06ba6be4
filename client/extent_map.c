/* See extent_map.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "extent_map.h"

int
extent_map_init (struct extent_map *m, uint64_t size_bytes,
                 uint32_t extent_size, unsigned nfrag)
{
  memset (m, 0, sizeof *m);
  m->shift = __builtin_ctz (extent_size);
  m->n = (size_bytes + extent_size - 1) >> m->shift;
  /* mmap, not calloc: the map is touched lazily, so a 1 TiB disk that
   * is mostly unwritten costs little until used.
   */
  m->e = mmap (NULL, m->n * sizeof *m->e, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m->e == MAP_FAILED) {
    m->e = NULL;
    return -1;
  }
  if (nfrag) {
    m->frags = mmap (NULL, m->n * nfrag * sizeof *m->frags,
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (m->frags == MAP_FAILED) {
      m->frags = NULL;
      munmap (m->e, m->n * sizeof *m->e);
      m->e = NULL;
      return -1;
    }
    m->nfrag = nfrag;
  }
  for (unsigned i = 0; i < EXTENT_MAP_STRIPES; i++)
    pthread_rwlock_init (&m->locks[i], NULL);
  return 0;
}

/* Waits for lane writes or asynchronous reads to drain, of any stripe
 * of any map: rare (a stripe's write right after a lane write or an
 * asynchronous read of it), so one lock and one condition do.
 */
static pthread_mutex_t extent_map_drain_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t extent_map_drained = PTHREAD_COND_INITIALIZER;

/* Wait until counter *w (one stripe's lane_writes or reads) is 0. */
static void
extent_map_drain_count (uint32_t *w)
{
  if ((__atomic_load_n (w, __ATOMIC_ACQUIRE) & ~EXTENT_MAP_WAITED) == 0)
    return;
  pthread_mutex_lock (&extent_map_drain_lock);
  /* The mark makes the last one out signal; set under the mutex, so
   * that signal cannot come between the test and the wait.
   */
  while ((__atomic_fetch_or (w, EXTENT_MAP_WAITED, __ATOMIC_ACQ_REL) &
          ~EXTENT_MAP_WAITED) != 0)
    pthread_cond_wait (&extent_map_drained, &extent_map_drain_lock);
  /* None in flight, and none can start while the stripe lock is held:
   * nobody else can be signalled for this stripe now.
   */
  __atomic_fetch_and (w, ~EXTENT_MAP_WAITED, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&extent_map_drain_lock);
}

/* Lower counter *w by one; wake the drainers if one waits. */
static void
extent_map_count_done (uint32_t *w)
{
  uint32_t old = __atomic_fetch_sub (w, 1, __ATOMIC_ACQ_REL);

  if (old & EXTENT_MAP_WAITED) {
    pthread_mutex_lock (&extent_map_drain_lock);
    pthread_cond_broadcast (&extent_map_drained);
    pthread_mutex_unlock (&extent_map_drain_lock);
  }
}

void
extent_map_drain_lanes (struct extent_map *m, uint64_t idx)
{
  extent_map_drain_count (&m->lane_writes[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_drain_reads (struct extent_map *m, uint64_t idx)
{
  extent_map_drain_count (&m->reads[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_drain_unsent (struct extent_map *m, uint64_t idx)
{
  extent_map_drain_count (&m->unsent[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_unsent_done (void *map, uint64_t idx)
{
  struct extent_map *m = map;

  extent_map_count_done (&m->unsent[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_read_done (struct extent_map *m, uint64_t idx)
{
  extent_map_count_done (&m->reads[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_write_done (struct extent_map *m, uint64_t idx, bool on_lanes)
{
  if (!on_lanes) {
    __atomic_fetch_sub (&m->shared_writes[idx % EXTENT_MAP_STRIPES], 1,
                        __ATOMIC_ACQ_REL);
    return;
  }
  extent_map_count_done (&m->lane_writes[idx % EXTENT_MAP_STRIPES]);
}

void
extent_map_destroy (struct extent_map *m)
{
  if (m->e)
    munmap (m->e, m->n * sizeof *m->e);
  if (m->frags)
    munmap (m->frags, m->n * m->nfrag * sizeof *m->frags);
  m->frags = NULL;
  m->nfrag = 0;
  for (unsigned i = 0; i < EXTENT_MAP_STRIPES; i++)
    pthread_rwlock_destroy (&m->locks[i]);
  m->e = NULL;
}

void
extent_map_drop_replica (struct extent *e, unsigned r)
{
  for (unsigned i = r; i + 1 < e->nrep; i++)
    e->rep[i] = e->rep[i + 1];
  e->nrep--;
  memset (&e->rep[e->nrep], 0, sizeof e->rep[0]);
}

bool
extent_map_has_server (const struct extent *e, unsigned s)
{
  for (unsigned i = 0; i < e->nrep; i++)
    if (e->rep[i].server == s)
      return true;
  return false;
}
