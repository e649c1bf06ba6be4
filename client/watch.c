/* rampool status --watch and --json: a live view of a pool for people
 * (a table redrawn in place every second, 80 columns wide) and the same
 * figures for scripts (one JSON object per refresh).
 *
 * Each refresh asks every memserver for its STAT (state, use, extents,
 * clients) and, given --pool-stats=F (the plugin's stats-file=) or
 * --metrics-file=F (its metrics-file=), reads the disk's view: extents
 * healthy / degraded / unreachable / lost, the servers as the disk sees
 * them, and counters whose change between two refreshes gives IOPS,
 * MiB/s and recovery's pace, hence an ETA for the extents still to
 * repair.
 *
 * Not here: the one-shot table (rampool.c's status), the files' writers
 * (monitor.c, metrics.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rampool/client.h"
#include "rampool/protocol.h"
#include "util.h"
#include "watch.h"

/* The disk's view, from the plugin's file. */
struct watch_disk {
  bool is_read;                /* the file was there and read */
  uint64_t extents, mapped, healthy, degraded, unreachable, lost;
  uint64_t ec_k, ec_m;               /* redundancy=ec: stripes */
  uint64_t recovered, migrated;      /* counters */
  uint64_t reads, writes;            /* requests (metrics) or extent
                                        parts (stats file) */
  uint64_t read_bytes, write_bytes;  /* metrics file only */
  bool has_bytes;
};

struct watch_server {
  char addr[160];
  bool is_up;
  struct rp_server_info info;
  char disk_state[32];         /* as the disk's file says, "" if it does
                                  not name this server */
};

struct watch {
  const char *key_file;
  const char *disk_path;
  bool is_metrics;             /* disk_path is a metrics-file= */
  bool is_json, is_tty;
  unsigned timeout_ms;
  struct watch_server *servers;  /* those named, as many as named */
  unsigned nservers, servers_cap;
  struct watch_disk disk, prev;
  uint64_t now_ms, prev_ms;
  double recovery_rate;        /* copies per second, smoothed */
};

static volatile sig_atomic_t watch_is_stopping;

static void
watch_on_signal (int sig)
{
  watch_is_stopping = 1;
}

/* The disk's file names server addr in state: kept for the server of
 * that address among those named, if any (the view shows no other).
 */
static void
watch_disk_state (struct watch *w, const char *addr, const char *state)
{
  for (unsigned i = 0; i < w->nservers; i++)
    if (strcmp (w->servers[i].addr, addr) == 0)
      snprintf (w->servers[i].disk_state, sizeof w->servers[i].disk_state,
                "%s", state);
}

/* One "name value" line of the stats file. */
static void
watch_stats_line (struct watch *w, struct watch_disk *d, const char *line)
{
  char name[64], addr[160], state[16], extra[16] = "";
  uint64_t v;

  if (sscanf (line, "server %159s %15s epoch %*u %15s", addr, state,
              extra) >= 2) {
    watch_disk_state (w, addr, extra[0] ? extra : state);
    return;
  }
  if (sscanf (line, "%63s %" SCNu64, name, &v) != 2)
    return;
#define WATCH_SET(field, key) if (strcmp (name, key) == 0) d->field = v;
  WATCH_SET (extents, "extents")
  WATCH_SET (mapped, "extents_mapped")
  WATCH_SET (healthy, "extents_healthy")
  WATCH_SET (degraded, "extents_degraded")
  WATCH_SET (unreachable, "extents_unreachable")
  WATCH_SET (lost, "extents_lost")
  WATCH_SET (ec_k, "ec_data_fragments")
  WATCH_SET (ec_m, "ec_parity_fragments")
  WATCH_SET (recovered, "recovered")
  WATCH_SET (migrated, "migrated")
  WATCH_SET (reads, "reads")
  WATCH_SET (writes, "writes")
#undef WATCH_SET
}

/* The value of label `label` in a series' label set, into out. */
static bool
watch_label (const char *labels, const char *label, char *out, size_t len)
{
  char key[64];
  const char *p;

  snprintf (key, sizeof key, "%s=\"", label);
  p = strstr (labels, key);
  if (p == NULL || (p != labels && p[-1] != '{' && p[-1] != ','))
    return false;
  p += strlen (key);
  size_t n = strcspn (p, "\"");
  if (n >= len)
    n = len - 1;
  memcpy (out, p, n);
  out[n] = '\0';
  return true;
}

