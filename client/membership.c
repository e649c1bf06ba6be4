/* Membership: servers-file= lets an operator add and remove donors
 * while the pool runs.  The monitor calls membership_check every
 * heartbeat; when the file's identity (inode, size, mtime) changed it
 * is read again:
 *  - a server it gained gets the next free slot (servers are never
 *    moved: copies name them by index), or its old slot back if it was
 *    removed before, and is connected by the monitor like any down
 *    server; with every slot of the table taken (max-servers=, fixed
 *    at open) it is refused, and that is logged;
 *  - a server it lost is marked removed: placement skips it and
 *    recovery moves its copies elsewhere, copy before release, as for
 *    a drain (recovery.c); once it holds nothing of ours it is retired:
 *    disconnected and no longer reconnected;
 *  - a file that cannot be read or parsed, or that would leave fewer
 *    than `replicas` servers (K+M with redundancy=ec), changes nothing:
 *    the reason is logged once per change of the file.
 * Writing the file is the operator's side: write a new file and
 * rename it over the old one, so that no half-written list is read.
 *
 * Not here: moving copies (recovery.c), connecting (monitor.c,
 * donor.c), the file's syntax (config.c, rp_config_read_servers).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "donor.h"
#include "logging.h"
#include "membership.h"

/* Has the file changed since we last read it?  Stats it into *st. */
static bool
membership_changed (struct rp_pool *p, struct stat *st)
{
  if (stat (p->cfg.servers_file, st) == -1) {
    memset (st, 0, sizeof *st);
    st->st_ino = (ino_t) -1;  /* "missing" is a state of its own */
  }
  return st->st_ino != p->servers_file_st.st_ino ||
         st->st_dev != p->servers_file_st.st_dev ||
         st->st_size != p->servers_file_st.st_size ||
         st->st_mtim.tv_sec != p->servers_file_st.st_mtim.tv_sec ||
         st->st_mtim.tv_nsec != p->servers_file_st.st_mtim.tv_nsec;
}

int
membership_load (struct rp_pool *p, char *err, size_t errlen)
{
  struct stat st;

  if (p->cfg.servers_file == NULL)
    return 0;
  membership_changed (p, &st);
  if (rp_config_read_servers (&p->cfg, err, errlen) == -1)
    return -1;
  p->servers_file_st = st;
  return 0;
}

/* Both sides of a change are matched by address through sorted
 * arrays and binary search, so a file of thousands of servers costs
 * O(n log n) per change, not O(n^2) (monitor thread, when the file
 * changed; it may allocate).
 */
struct membership_slot {
  const char *addr;
  unsigned i;
};

static int
membership_cmp_slot (const void *a, const void *b)
{
  return strcmp (((const struct membership_slot *) a)->addr,
                 ((const struct membership_slot *) b)->addr);
}

static int
membership_cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The members (removed ones included), sorted by address; NULL when
 * out of memory (logged).
 */
static struct membership_slot *
membership_sorted (struct rp_pool *p, unsigned *n)
{
  struct membership_slot *m;

  *n = p->nservers;
  m = malloc ((*n ? *n : 1) * sizeof *m);
  if (m == NULL) {
    logging_msg (LOGGING_ERROR, "servers-file: out of memory: the servers"
                 " stay as they are");
    return NULL;
  }
  for (unsigned i = 0; i < *n; i++)
    m[i] = (struct membership_slot) { p->servers[i].addr, i };
  qsort (m, *n, sizeof *m, membership_cmp_slot);
  return m;
}

/* The slot of server addr in the sorted members m[0..n) (removed or
 * not), or -1.
 */
static int
membership_find (const struct membership_slot *m, unsigned n,
                 const char *addr)
{
  struct membership_slot key = { addr, 0 };
  const struct membership_slot *hit =
    bsearch (&key, m, n, sizeof *m, membership_cmp_slot);

  return hit ? (int) hit->i : -1;
}

/* Does list (sorted by membership_check) name addr? */
static bool
membership_is_listed (const struct rp_config *list, const char *addr)
{
  return bsearch (&addr, list->servers, list->nservers,
                  sizeof *list->servers, membership_cmp_str) != NULL;
}

/* Add the servers list names that are not members, while the table
 * (max-servers= slots, made at open) has room; one line for those
 * refused.
 */
