/* metrics-file=PATH: the pool's figures in the Prometheus text format
 * (version 0.0.4), for node_exporter's textfile collector.  The
 * monitor thread calls metrics_write_file every heartbeat; it formats
 * into a buffer on its own stack and writes PATH.tmp with write(2),
 * then renames it over PATH, so a scrape never sees half a file and
 * nothing is allocated.
 *
 * Every series carries disk="NAME", NAME being PATH's file name
 * without ".prom": two disks on one host write two files, and the
 * collector merges them without a clash.  Names follow Prometheus'
 * conventions: rampool_client_ prefix, base units (bytes, seconds),
 * _total on counters, labels for server, state and op.
 *
 * Not here: the figures themselves (stats.c, latency.c, the donors'
 * states in engine.h); the memserver's metrics (memserver/metrics.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "latency.h"
#include "metrics.h"
#include "stats.h"

/* The exposition as it is built: flushed to fd whenever it fills. */
struct metrics_out {
  int fd;
  bool is_failed;              /* a write failed: the file is not renamed */
  size_t len;
  char disk[128];              /* the disk label's value, escaped */
  char buf[16384];
};

static void
metrics_flush (struct metrics_out *o)
{
  size_t off = 0;

  while (off < o->len && !o->is_failed) {
    ssize_t n = write (o->fd, o->buf + off, o->len - off);
    if (n > 0)
      off += n;
    else if (n == -1 && errno == EINTR)
      continue;
    else
      o->is_failed = true;
  }
  o->len = 0;
}

