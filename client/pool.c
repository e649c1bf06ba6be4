/* The pool: rp_pool_open and rp_pool_close, and what each step of the
 * open undoes on failure; rp_pool_server_info.
 *
 * Open, in order: a deep copy of the configuration, the extent map,
 * the owner (session) id, the cluster key, the recovery buffer, the
 * backup file, the encryption tables, the server table (max-servers=
 * slots, engine.h) with the scratch sized by it, the donors; then
 * every server is connected at once (monitor_connect_all) and, with
 * enough of them up for `replicas`, the monitor thread starts.  Close
 * runs it backwards, freeing every extent on the servers first.
 *
 * Server states: up (every connection connected and HELLO'd) or down.
 * Any connection failure takes the whole server down, and the monitor
 * brings it back as a unit; this keeps "one extent, one connection per
 * server" ordering simple across reconnects.  What a server still holds
 * when it comes back is donor.c's decision, by the copy-state invariant
 * (replica.h).
 *
 * Not here: the data path (io.c), the background work (monitor.c,
 * recovery.c), the figures (stats.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "backup.h"
#include "donor.h"
#include "ecio.h"
#include "logging.h"
#include "membership.h"
#include "monitor.h"
#include "placement.h"
#include "recovery.h"
#include "replica.h"
#include "util.h"

/* Report the servers that did not answer, and fail the open if fewer
 * than `replicas` did.  0, or -1 with the message in err.
 */
static int
pool_check_up (struct rp_pool *p, unsigned up, char *err, size_t errlen)
{
  size_t used = 0;

  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (atomic_load (&s->is_up))
      continue;
    atomic_store (&s->down_since_ms, rp_now_ms ());
    logging_msg (LOGGING_WARN, "server %s: %s", s->addr, s->last_connect_err);
    if (used < errlen)
      used += snprintf (err + used, errlen - used, "%s%s: %s",
                        used ? "; " : "", s->addr, s->last_connect_err);
  }
  if (up >= p->cfg.replicas)
    return 0;
  if (used < errlen)
    snprintf (err + used, errlen - used, " (only %u of %u servers answered;"
              " replicas=%u needs %u)", up, p->nservers, p->cfg.replicas,
              p->cfg.replicas);
  return -1;
}

static void
pool_init_locks (struct rp_pool *p)
{
  pthread_condattr_t attr;

  pthread_mutex_init (&p->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &attr);
  pthread_mutex_init (&p->up_lock, NULL);
  pthread_cond_init (&p->up_cond, &attr);
  pthread_condattr_destroy (&attr);
  pthread_mutex_init (&p->place_lock, NULL);
}

static void
pool_destroy_locks (struct rp_pool *p)
{
  pthread_mutex_destroy (&p->lock);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->up_lock);
  pthread_cond_destroy (&p->up_cond);
  pthread_mutex_destroy (&p->place_lock);
}

/* The server table and the scratch sized by it (engine.h), for the
 * servers p->cfg lists now (servers-file= read).  0, or -1 with the
 * message in err.
 */
static int
pool_alloc_table (struct rp_pool *p, char *err, size_t errlen)
{
  unsigned n = p->cfg.max_servers;

  if (n == 0)
    n = p->cfg.nservers > RP_MAX_SERVERS_DEFAULT ? p->cfg.nservers
                                                 : RP_MAX_SERVERS_DEFAULT;
  /* rp_config_check saw the list; a servers-file= may have grown since. */
  if (p->cfg.nservers > n) {
    snprintf (err, errlen, "max-servers: %u servers listed, more than"
              " max-servers=%u", p->cfg.nservers, n);
    return -1;
  }
  p->servers = calloc (n, sizeof *p->servers);
  p->place_cand = calloc (n, sizeof *p->place_cand);
  p->ping_calls = calloc (n, sizeof *p->ping_calls);
  p->server_state = calloc (n, sizeof *p->server_state);
  p->copies_on = calloc (n, sizeof *p->copies_on);
  p->leaving_on = calloc (n, sizeof *p->leaving_on);
  if (p->servers == NULL || p->place_cand == NULL || p->ping_calls == NULL ||
      p->server_state == NULL || p->copies_on == NULL ||
      p->leaving_on == NULL) {
    snprintf (err, errlen, "out of memory for a table of %u servers"
              " (max-servers=)", n);
    return -1;
  }
  p->max_servers = n;
  return 0;
}