/* One line of the metrics file (metrics.c's names). */
static void
watch_metrics_line (struct watch *w, struct watch_disk *d, const char *line)
{
  char name[96], state[32], op[16], addr[160];
  const char *brace, *space;
  double v;

  if (line[0] == '#')
    return;
  space = strrchr (line, ' ');
  if (space == NULL || sscanf (space + 1, "%lf", &v) != 1)
    return;
  brace = strchr (line, '{');
  size_t n = brace && brace < space ? (size_t) (brace - line)
                                    : (size_t) (space - line);
  if (n >= sizeof name)
    return;
  memcpy (name, line, n);
  name[n] = '\0';
  const char *labels = brace && brace < space ? brace : "";
  uint64_t u = v < 0 ? 0 : (uint64_t) v;

  if (strcmp (name, "rampool_client_extents") == 0 &&
      watch_label (labels, "state", state, sizeof state)) {
    if (strcmp (state, "healthy") == 0) d->healthy = u;
    else if (strcmp (state, "degraded") == 0) d->degraded = u;
    else if (strcmp (state, "unreachable") == 0) d->unreachable = u;
    else if (strcmp (state, "lost") == 0) d->lost = u;
    else if (strcmp (state, "unmapped") == 0) d->extents += u;
    if (strcmp (state, "unmapped") != 0) {
      d->mapped += u;
      d->extents += u;
    }
  }
  else if (strcmp (name, "rampool_client_ec_fragments") == 0 &&
           watch_label (labels, "kind", state, sizeof state)) {
    if (strcmp (state, "data") == 0) d->ec_k = u;
    else if (strcmp (state, "parity") == 0) d->ec_m = u;
  }
  else if (strcmp (name, "rampool_client_recovered_total") == 0)
    d->recovered = u;
  else if (strcmp (name, "rampool_client_migrated_total") == 0)
    d->migrated = u;
  else if ((strcmp (name, "rampool_client_requests_total") == 0 ||
            strcmp (name, "rampool_client_request_bytes_total") == 0) &&
           watch_label (labels, "op", op, sizeof op)) {
    bool is_bytes = strcmp (name, "rampool_client_request_bytes_total") == 0;
    /* Zeroes and trims count as writes for the view. */
    bool is_read = strcmp (op, "read") == 0;
    if (is_bytes) {
      d->has_bytes = true;
      if (is_read)
        d->read_bytes += u;
      else if (strcmp (op, "write") == 0)
        d->write_bytes += u;
    }
    else if (is_read)
      d->reads += u;
    else
      d->writes += u;
  }
  else if (strcmp (name, "rampool_client_server_state") == 0 && u == 1 &&
           watch_label (labels, "server", addr, sizeof addr) &&
           watch_label (labels, "state", state, sizeof state))
    watch_disk_state (w, addr, state);
}

static void
watch_read_disk (struct watch *w)
{
  struct watch_disk *d = &w->disk;
  char line[1024];
  FILE *fp;

  memset (d, 0, sizeof *d);
  for (unsigned i = 0; i < w->nservers; i++)
    w->servers[i].disk_state[0] = '\0';
  if (w->disk_path == NULL || (fp = fopen (w->disk_path, "r")) == NULL)
    return;
  while (fgets (line, sizeof line, fp)) {
    line[strcspn (line, "\n")] = '\0';
    if (w->is_metrics)
      watch_metrics_line (w, d, line);
    else
      watch_stats_line (w, d, line);
  }
  fclose (fp);
  d->is_read = true;
}

static void
watch_query (struct watch *w)
{
  for (unsigned i = 0; i < w->nservers; i++) {
    struct watch_server *s = &w->servers[i];
    s->is_up = rp_server_query (s->addr, w->key_file, w->timeout_ms,
                                &s->info) == 0;
  }
}

