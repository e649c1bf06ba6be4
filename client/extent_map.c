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