static void
membership_add (struct rp_pool *p, const struct rp_config *list)
{
  const char *first_refused = NULL;
  unsigned refused = 0, nm;
  /* The members before this change: the list names each server once
   * (config.c refuses duplicates), so those added here need no look.
   */
  struct membership_slot *m = membership_sorted (p, &nm);

  if (m == NULL)
    return;
  /* Lanes: the servers known and those new now share what is left. */
  unsigned nnew = 0;
  for (unsigned k = 0; k < list->nservers; k++)
    nnew += membership_find (m, nm, list->servers[k]) < 0;
  if (nm + nnew > 0)
    p->lanes_share = RP_LANES_TOTAL / (nm + nnew);
  for (unsigned k = 0; k < list->nservers; k++) {
    const char *addr = list->servers[k];
    int i = membership_find (m, nm, addr);
    if (i >= 0) {
      struct donor *s = &p->servers[i];
      if (atomic_load (&s->is_removed)) {
        atomic_store (&s->is_retired, false);
        atomic_store (&s->is_removed, false);
        logging_msg (LOGGING_INFO, "servers-file: server %s is back in the"
                     " pool", addr);
      }
      continue;
    }
    unsigned n = p->nservers;
    if (n == p->max_servers) {
      if (refused++ == 0)
        first_refused = addr;
      continue;
    }
    if (donor_init (&p->servers[n], p, n, addr) == -1) {
      logging_msg (LOGGING_ERROR, "servers-file: server %s not added: %s",
                   addr, strerror (errno));
      continue;
    }
    /* The slot is whole before anyone may see it (nservers is read
     * without a lock).
     */
    atomic_store (&p->nservers, n + 1);
    logging_msg (LOGGING_INFO, "servers-file: server %s added", addr);
  }
  free (m);
  if (refused)
    logging_msg (LOGGING_ERROR, "servers-file: %u server(s) not added (%s%s):"
                 " the pool's table is full, max-servers=%u slots, removed"
                 " servers included; open the pool with a larger"
                 " max-servers= (at most %d)", refused, first_refused,
                 refused > 1 ? " and more" : "", p->max_servers,
                 RP_MAX_SERVERS);
}

/* Mark removed the members list does not name, unless that leaves
 * fewer than a stripe needs: `replicas` servers, or K+M with
 * redundancy=ec.
 */
static void
membership_remove (struct rp_pool *p, const struct rp_config *list)
{
  unsigned staying = 0, leaving = 0;
  unsigned need = p->cfg.ec_k ? p->cfg.ec_k + p->cfg.ec_m : p->cfg.replicas;

  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (atomic_load (&s->is_removed))
      continue;
    if (membership_is_listed (list, s->addr))
      staying++;
    else
      leaving++;
  }
  if (leaving == 0)
    return;
  if (staying < need) {
    if (p->cfg.ec_k)
      logging_msg (LOGGING_ERROR, "servers-file: %s would leave %u servers,"
                   " redundancy=ec:%u+%u needs %u: no server removed",
                   p->cfg.servers_file, staying, p->cfg.ec_k, p->cfg.ec_m,
                   need);
    else
      logging_msg (LOGGING_ERROR, "servers-file: %s would leave %u servers,"
                   " replicas=%u needs %u: no server removed",
                   p->cfg.servers_file, staying, p->cfg.replicas, need);
    return;
  }
  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (atomic_load (&s->is_removed) || membership_is_listed (list, s->addr))
      continue;
    atomic_store (&s->is_removed, true);
    logging_msg (LOGGING_INFO, "servers-file: server %s removed: moving this"
                 " client's copies off it", s->addr);
  }
}

/* Copies of ours in the map on server i (a racy count: only zero
 * matters, and nothing new goes to a removed server).
 */
static uint64_t
membership_copies_on (struct rp_pool *p, unsigned i)
{
  uint64_t n = 0;

  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    unsigned nrep;
    const struct replica *rep = extent_map_copies (&p->map, idx, &nrep);
    for (unsigned r = 0; r < nrep; r++)
      if (__atomic_load_n (&rep[r].server, __ATOMIC_RELAXED) == i &&
          __atomic_load_n (&rep[r].handle, __ATOMIC_RELAXED))
        n++;
  }
  return n;
}

/* Retire removed servers that hold nothing of ours. */
static void
membership_retire (struct rp_pool *p)
{
  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (!atomic_load (&s->is_removed) || atomic_load (&s->is_retired) ||
        membership_copies_on (p, i) > 0)
      continue;
    atomic_store (&s->is_retired, true);
    donor_down (s, "removed from servers-file");
    logging_msg (LOGGING_INFO, "servers-file: server %s holds nothing of"
                 " ours any more: disconnected", s->addr);
  }
}

void
membership_check (struct rp_pool *p)
{
  struct rp_config list = { .servers_file = p->cfg.servers_file };
  struct stat st;
  char err[256];

  if (p->cfg.servers_file == NULL)
    return;
  if (membership_changed (p, &st)) {
    p->servers_file_st = st;
    if (rp_config_read_servers (&list, err, sizeof err) == -1)
      logging_msg (LOGGING_ERROR, "%s: the servers stay as they are", err);
    else {
      /* Added in the file's order; removal looks names up in a sorted
       * copy of the list.
       */
      struct rp_config sorted = list;
      sorted.servers = malloc ((list.nservers ? list.nservers : 1) *
                               sizeof *sorted.servers);
      membership_add (p, &list);
      if (sorted.servers == NULL)
        logging_msg (LOGGING_ERROR, "servers-file: out of memory: no server"
                     " removed");
      else {
        memcpy (sorted.servers, list.servers,
                list.nservers * sizeof *sorted.servers);
        qsort (sorted.servers, sorted.nservers, sizeof *sorted.servers,
               membership_cmp_str);
        membership_remove (p, &sorted);
        free (sorted.servers);
      }
    }
    for (unsigned i = 0; i < list.nservers; i++)
      free (list.servers[i]);
    free (list.servers);
  }
  membership_retire (p);
}