/* Per second between the previous refresh and this one. */
static double
watch_rate (const struct watch *w, uint64_t now, uint64_t before)
{
  double s = (w->now_ms - w->prev_ms) / 1000.0;

  if (!w->prev.is_read || w->prev_ms == 0 || s <= 0 || now < before)
    return 0;
  return (now - before) / s;
}

const char *
watch_state_name (uint32_t state)
{
  switch (state) {
  case RP_STATE_SERVING: return "up";
  case RP_STATE_SHRINKING: return "shrinking";
  case RP_STATE_DRAINING: return "draining";
  case RP_STATE_DRAINED: return "drained";
  default: return "up?";
  }
}

/* Extents still to repair and the ETA, "" when there is nothing. */
static void
watch_recovery (struct watch *w, uint64_t *left, double *eta_s)
{
  const struct watch_disk *d = &w->disk;
  double rate = watch_rate (w, d->recovered + d->migrated,
                            w->prev.recovered + w->prev.migrated);

  *left = d->degraded + d->unreachable;
  /* Smoothed, so one idle heartbeat does not make the ETA jump. */
  w->recovery_rate = w->recovery_rate == 0 ? rate
                     : 0.7 * w->recovery_rate + 0.3 * rate;
  *eta_s = *left && w->recovery_rate > 0.01 ? *left / w->recovery_rate : -1;
}

static const char *
watch_plugin_state (const struct watch_server *s)
{
  return s->disk_state[0] ? s->disk_state : "-";
}

/* One frame of the table (80 columns). */
static void
watch_print_table (struct watch *w)
{
  char when[32], u[32], f[32], c[32];
  time_t t = time (NULL);
  unsigned up = 0;
  uint64_t used = 0, limit = 0;

  strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime (&t));
  if (w->is_tty)
    printf ("\033[H\033[2J");
  printf ("rampool status  %s  every 1 s, Ctrl-C to quit\n\n", when);
  printf ("%-21s %-9s %10s %10s %8s %7s%s\n", "SERVER", "STATE", "USED",
          "FREE", "EXTENTS", "CLIENTS", w->disk_path ? "  DISK" : "");
  for (unsigned i = 0; i < w->nservers; i++) {
    struct watch_server *s = &w->servers[i];
    const struct rp_server_info *in = &s->info;
    if (!s->is_up) {
      printf ("%-21.21s %-9s %-38.38s%s%s\n", s->addr, "DOWN", in->error,
              w->disk_path ? "  " : "",
              w->disk_path ? watch_plugin_state (s) : "");
      continue;
    }
    up++;
    used += in->used_bytes;
    limit += in->limit_bytes;
    printf ("%-21.21s %-9s %10s %10s %8" PRIu32 " %7" PRIu32 "%s%s\n",
            s->addr, watch_state_name (in->state),
            rp_human_size (in->used_bytes, u, sizeof u),
            rp_human_size (in->limit_bytes > in->used_bytes
                           ? in->limit_bytes - in->used_bytes : 0,
                           f, sizeof f),
            in->extents, in->owners, w->disk_path ? "  " : "",
            w->disk_path ? watch_plugin_state (s) : "");
  }
  printf ("pool: %u of %u servers up, %s used of %s\n", up, w->nservers,
          rp_human_size (used, u, sizeof u),
          rp_human_size (limit, c, sizeof c));
  if (w->disk_path == NULL)
    return;
  printf ("\ndisk (%s):\n", w->disk_path);
  if (!w->disk.is_read) {
    printf ("  no such file (yet): is the disk's stats-file= or"
            " metrics-file= this?\n");
    return;
  }
  const struct watch_disk *d = &w->disk, *p = &w->prev;
  double ri = watch_rate (w, d->reads, p->reads);
  double wi = watch_rate (w, d->writes, p->writes);
  if (d->has_bytes)
    printf ("  I/O       read %6.0f IOPS %7.1f MiB/s   write %6.0f IOPS"
            " %7.1f MiB/s\n", ri,
            watch_rate (w, d->read_bytes, p->read_bytes) / 1048576.0, wi,
            watch_rate (w, d->write_bytes, p->write_bytes) / 1048576.0);
  else
    printf ("  I/O       read %6.0f parts/s   write %6.0f parts/s"
            " (per extent part)\n", ri, wi);
  printf ("  %s healthy %" PRIu64 "  degraded %" PRIu64
          "  unreachable %" PRIu64 "  lost %" PRIu64 "  (%" PRIu64
          " of %" PRIu64 " mapped)\n", d->ec_k ? "stripes  " : "extents  ",
          d->healthy, d->degraded, d->unreachable, d->lost, d->mapped,
          d->extents);
  if (d->ec_k)
    printf ("            erasure coded %" PRIu64 "+%" PRIu64 ": degraded"
            " stripes have at least %" PRIu64 " good fragments\n", d->ec_k,
            d->ec_m, d->ec_k);
  uint64_t left;
  double eta;
  watch_recovery (w, &left, &eta);
  if (left == 0)
    printf ("  recovery  nothing to repair%s\n",
            d->lost ? "; LOST extents cannot be repaired" : "");
  else if (eta < 0)
    printf ("  recovery  %" PRIu64 " extent(s) to repair, waiting\n", left);
  else
    printf ("  recovery  %" PRIu64 " extent(s) to repair, %.1f copies/s,"
            " ETA %.0f s\n", left, w->recovery_rate, eta);
}