struct rp_pool *
rp_pool_open (const struct rp_config *cfg, char *err, size_t errlen)
{
  struct rp_pool *p;
  unsigned up;

  if (rp_config_check (cfg, err, errlen) == -1)
    return NULL;
  p = calloc (1, sizeof *p);
  if (p == NULL || rp_config_copy (&p->cfg, cfg) == -1) {
    snprintf (err, errlen, "out of memory");
    goto out_free;
  }
  p->backup_fd = -1;
  if (extent_map_init (&p->map, cfg->size_bytes, cfg->extent_size,
                       cfg->ec_k + cfg->ec_m) == -1) {
    snprintf (err, errlen, "extent map for size=%" PRIu64 ": %s",
              cfg->size_bytes, strerror (errno));
    goto out_free;
  }
  /* The owner id is what keeps other sessions out of our extents on
   * servers without a key: it must be unpredictable.
   */
  if (rp_random_bytes (p->owner, sizeof p->owner) == -1) {
    snprintf (err, errlen, "getrandom: %s", strerror (errno));
    goto out_destroy_map;
  }
  if (donor_load_key (cfg->key_file, &p->key, err, errlen) == -1)
    goto out_destroy_map;
  /* Recovery must not allocate when it is needed (under memory
   * pressure, a server lost): its buffer is made now.
   */
  p->recovery_buf = malloc (cfg->extent_size < RP_MAX_PAYLOAD
                            ? cfg->extent_size : RP_MAX_PAYLOAD);
  if (p->recovery_buf == NULL) {
    snprintf (err, errlen, "out of memory");
    goto out_free_key;
  }
  if (backup_open (p, err, errlen) == -1)
    goto out_free_recovery_buf;
  if (cfg->is_encrypted && crypt_init (&p->crypt, cfg->size_bytes) == -1) {
    snprintf (err, errlen, "encrypt=on: %s", strerror (errno));
    goto out_close_backup;
  }
  pool_init_locks (p);
  if (ecio_open (p, err, errlen) == -1)
    goto out_close;
  if (membership_load (p, err, errlen) == -1 ||
      pool_alloc_table (p, err, errlen) == -1)
    goto out_close;
  p->lanes_left = RP_LANES_TOTAL;
  p->lanes_share = RP_LANES_TOTAL / (p->cfg.nservers ? p->cfg.nservers : 1);
  for (unsigned i = 0; i < p->cfg.nservers; i++) {
    if (donor_init (&p->servers[i], p, i, p->cfg.servers[i]) == -1) {
      snprintf (err, errlen, "out of memory");
      goto out_close;
    }
    p->nservers = i + 1;
  }
  if (recovery_start (p) == -1) {
    snprintf (err, errlen, "recovery threads: %s", strerror (errno));
    goto out_close;
  }
  up = monitor_connect_all (p);
  if (pool_check_up (p, up, err, errlen) == -1)
    goto out_close;
  if (monitor_start (p) == -1) {
    snprintf (err, errlen, "creating the monitor thread: %s", strerror (errno));
    goto out_close;
  }
  char redundancy[48];
  if (cfg->ec_k)
    snprintf (redundancy, sizeof redundancy, "erasure coding %u+%u",
              cfg->ec_k, cfg->ec_m);
  else
    snprintf (redundancy, sizeof redundancy, "replicas %u", cfg->replicas);
  logging_msg (LOGGING_INFO,
               "pool open: %u of %u servers up (table of %u), size %" PRIu64
               ", extent-size %" PRIu32 ", %s",
               up, p->nservers, p->max_servers, cfg->size_bytes,
               cfg->extent_size, redundancy);
  return p;

 out_close:
  rp_pool_close (p);
  return NULL;
 out_close_backup:
  backup_close (p);
 out_free_recovery_buf:
  free (p->recovery_buf);
 out_free_key:
  rp_key_free (p->key);
 out_destroy_map:
  extent_map_destroy (&p->map);
 out_free:
  if (p)
    rp_config_free (&p->cfg);
  free (p);
  return NULL;
}

/* Free every mapped extent on its servers, pipelined per server. */
static void
pool_free_all (struct rp_pool *p)
{
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    unsigned nrep;
    struct replica *rep = extent_map_copies (&p->map, idx, &nrep);
    if (nrep == 0)
      continue;
    for (unsigned r = 0; r < nrep; r++) {
      struct donor *s = &p->servers[rep[r].server];
      if (rep[r].handle && atomic_load (&s->is_up) &&
          atomic_load (&s->epoch) == rep[r].epoch)
        donor_add_orphan (s, rep[r].handle);
    }
    memset (rep, 0, nrep * sizeof *rep);
    memset (&p->map.e[idx], 0, sizeof p->map.e[idx]);
    /* Flush a server's list when it is full. */
    for (unsigned i = 0; i < p->nservers; i++)
      if (p->servers[i].norphans >= DONOR_ORPHANS - REPLICA_ALLOC_MAX)
        donor_free_orphans (p, &p->servers[i]);
  }
  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      donor_free_orphans (p, &p->servers[i]);
}

void
rp_pool_close (struct rp_pool *p)
{
  if (p == NULL)
    return;
  monitor_stop (p);
  recovery_stop (p);
  if (p->map.e)
    pool_free_all (p);
  for (unsigned i = 0; i < p->nservers; i++)
    donor_fini (&p->servers[i]);
  free (p->servers);
  free (p->place_cand);
  free (p->ping_calls);
  free (p->server_state);
  free (p->copies_on);
  free (p->leaving_on);
  pool_destroy_locks (p);
  crypt_destroy (&p->crypt);
  ecio_close (p);
  backup_close (p);
  free (p->recovery_buf);
  rp_key_free (p->key);
  extent_map_destroy (&p->map);
  rp_config_free (&p->cfg);
  free (p);
}

int
rp_pool_server_info (struct rp_pool *p, unsigned i, struct rp_server_info *info)
{
  memset (info, 0, sizeof *info);
  if (i >= p->nservers) {
    errno = EINVAL;
    return -1;
  }
  if (!atomic_load (&p->servers[i].is_up)) {
    snprintf (info->error, sizeof info->error, "down");
    return -1;
  }
  return donor_stat (&p->servers[i].conns[0], p->cfg.timeout_ms, info);
}
