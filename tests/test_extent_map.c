/* Unit test of the extent map (client/extent_map.c): sizing, index
 * arithmetic, lock striping, replica removal keeps the array packed,
 * has_server.
 */
#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "extent_map.h"

int
main (void)
{
  struct extent_map m;

  assert (extent_map_init (&m, 10 * 1024 * 1024 + 1, 1024 * 1024, 0) == 0);
  assert (m.n == 11);            /* a partial last extent counts */
  assert (m.shift == 20);
  assert (extent_map_index (&m, 0) == 0);
  assert (extent_map_index (&m, 1024 * 1024 - 1) == 0);
  assert (extent_map_index (&m, 1024 * 1024) == 1);
  assert (extent_map_index (&m, 10 * 1024 * 1024) == 10);
  for (uint64_t i = 0; i < m.n; i++)
    assert (m.e[i].nrep == 0);   /* unmapped at start */
  assert (extent_map_lock (&m, 1) ==
          extent_map_lock (&m, 1 + EXTENT_MAP_STRIPES));
  assert (extent_map_lock (&m, 1) != extent_map_lock (&m, 2));

  struct extent *e = &m.e[3];
  for (unsigned r = 0; r < 3; r++) {
    e->rep[r].handle = 100 + r;
    e->rep[r].server = 5 + r;
  }
  e->nrep = 3;
  assert (extent_map_has_server (e, 6));
  assert (!extent_map_has_server (e, 4));
  extent_map_drop_replica (e, 0);
  assert (e->nrep == 2 && e->rep[0].handle == 101 && e->rep[1].handle == 102);
  assert (e->rep[2].handle == 0);
  extent_map_drop_replica (e, 1);
  assert (e->nrep == 1 && e->rep[0].server == 6 && e->rep[1].handle == 0);
  assert (!extent_map_has_server (e, 7));
  extent_map_destroy (&m);

  /* A 1 TiB disk at 1 MiB: the map is reserved, not touched. */
  assert (extent_map_init (&m, UINT64_C (1) << 40, 1024 * 1024, 0) == 0);
  assert (m.n == UINT64_C (1) << 20);
  extent_map_destroy (&m);
  printf ("test_extent_map: PASS\n");
  return 0;
}