/* A JSON string: the addresses and reasons here hold no control
 * characters but quotes and backslashes are escaped all the same.
 */
static void
watch_json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      printf ("\\%c", *s);
    else if ((unsigned char) *s < 0x20)
      printf ("\\u%04x", *s);
    else
      putchar (*s);
  }
  putchar ('"');
}

static void
watch_print_json (struct watch *w)
{
  printf ("{\"time\":%lld,\"servers\":[", (long long) time (NULL));
  for (unsigned i = 0; i < w->nservers; i++) {
    struct watch_server *s = &w->servers[i];
    const struct rp_server_info *in = &s->info;
    printf ("%s{\"addr\":", i ? "," : "");
    watch_json_string (s->addr);
    if (!s->is_up) {
      printf (",\"up\":false,\"error\":");
      watch_json_string (in->error);
    }
    else
      printf (",\"up\":true,\"state\":\"%s\",\"limit_bytes\":%" PRIu64
              ",\"used_bytes\":%" PRIu64 ",\"extents\":%" PRIu32
              ",\"clients\":%" PRIu32, watch_state_name (in->state),
              in->limit_bytes, in->used_bytes, in->extents, in->owners);
    if (w->disk.is_read) {
      printf (",\"disk_state\":");
      watch_json_string (watch_plugin_state (s));
    }
    putchar ('}');
  }
  putchar (']');
  if (w->disk.is_read) {
    const struct watch_disk *d = &w->disk, *p = &w->prev;
    uint64_t left;
    double eta;
    watch_recovery (w, &left, &eta);
    printf (",\"disk\":{\"extents\":%" PRIu64 ",\"mapped\":%" PRIu64
            ",\"healthy\":%" PRIu64 ",\"degraded\":%" PRIu64
            ",\"unreachable\":%" PRIu64 ",\"lost\":%" PRIu64
            ",\"read_iops\":%.1f,\"write_iops\":%.1f",
            d->extents, d->mapped, d->healthy, d->degraded, d->unreachable,
            d->lost, watch_rate (w, d->reads, p->reads),
            watch_rate (w, d->writes, p->writes));
    if (d->has_bytes)
      printf (",\"read_bytes_per_second\":%.0f,\"write_bytes_per_second\":"
              "%.0f", watch_rate (w, d->read_bytes, p->read_bytes),
              watch_rate (w, d->write_bytes, p->write_bytes));
    if (d->ec_k)
      printf (",\"redundancy\":\"ec:%" PRIu64 "+%" PRIu64 "\"", d->ec_k,
              d->ec_m);
    printf (",\"recovery\":{\"extents_left\":%" PRIu64 ",\"copies_per_second\""
            ":%.2f,\"eta_seconds\":", left, w->recovery_rate);
    if (eta < 0)
      printf ("null}}");
    else
      printf ("%.0f}}", eta);
  }
  printf ("}\n");
}

static int
watch_usage_error (const char *msg, const char *arg)
{
  fprintf (stderr, "rampool status: %s '%s'\n", msg, arg);
  return 2;
}