static void __attribute__ ((format (printf, 2, 3)))
metrics_printf (struct metrics_out *o, const char *fmt, ...)
{
  va_list ap;
  int n;

  /* Every line is far shorter than this: flush before, never split. */
  if (sizeof o->buf - o->len < 1024)
    metrics_flush (o);
  va_start (ap, fmt);
  n = vsnprintf (o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
  va_end (ap);
  if (n < 0 || (size_t) n >= sizeof o->buf - o->len)
    o->is_failed = true;  /* cannot happen with the lines written here */
  else
    o->len += n;
}

/* A label value as the text format wants it: \, " and newline escaped. */
static void
metrics_escape (const char *in, char *out, size_t outlen)
{
  size_t j = 0;

  for (; *in && j + 3 < outlen; in++) {
    if (*in == '\\' || *in == '"') {
      out[j++] = '\\';
      out[j++] = *in;
    }
    else if (*in == '\n') {
      out[j++] = '\\';
      out[j++] = 'n';
    }
    else
      out[j++] = *in;
  }
  out[j] = '\0';
}

static void
metrics_head (struct metrics_out *o, const char *name, const char *type,
              const char *help)
{
  metrics_printf (o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A server's state for the metrics: one of these, in this order of
 * precedence (a draining server may also be down).
 */
static const char *const metrics_server_states[] = {
  "up", "down", "draining", "removed", "retired", "parked"
};
#define METRICS_NSTATES 6

static unsigned
metrics_server_state (struct donor *s)
{
  if (atomic_load (&s->is_retired))
    return 4;
  if (atomic_load (&s->is_removed))
    return 3;
  if (atomic_load (&s->is_draining))
    return 2;
  if (atomic_load (&s->park) == PARK_DONE)
    return 5;
  return atomic_load (&s->is_up) ? 0 : 1;
}

/* Server i's address as a label value, into addr[0..len). */
static const char *
metrics_server_addr (struct rp_pool *p, unsigned i, char *addr, size_t len)
{
  metrics_escape (p->servers[i].addr, addr, len);
  return addr;
}

/* The servers' series.  Their states are taken once, into the pool's
 * server_state (a byte per slot: nothing sized by the servers on this
 * stack), so that the counts by state and each server's state agree;
 * an address is escaped again for each series that names it.
 */
static void
metrics_servers (struct metrics_out *o, struct rp_pool *p)
{
  unsigned n = atomic_load (&p->nservers);
  uint64_t by_state[METRICS_NSTATES] = { 0 };
  uint8_t *state = p->server_state;
  char addr[200];

  for (unsigned i = 0; i < n; i++) {
    state[i] = metrics_server_state (&p->servers[i]);
    by_state[state[i]]++;
  }
  metrics_head (o, "rampool_client_servers", "gauge",
                "Memservers of the pool by state, as this client sees them"
                " (draining and removed: its copies are being moved off).");
  for (unsigned k = 0; k < METRICS_NSTATES; k++)
    metrics_printf (o, "rampool_client_servers{disk=\"%s\",state=\"%s\"} %"
                    PRIu64 "\n", o->disk, metrics_server_states[k],
                    by_state[k]);
  metrics_head (o, "rampool_client_server_up", "gauge",
                "1 when the memserver is connected and its handshake done.");
  for (unsigned i = 0; i < n; i++)
    metrics_printf (o, "rampool_client_server_up{disk=\"%s\",server=\"%s\"}"
                    " %d\n", o->disk,
                    metrics_server_addr (p, i, addr, sizeof addr),
                    atomic_load (&p->servers[i].is_up) ? 1 : 0);
  metrics_head (o, "rampool_client_server_state", "gauge",
                "1 for the memserver's state now, 0 for the others.");
  for (unsigned i = 0; i < n; i++)
    for (unsigned k = 0; k < METRICS_NSTATES; k++)
      metrics_printf (o, "rampool_client_server_state{disk=\"%s\","
                      "server=\"%s\",state=\"%s\"} %d\n", o->disk,
                      metrics_server_addr (p, i, addr, sizeof addr),
                      metrics_server_states[k], state[i] == k);
  metrics_head (o, "rampool_client_server_epoch", "gauge",
                "Times what the memserver held for this client was found"
                " gone (restarts, expired sessions) since the pool opened.");
  for (unsigned i = 0; i < n; i++)
    metrics_printf (o, "rampool_client_server_epoch{disk=\"%s\",server=\"%s\"}"
                    " %u\n", o->disk,
                    metrics_server_addr (p, i, addr, sizeof addr),
                    atomic_load (&p->servers[i].epoch));
  metrics_head (o, "rampool_client_server_free_bytes", "gauge",
                "Bytes the memserver could still give, as it last said.");
  for (unsigned i = 0; i < n; i++)
    metrics_printf (o, "rampool_client_server_free_bytes{disk=\"%s\","
                    "server=\"%s\"} %" PRIu64 "\n", o->disk,
                    metrics_server_addr (p, i, addr, sizeof addr),
                    (uint64_t) atomic_load (&p->servers[i].free_bytes));
}

static void
metrics_extents (struct metrics_out *o, struct rp_pool *p,
                 const struct rp_pool_stats *st)
{
  metrics_head (o, "rampool_client_extents", "gauge",
                "Extents of the disk by state: healthy (every copy good),"
                " degraded (fewer, at least one), unreachable (no good copy"
                " now, one may come back), lost, unmapped (never written or"
                " trimmed).  With redundancy=ec:K+M, stripes: degraded with"
                " at least K good fragments, unreachable or lost with fewer.");
  metrics_printf (o, "rampool_client_extents{disk=\"%s\",state=\"healthy\"} %"
                  PRIu64 "\n", o->disk, st->extents_healthy);
  metrics_printf (o, "rampool_client_extents{disk=\"%s\",state=\"degraded\"}"
                  " %" PRIu64 "\n", o->disk, st->extents_degraded);
  metrics_printf (o, "rampool_client_extents{disk=\"%s\","
                  "state=\"unreachable\"} %" PRIu64 "\n", o->disk,
                  st->extents_unreachable);
  metrics_printf (o, "rampool_client_extents{disk=\"%s\",state=\"lost\"} %"
                  PRIu64 "\n", o->disk, st->extents_lost);
  metrics_printf (o, "rampool_client_extents{disk=\"%s\",state=\"unmapped\"}"
                  " %" PRIu64 "\n", o->disk, st->extents - st->extents_mapped);
  metrics_head (o, "rampool_client_disk_size_bytes", "gauge",
                "Size of the virtual disk (size=).");
  metrics_printf (o, "rampool_client_disk_size_bytes{disk=\"%s\"} %" PRIu64
                  "\n", o->disk, p->cfg.size_bytes);
  metrics_head (o, "rampool_client_extent_size_bytes", "gauge",
                "Size of one extent (extent-size=).");
  metrics_printf (o, "rampool_client_extent_size_bytes{disk=\"%s\"} %" PRIu32
                  "\n", o->disk, p->cfg.extent_size);
  if (p->cfg.ec_k) {
    /* redundancy=ec: each extent is a stripe of K+M fragments, and the
     * extents above count stripes (healthy: every fragment good,
     * degraded: at least K).
     */
    metrics_head (o, "rampool_client_ec_fragments", "gauge",
                  "redundancy=ec:K+M: data (K) and parity (M) fragments of"
                  " each stripe.");
    metrics_printf (o, "rampool_client_ec_fragments{disk=\"%s\","
                    "kind=\"data\"} %u\n", o->disk, p->cfg.ec_k);
    metrics_printf (o, "rampool_client_ec_fragments{disk=\"%s\","
                    "kind=\"parity\"} %u\n", o->disk, p->cfg.ec_m);
  }
  else {
    metrics_head (o, "rampool_client_replicas", "gauge",
                  "Copies of each extent wanted (replicas=).");
    metrics_printf (o, "rampool_client_replicas{disk=\"%s\"} %u\n", o->disk,
                    p->cfg.replicas);
  }
  metrics_head (o, "rampool_client_blocks_in_doubt", "gauge",
                "encrypt=on: blocks whose last write timed out on every copy,"
                " not yet settled by recovery.");
  metrics_printf (o, "rampool_client_blocks_in_doubt{disk=\"%s\"} %" PRIu64
                  "\n", o->disk, st->blocks_in_doubt);
}

/* The counters of RP_POOL_COUNTERS, each as rampool_client_NAME_total. */
static void
metrics_counters (struct metrics_out *o, const struct rp_pool_stats *st)
{
#define METRICS_COUNTER(name, help) \
  metrics_printf (o, "# HELP rampool_client_" #name "_total %s.\n" \
                  "# TYPE rampool_client_" #name "_total counter\n" \
                  "rampool_client_" #name "_total{disk=\"%s\"} %" PRIu64 \
                  "\n", help, o->disk, st->name);
  RP_POOL_COUNTERS (METRICS_COUNTER)
#undef METRICS_COUNTER
}

/* Requests, bytes, errors and the latency histogram, per op. */
static void
metrics_requests (struct metrics_out *o, struct rp_pool *p)
{
  struct latency *l = &p->latency;

  metrics_head (o, "rampool_client_requests_total", "counter",
                "Requests to the disk (one per read, write, trim or zero"
                " call), by op.");
  for (unsigned op = 0; op < LATENCY_NOPS; op++) {
    uint64_t n = 0;
    for (unsigned b = 0; b <= LATENCY_NBOUNDS; b++)
      n += atomic_load (&l->op[op].buckets[b]);
    metrics_printf (o, "rampool_client_requests_total{disk=\"%s\",op=\"%s\"}"
                    " %" PRIu64 "\n", o->disk, latency_op_name (op), n);
  }
  metrics_head (o, "rampool_client_request_errors_total", "counter",
                "Requests that failed, by op.");
  for (unsigned op = 0; op < LATENCY_NOPS; op++)
    metrics_printf (o, "rampool_client_request_errors_total{disk=\"%s\","
                    "op=\"%s\"} %" PRIu64 "\n", o->disk, latency_op_name (op),
                    (uint64_t) atomic_load (&l->op[op].errors));
  metrics_head (o, "rampool_client_request_bytes_total", "counter",
                "Bytes requested, by op.");
  for (unsigned op = 0; op < LATENCY_NOPS; op++)
    metrics_printf (o, "rampool_client_request_bytes_total{disk=\"%s\","
                    "op=\"%s\"} %" PRIu64 "\n", o->disk, latency_op_name (op),
                    (uint64_t) atomic_load (&l->op[op].bytes));
  metrics_head (o, "rampool_client_request_duration_seconds", "histogram",
                "Time from a request's call to its return, by op.");
  for (unsigned op = 0; op < LATENCY_NOPS; op++) {
    const char *name = latency_op_name (op);
    uint64_t cum = 0;
    for (unsigned b = 0; b < LATENCY_NBOUNDS; b++) {
      cum += atomic_load (&l->op[op].buckets[b]);
      metrics_printf (o, "rampool_client_request_duration_seconds_bucket{"
                      "disk=\"%s\",op=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                      o->disk, name, latency_bounds_ns[b] / 1e9, cum);
    }
    cum += atomic_load (&l->op[op].buckets[LATENCY_NBOUNDS]);
    metrics_printf (o, "rampool_client_request_duration_seconds_bucket{"
                    "disk=\"%s\",op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                    o->disk, name, cum);
    metrics_printf (o, "rampool_client_request_duration_seconds_sum{"
                    "disk=\"%s\",op=\"%s\"} %.9f\n", o->disk, name,
                    atomic_load (&l->op[op].sum_ns) / 1e9);
    metrics_printf (o, "rampool_client_request_duration_seconds_count{"
                    "disk=\"%s\",op=\"%s\"} %" PRIu64 "\n", o->disk, name,
                    cum);
  }
}

void
metrics_write_file (struct rp_pool *p)
{
  const char *path = p->cfg.metrics_file;
  const char *base = strrchr (path, '/');
  struct metrics_out o;
  struct rp_pool_stats st;
  char tmp[4096], disk[128];
  size_t n;

  base = base ? base + 1 : path;
  n = strlen (base);
  if (n > 5 && strcmp (base + n - 5, ".prom") == 0)
    n -= 5;
  snprintf (disk, sizeof disk, "%.*s", (int) n, base);
  if (snprintf (tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return;
  stats_get (p, &st);
  o.len = 0;
  o.is_failed = false;
  metrics_escape (disk, o.disk, sizeof o.disk);
  /* O_NOFOLLOW: a link planted at PATH.tmp must not redirect the write. */
  o.fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
               0644);
  if (o.fd == -1)
    return;
  metrics_servers (&o, p);
  metrics_extents (&o, p, &st);
  metrics_counters (&o, &st);
  metrics_requests (&o, p);
  metrics_flush (&o);
  if (close (o.fd) == 0 && !o.is_failed)
    rename (tmp, path);
  else
    unlink (tmp);
}