int
watch_main (int argc, char **argv)
{
  struct watch *w = calloc (1, sizeof *w);
  bool is_watch = false;
  uint64_t count = 0, interval_ms = 1000;
  int i = 1, status = 0;

  if (w == NULL) {
    fprintf (stderr, "rampool status: out of memory\n");
    return 1;
  }
  w->timeout_ms = 2000;
  for (; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    const char *a = argv[i];
    uint64_t v;
    if (strcmp (a, "--watch") == 0)
      is_watch = true;
    else if (strcmp (a, "--json") == 0)
      w->is_json = true;
    else if (strncmp (a, "--key-file=", 11) == 0)
      w->key_file = a + 11;
    else if (strncmp (a, "--pool-stats=", 13) == 0)
      w->disk_path = a + 13, w->is_metrics = false;
    else if (strncmp (a, "--metrics-file=", 15) == 0)
      w->disk_path = a + 15, w->is_metrics = true;
    else if (strncmp (a, "--count=", 8) == 0) {
      if (rp_parse_uint (a + 8, 1, UINT32_MAX, &count) == -1)
        return watch_usage_error ("--count: not a number of refreshes:", a);
    }
    else if (strncmp (a, "--interval-ms=", 14) == 0) {
      if (rp_parse_uint (a + 14, 100, 3600000, &interval_ms) == -1)
        return watch_usage_error ("--interval-ms: not 100-3600000:", a);
    }
    else if (strncmp (a, "--timeout-ms=", 13) == 0) {
      if (rp_parse_uint (a + 13, 1, 600000, &v) == -1)
        return watch_usage_error ("--timeout-ms: not 1-600000:", a);
      w->timeout_ms = v;
    }
    else
      return watch_usage_error ("unknown option", a);
  }
  for (; i < argc; i++) {
    char *list = strdup (argv[i]), *save = NULL;
    if (list == NULL) {
      fprintf (stderr, "rampool status: out of memory\n");
      return 1;
    }
    for (char *a = strtok_r (list, ",", &save); a;
         a = strtok_r (NULL, ",", &save)) {
      if (w->nservers == w->servers_cap) {
        unsigned cap = w->servers_cap ? 2 * w->servers_cap : 16;
        struct watch_server *grown =
          realloc (w->servers, cap * sizeof *grown);
        if (grown == NULL) {
          fprintf (stderr, "rampool status: out of memory\n");
          return 1;
        }
        memset (grown + w->servers_cap, 0,
                (cap - w->servers_cap) * sizeof *grown);
        w->servers = grown;
        w->servers_cap = cap;
      }
      snprintf (w->servers[w->nservers++].addr, sizeof w->servers[0].addr,
                "%s", a);
    }
    free (list);
  }
  if (w->nservers == 0) {
    fprintf (stderr, "rampool status: name at least one SERVER"
             " (HOST:PORT)\n");
    return 2;
  }
  if (!is_watch)
    count = 1;
  w->is_tty = !w->is_json && isatty (STDOUT_FILENO);
  signal (SIGINT, watch_on_signal);
  signal (SIGTERM, watch_on_signal);
  for (uint64_t n = 0; !watch_is_stopping && (count == 0 || n < count); n++) {
    uint64_t start = rp_now_ms ();
    if (n > 0) {
      w->prev = w->disk;
      w->prev_ms = w->now_ms;
    }
    watch_query (w);
    watch_read_disk (w);
    w->now_ms = rp_now_ms ();
    if (w->is_json)
      watch_print_json (w);
    else
      watch_print_table (w);
    fflush (stdout);
    status = 0;
    for (unsigned k = 0; k < w->nservers; k++)
      if (!w->servers[k].is_up)
        status = 1;
    if (count && n + 1 == count)
      break;
    /* Sleep out the rest of the interval, a signal ending it early. */
    uint64_t spent = rp_now_ms () - start;
    if (spent < interval_ms) {
      struct timespec ts = { .tv_sec = (interval_ms - spent) / 1000,
                             .tv_nsec = (interval_ms - spent) % 1000
                                        * 1000000L };
      nanosleep (&ts, NULL);
    }
  }
  free (w->servers);
  free (w);
  return status;
}
