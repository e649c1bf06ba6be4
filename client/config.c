/* Pool configuration: the one table of config keys, and the key=value
 * parsing the nbdkit plugin, the FUSE front end and the CLI share.
 *
 * config_keys[] below is the only place a key is written down: its
 * name, the form of its value, where it applies, its range, its
 * default and its help line.  rp_config_init takes the defaults from
 * it, rp_config_set parses by it, rp_config_help prints it (so the
 * plugin's --help, rampool-fuse --help and rampool attach --help are
 * the same text), and tests/test-config-doc.sh holds the man pages to
 * it.  Every error names the key and why.
 *
 * Not here: what the keys mean to the pool (pool.c, io.c), and the
 * front ends' own options (-o for FUSE, --device for attach).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rampool/client.h"
#include "rampool/protocol.h"
#include "codec.h"
#include "transport.h"
#include "util.h"

/* How a key's value is parsed and stored. */
enum config_kind {
  CONFIG_SERVERS,   /* HOST:PORT,...: appended to cfg->servers */
  CONFIG_SIZE,      /* a size, 1 .. 2^63-1 */
  CONFIG_POW2,      /* a size, a power of two in [min, max] */
  CONFIG_RATE,      /* a size of at least min (bytes per second) */
  CONFIG_UINT,      /* a whole number in [min, max] */
  CONFIG_BOOL,      /* on|off (also true|false, 1|0) */
  CONFIG_PATH,      /* a non-empty path, strdup'd */
  CONFIG_REDUNDANCY,/* replicas | ec:K+M: ec_k and ec_m */
};

struct config_key {
  const char *name;
  const char *value;           /* the value's form, for help */
  enum config_kind kind;
  size_t offset, width;        /* the field in struct rp_config */
  uint64_t min, max;           /* range (CONFIG_UINT, POW2, RATE) */
  uint64_t dflt;               /* default (numbers, bools); a
                                  CONFIG_UINT default below min is no
                                  value one could give: it means "worked
                                  out at open", and the help says how */
  bool is_required;
  unsigned fronts;             /* RP_FRONT_* where it applies */
  const char *help;            /* one line */
};

#define CONFIG_FIELD(f) \
  offsetof (struct rp_config, f), sizeof (((struct rp_config *) 0)->f)
#define CONFIG_ALL (RP_FRONT_PLUGIN | RP_FRONT_FUSE | RP_FRONT_NBD)
#define CONFIG_STR(x) CONFIG_STR_ (x)
#define CONFIG_STR_(x) #x
#define KiB UINT64_C (1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

/* The defaults, with why each was chosen:
 *  - extent-size 1 MiB: small enough that swap's scattered trims free
 *    memory on the donors and consecutive extents stripe across
 *    servers, big enough that the map of a 64 GiB disk is 64 Ki
 *    entries (~5 MiB);
 *  - recovery-rate none: recovery runs flat out on an idle disk and
 *    yields four fifths of the time to foreground requests (recovery.c),
 *    so a fixed cap only lengthens the time on one copy;
 *  - rejoin-grace-ms 5 s: a blip costs no copy;
 *  - outage-wait-ms 30 s: long enough to ride out a donor's stall or a
 *    reconnect, short enough that a truly lost page ends in an error
 *    someone sees; the kernel's NBD request timeout must be longer
 *    (rampool attach: 120 s);
 *  - rdma-buffer 8 MiB: two of the largest READs or WRITEs (4 MiB, a
 *    chunk) in flight per connection, or 2048 swap pages; at least one
 *    chunk, or a 4 MiB request could never be posted; at most 1 GiB,
 *    all of it locked (transport_rdma.c);
 *  - max-servers 256, or the servers listed at open if more: a slot of
 *    the table costs under 1 KiB until a server takes it (engine.h,
 *    struct donor), so a servers-file= pool can grow to the "hundreds
 *    of donors" it was made for without a restart, while a pool that
 *    lists more at open is never refused for want of the key.  At most
 *    RP_MAX_SERVERS (4096): what the monitor does every heartbeat
 *    (PING every server, the stats and metrics files) is linear in the
 *    servers, and a copy names its server in 16 bits (extent_map.h).
 */
static const struct config_key config_keys[] = {
  { "servers", "[tcp://|rdma://]HOST:PORT,...", CONFIG_SERVERS,
    CONFIG_FIELD (nservers), 0, 0, 0, true, CONFIG_ALL,
    "memservers of the pool" },
  { "size", "SIZE", CONFIG_SIZE, CONFIG_FIELD (size_bytes),
    1, INT64_MAX, 0, true, CONFIG_ALL, "virtual disk size, e.g. 64G" },
  { "replicas", "N", CONFIG_UINT, CONFIG_FIELD (replicas),
    1, RP_MAX_REPLICAS, 2, false, CONFIG_ALL, "copies of each extent" },
  { "redundancy", "replicas|ec:K+M", CONFIG_REDUNDANCY, CONFIG_FIELD (ec_k),
    0, 0, 0, false, CONFIG_ALL,
    "replicas (default, replicas= copies) or erasure coding: K data and"
    " M parity fragments per 4 KiB block on K+M servers, (K+M)/K times"
    " the memory, survives M lost servers; K 2, 4, 8 or 16, M 1-4" },
  { "ec-read-extra", "N", CONFIG_UINT, CONFIG_FIELD (ec_read_extra),
    0, 4, 1, false, CONFIG_ALL,
    "with redundancy=ec, reads of up to 32 KiB ask N fragments more than"
    " K and decode from the first K to arrive, so one slow server does"
    " not hold them (late binding); at most M" },
  { "extent-size", "SIZE", CONFIG_POW2, CONFIG_FIELD (extent_size),
    RP_MIN_EXTENT_SIZE, RP_MAX_EXTENT_SIZE, MiB, false, CONFIG_ALL,
    "unit of placement, a power of two" },
  { "placement-choices", "D", CONFIG_UINT, CONFIG_FIELD (placement_choices),
    1, RP_MAX_SERVERS, 2, false, CONFIG_ALL,
    "servers sampled per placement (power of d choices)" },
  { "connections", "N", CONFIG_UINT, CONFIG_FIELD (connections),
    1, 16, 2, false, CONFIG_ALL, "connections per server" },
  { "lanes", "N", CONFIG_UINT, CONFIG_FIELD (lanes),
    0, RP_MAX_LANES, 8, false, CONFIG_ALL,
    "direct read connections per server (TCP), each received by the"
    " thread whose read it carries; 0: none" },
  { "inflight", "N", CONFIG_UINT, CONFIG_FIELD (inflight),
    1, 1024, 64, false, CONFIG_ALL, "requests in flight per connection" },
  { "timeout-ms", "MS", CONFIG_UINT, CONFIG_FIELD (timeout_ms),
    10, 600000, 5000, false, CONFIG_ALL, "per-request deadline" },
  { "heartbeat-ms", "MS", CONFIG_UINT, CONFIG_FIELD (heartbeat_ms),
    10, 600000, 1000, false, CONFIG_ALL,
    "health check and reconnect period" },
  { "rejoin-grace-ms", "MS", CONFIG_UINT, CONFIG_FIELD (rejoin_grace_ms),
    0, 86400000, 5000, false, CONFIG_ALL,
    "keep a down server's copies this long before re-creating them" },
  { "outage-wait-ms", "MS", CONFIG_UINT, CONFIG_FIELD (outage_wait_ms),
    0, 86400000, 30000, false, CONFIG_ALL,
    "a request whose copies are all on down servers waits this long" },
  { "recovery-rate", "SIZE", CONFIG_RATE, CONFIG_FIELD (recovery_rate),
    0, UINT64_MAX, 0, false, CONFIG_ALL,
    "most bytes per second re-replication may copy; 0: no ceiling, it"
    " yields to foreground I/O instead" },
  { "peer-copy", "on|off", CONFIG_BOOL, CONFIG_FIELD (is_peer_copy),
    0, 1, 1, false, CONFIG_ALL,
    "recovery asks a memserver holding a good copy to write the new copy"
    " straight into its new server (COPY), so copies do not pass through"
    " this client; off: every copy is read and written by this client" },
  { "rdma-buffer", "SIZE", CONFIG_SIZE, CONFIG_FIELD (rdma_buffer),
    RP_MAX_PAYLOAD, GiB, 8 * MiB, false, CONFIG_ALL,
    "registered (locked) memory per RDMA connection for READ and WRITE"
    " data" },
  { "max-servers", "N", CONFIG_UINT, CONFIG_FIELD (max_servers),
    1, RP_MAX_SERVERS, 0, false, CONFIG_ALL,
    "most servers the pool can ever have, removed ones included: the"
    " table is made at open, and servers-file= adds up to it; 1-"
    CONFIG_STR (RP_MAX_SERVERS) " (default " CONFIG_STR (RP_MAX_SERVERS_DEFAULT)
    ", or the servers listed at open if more)" },
  { "spare-servers", "N", CONFIG_UINT, CONFIG_FIELD (spare_servers),
    0, RP_MAX_SERVERS, 8, false, CONFIG_ALL,
    "servers holding nothing of ours kept connected for new copies (at"
    " least a stripe's worth); the others are disconnected after 10"
    " heartbeats and reconnected when needed; "
    CONFIG_STR (RP_MAX_SERVERS) " keeps every server connected" },
  { "servers-file", "PATH", CONFIG_PATH, CONFIG_FIELD (servers_file),
    0, 0, 0, false, CONFIG_ALL,
    "the servers, one per line, instead of servers=; re-read when it"
    " changes: servers added join, servers removed are moved off" },
  { "stats-file", "PATH", CONFIG_PATH, CONFIG_FIELD (stats_file),
    0, 0, 0, false, CONFIG_ALL, "pool health written here every heartbeat" },
  { "metrics-file", "PATH", CONFIG_PATH, CONFIG_FIELD (metrics_file),
    0, 0, 0, false, CONFIG_ALL,
    "Prometheus metrics (textfile collector format) written here every"
    " heartbeat" },
  { "key-file", "PATH", CONFIG_PATH, CONFIG_FIELD (key_file),
    0, 0, 0, false, CONFIG_ALL,
    "cluster key (rampool keygen); required by servers that have one" },
  { "encrypt", "on|off", CONFIG_BOOL, CONFIG_FIELD (is_encrypted),
    0, 1, 0, false, CONFIG_ALL,
    "encrypt and authenticate every block here (5 MiB of RAM per GiB)" },
  { "backup", "PATH", CONFIG_PATH, CONFIG_FIELD (backup_file),
    0, 0, 0, false, CONFIG_ALL,
    "local backup file: every write goes there too; reads fall back" },
  { "mlock", "on|off", CONFIG_BOOL, CONFIG_FIELD (is_mlocked),
    0, 1, 0, false, RP_FRONT_PLUGIN | RP_FRONT_NBD,
    "lock nbdkit in RAM after it forks (for swap)" },
  { "realtime", "PRIO", CONFIG_UINT, CONFIG_FIELD (realtime_prio),
    0, 99, 0, false, RP_FRONT_PLUGIN | RP_FRONT_NBD,
    "SCHED_FIFO priority of the I/O threads (for swap; 0 = off)" },
};
#define CONFIG_NKEYS (sizeof config_keys / sizeof config_keys[0])

static const struct config_key *
config_find (const char *name)
{
  for (size_t i = 0; i < CONFIG_NKEYS; i++)
    if (strcmp (config_keys[i].name, name) == 0)
      return &config_keys[i];
  return NULL;
}

static void *
config_field (struct rp_config *cfg, const struct config_key *k)
{
  return (char *) cfg + k->offset;
}

/* Store v into k's field, whatever its width. */
static void
config_store (struct rp_config *cfg, const struct config_key *k, uint64_t v)
{
  void *f = config_field (cfg, k);

  switch (k->width) {
  case 1: *(bool *) f = v != 0; break;
  case 4: *(uint32_t *) f = v; break;
  case 8: *(uint64_t *) f = v; break;
  default: abort ();  /* a table entry with a field of another width */
  }
}

void
rp_config_init (struct rp_config *cfg)
{
  memset (cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < CONFIG_NKEYS; i++)
    if (config_keys[i].kind != CONFIG_SERVERS &&
        config_keys[i].kind != CONFIG_PATH &&
        config_keys[i].kind != CONFIG_REDUNDANCY)
      config_store (cfg, &config_keys[i], config_keys[i].dflt);
}

static void
config_free_servers (struct rp_config *cfg)
{
  for (unsigned i = 0; i < cfg->nservers; i++)
    free (cfg->servers[i]);
  free (cfg->servers);
  cfg->servers = NULL;
  cfg->nservers = cfg->servers_cap = 0;
}

void
rp_config_free (struct rp_config *cfg)
{
  config_free_servers (cfg);
  for (size_t i = 0; i < CONFIG_NKEYS; i++)
    if (config_keys[i].kind == CONFIG_PATH)
      free (*(char **) config_field (cfg, &config_keys[i]));
  memset (cfg, 0, sizeof *cfg);
}

int
rp_config_copy (struct rp_config *dst, const struct rp_config *src)
{
  *dst = *src;
  dst->servers = NULL;
  dst->nservers = dst->servers_cap = 0;
  for (size_t i = 0; i < CONFIG_NKEYS; i++)
    if (config_keys[i].kind == CONFIG_PATH)
      *(char **) config_field (dst, &config_keys[i]) = NULL;
  if (src->nservers) {
    dst->servers = calloc (src->nservers, sizeof *dst->servers);
    if (dst->servers == NULL)
      goto out_nomem;
    dst->servers_cap = src->nservers;
  }
  /* Counted one by one, so that a failure frees those copied. */
  for (; dst->nservers < src->nservers; dst->nservers++)
    if ((dst->servers[dst->nservers] =
         strdup (src->servers[dst->nservers])) == NULL)
      goto out_nomem;
  for (size_t i = 0; i < CONFIG_NKEYS; i++) {
    const struct config_key *k = &config_keys[i];
    const char *from;
    char **to;

    if (k->kind != CONFIG_PATH)
      continue;                 /* only PATH fields hold a char * */
    from = *(char *const *) ((const char *) src + k->offset);
    to = config_field (dst, k);
    if (from && (*to = strdup (from)) == NULL)
      goto out_nomem;
  }
  return 0;
 out_nomem:
  rp_config_free (dst);
  errno = ENOMEM;
  return -1;
}

static int __attribute__ ((format (printf, 3, 4)))
config_error (char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
  errno = EINVAL;
  return -1;
}

static int
config_set_servers (struct rp_config *cfg, const char *value,
                    char *err, size_t errlen)
{
  char *copy = strdup (value), *save = NULL, *tok;
  int ret = 0;

  if (copy == NULL)
    return config_error (err, errlen, "servers: out of memory");
  for (tok = strtok_r (copy, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    char host[256], port[16];
    const char *hostport, *why;
    uint64_t p;
    if (transport_find (tok, &hostport, &why) == NULL) {
      ret = config_error (err, errlen, "servers: '%s': %s", tok, why);
      break;
    }
    if (rp_split_hostport (hostport, host, sizeof host, port,
                           sizeof port) == -1 ||
        rp_parse_uint (port, 1, 65535, &p) == -1) {
      ret = config_error (err, errlen, "servers: '%s' is not HOST:PORT"
                          " (IPv6 as [ADDR]:PORT, port 1-65535)", tok);
      break;
    }
    for (unsigned i = 0; i < cfg->nservers; i++)
      if (strcmp (cfg->servers[i], tok) == 0) {
        ret = config_error (err, errlen, "servers: '%s' is listed twice", tok);
        goto out;
      }
    if (cfg->nservers == RP_MAX_SERVERS) {
      ret = config_error (err, errlen, "servers: more than %d servers, the"
                          " most a pool can have (max-servers= at most)",
                          RP_MAX_SERVERS);
      break;
    }
    if (cfg->nservers == cfg->servers_cap) {
      unsigned cap = cfg->servers_cap ? 2 * cfg->servers_cap : 8;
      char **grown;
      if (cap > RP_MAX_SERVERS)
        cap = RP_MAX_SERVERS;
      grown = realloc (cfg->servers, cap * sizeof *grown);
      if (grown == NULL) {
        ret = config_error (err, errlen, "servers: out of memory");
        break;
      }
      cfg->servers = grown;
      cfg->servers_cap = cap;
    }
    cfg->servers[cfg->nservers] = strdup (tok);
    if (cfg->servers[cfg->nservers] == NULL) {
      ret = config_error (err, errlen, "servers: out of memory");
      break;
    }
    cfg->nservers++;
  }
 out:
  free (copy);
  return ret;
}

/* "64M" for sizes that are whole KiB/MiB/GiB, else bytes. */
static const char *
config_size_text (uint64_t v, char *buf, size_t len)
{
  static const char units[] = "KMGT";
  int u = -1;

  while (v >= 1024 && v % 1024 == 0 && u < 3) {
    v /= 1024;
    u++;
  }
  if (u < 0)
    snprintf (buf, len, "%" PRIu64, v);
  else
    snprintf (buf, len, "%" PRIu64 "%c", v, units[u]);
  return buf;
}

static int
config_set_value (struct rp_config *cfg, const struct config_key *k,
                  const char *value, char *err, size_t errlen)
{
  char lo[32], hi[32];
  uint64_t v = 0;

  switch (k->kind) {
  case CONFIG_SERVERS:
    return config_set_servers (cfg, value, err, errlen);
  case CONFIG_SIZE:
    if (rp_parse_size (value, &v) == -1 || v == 0)
      return config_error (err, errlen, "%s: '%s' is not a size"
                           " (e.g. 64G, 512M)", k->name, value);
    if (v < k->min)
      return config_error (err, errlen, "%s: '%s' is less than %s", k->name,
                           value, config_size_text (k->min, lo, sizeof lo));
    /* size=: the NBD protocol and nbdkit take at most 2^63-1. */
    if (v > k->max)
      return config_error (err, errlen, "%s: '%s' is more than %s", k->name,
                           value, config_size_text (k->max, hi, sizeof hi));
    break;
  case CONFIG_POW2:
    if (rp_parse_size (value, &v) == -1 || !rp_is_power_of_2 (v) ||
        v < k->min || v > k->max)
      return config_error (err, errlen, "%s: '%s' is not a power of two"
                           " from %s to %s", k->name, value,
                           config_size_text (k->min, lo, sizeof lo),
                           config_size_text (k->max, hi, sizeof hi));
    break;
  case CONFIG_RATE:
    if (rp_parse_size (value, &v) == -1 || v < k->min)
      return config_error (err, errlen, "%s: '%s' is not a size of at least"
                           " %s (bytes per second%s)", k->name, value,
                           config_size_text (k->min, lo, sizeof lo),
                           k->min == 0 ? "; 0 for none" : "");
    break;
  case CONFIG_UINT:
    if (rp_parse_uint (value, k->min, k->max, &v) == -1)
      return config_error (err, errlen, "%s: '%s' is not a whole number"
                           " from %" PRIu64 " to %" PRIu64, k->name, value,
                           k->min, k->max);
    break;
  case CONFIG_BOOL:
    if (strcmp (value, "on") == 0 || strcmp (value, "true") == 0 ||
        strcmp (value, "1") == 0)
      v = 1;
    else if (strcmp (value, "off") == 0 || strcmp (value, "false") == 0 ||
             strcmp (value, "0") == 0)
      v = 0;
    else
      return config_error (err, errlen, "%s: '%s' is not on or off", k->name,
                           value);
    break;
  case CONFIG_REDUNDANCY: {
    unsigned ek, em;
    int used = 0;
    if (strcmp (value, "replicas") == 0) {
      cfg->ec_k = cfg->ec_m = 0;
      return 0;
    }
    if (sscanf (value, "ec:%u+%u%n", &ek, &em, &used) != 2 ||
        (size_t) used != strlen (value) || value[3] < '0' || value[3] > '9')
      return config_error (err, errlen, "%s: '%s' is not replicas or"
                           " ec:K+M (e.g. ec:4+2)", k->name, value);
    if (ek < 2 || ek > 16 || !rp_is_power_of_2 (ek))
      return config_error (err, errlen, "%s: '%s': K must be 2, 4, 8 or 16"
                           " (a 4 KiB block is cut into K equal fragments,"
                           " and servers take power-of-two extents)",
                           k->name, value);
    if (em < 1 || em > 4)
      return config_error (err, errlen, "%s: '%s': M (parity fragments,"
                           " the servers a stripe may lose) must be 1 to 4",
                           k->name, value);
    cfg->ec_k = ek;
    cfg->ec_m = em;
    return 0;
  }
  case CONFIG_PATH: {
    char **f = config_field (cfg, k), *copy;
    if (*value == '\0')
      return config_error (err, errlen, "%s: empty path", k->name);
    if ((copy = strdup (value)) == NULL)
      return config_error (err, errlen, "%s: out of memory", k->name);
    free (*f);
    *f = copy;
    return 0;
  }
  }
  config_store (cfg, k, v);
  return 0;
}

int
rp_config_set_for (struct rp_config *cfg, unsigned front, const char *key,
                   const char *value, char *err, size_t errlen)
{
  const struct config_key *k = config_find (key);

  if (k == NULL)
    return config_error (err, errlen, "%s: unknown key (see --help for the"
                         " keys rampool takes)", key);
  if (!(k->fronts & front))
    return config_error (err, errlen, "%s: only for %s", key,
                         k->fronts & RP_FRONT_PLUGIN
                         ? "the nbdkit plugin (nbdkit rampool, rampool attach)"
                         " and rampool-nbd" : "rampool-fuse");
  if (config_set_value (cfg, k, value, err, errlen) == -1)
    return -1;
  if (strcmp (k->name, "replicas") == 0)
    cfg->is_replicas_given = true;
  return 0;
}

int
rp_config_set (struct rp_config *cfg, const char *key, const char *value,
               char *err, size_t errlen)
{
  return rp_config_set_for (cfg, RP_FRONT_PLUGIN | RP_FRONT_FUSE, key, value,
                            err, errlen);
}

int
rp_config_read_servers (struct rp_config *cfg, char *err, size_t errlen)
{
  char line[512], msg[256];
  unsigned lineno = 0;
  FILE *fp;
  int ret = 0;

  config_free_servers (cfg);
  fp = fopen (cfg->servers_file, "re");
  if (fp == NULL)
    return config_error (err, errlen, "servers-file: %s: %s",
                         cfg->servers_file, strerror (errno));
  while (ret == 0 && fgets (line, sizeof line, fp)) {
    char *t = line, *end;
    lineno++;
    if (strchr (line, '\n') == NULL && !feof (fp)) {
      ret = config_error (err, errlen, "servers-file: %s line %u: longer"
                          " than %zu bytes", cfg->servers_file, lineno,
                          sizeof line - 2);
      break;
    }
    line[strcspn (line, "#\n")] = '\0';
    t += strspn (t, " \t");
    for (end = t + strlen (t); end > t && (end[-1] == ' ' || end[-1] == '\t');)
      *--end = '\0';
    if (*t == '\0')
      continue;
    if (strpbrk (t, " \t,")) {
      ret = config_error (err, errlen, "servers-file: %s line %u: one server"
                          " per line ('%s')", cfg->servers_file, lineno, t);
      break;
    }
    if (config_set_servers (cfg, t, msg, sizeof msg) == -1)
      ret = config_error (err, errlen, "servers-file: %s line %u: %s",
                          cfg->servers_file, lineno, msg);
  }
  if (ret == 0 && ferror (fp))
    ret = config_error (err, errlen, "servers-file: %s: read error",
                        cfg->servers_file);
  fclose (fp);
  if (ret == -1)
    config_free_servers (cfg);
  return ret;
}

int
rp_config_check (const struct rp_config *cfg, char *err, size_t errlen)
{
  if (cfg->servers_file) {
    struct rp_config listed = { .servers_file = cfg->servers_file };
    unsigned n;
    if (cfg->nservers)
      return config_error (err, errlen, "servers-file: give servers= or"
                           " servers-file=, not both");
    if (rp_config_read_servers (&listed, err, errlen) == -1)
      return -1;
    n = listed.nservers;
    config_free_servers (&listed);
    if (cfg->ec_k && n < cfg->ec_k + cfg->ec_m)
      return config_error (err, errlen, "redundancy: ec:%u+%u puts each"
                           " stripe on %u distinct servers, but servers-file"
                           " %s lists %u", cfg->ec_k, cfg->ec_m,
                           cfg->ec_k + cfg->ec_m, cfg->servers_file, n);
    if (!cfg->ec_k && n < cfg->replicas)
      return config_error (err, errlen, "replicas: %u copies need at least"
                           " %u servers, but servers-file %s lists %u",
                           cfg->replicas, cfg->replicas, cfg->servers_file, n);
    if (cfg->max_servers && n > cfg->max_servers)
      return config_error (err, errlen, "max-servers: servers-file %s lists"
                           " %u servers, more than max-servers=%u",
                           cfg->servers_file, n, cfg->max_servers);
  }
  else if (cfg->nservers == 0)
    return config_error (err, errlen, "servers: required: the memservers of"
                         " the pool, e.g. servers=10.0.0.1:7070,10.0.0.2:7070"
                         " (or servers-file=PATH)");
  if (cfg->size_bytes == 0)
    return config_error (err, errlen, "size: required: the virtual disk size,"
                         " e.g. size=64G");
  if (cfg->ec_k) {
    if (cfg->is_replicas_given)
      return config_error (err, errlen, "redundancy: ec:%u+%u and replicas="
                           " exclude each other: give one", cfg->ec_k,
                           cfg->ec_m);
    if (!cfg->servers_file && cfg->nservers < cfg->ec_k + cfg->ec_m)
      return config_error (err, errlen, "redundancy: ec:%u+%u puts each"
                           " stripe on %u distinct servers, but servers="
                           " lists %u", cfg->ec_k, cfg->ec_m,
                           cfg->ec_k + cfg->ec_m, cfg->nservers);
    if (cfg->extent_size / cfg->ec_k < RP_MIN_EXTENT_SIZE)
      return config_error (err, errlen, "extent-size: with redundancy=ec:%u+%u"
                           " a fragment is extent-size/%u = %" PRIu32
                           " bytes, less than the %u a server takes; use"
                           " extent-size=%uK or more", cfg->ec_k, cfg->ec_m,
                           cfg->ec_k, cfg->extent_size / cfg->ec_k,
                           RP_MIN_EXTENT_SIZE, RP_MIN_EXTENT_SIZE / 1024 *
                           cfg->ec_k);
    if (cfg->ec_read_extra > cfg->ec_m)
      return config_error (err, errlen, "ec-read-extra: %u is more than the"
                           " %u parity fragments of ec:%u+%u",
                           cfg->ec_read_extra, cfg->ec_m, cfg->ec_k,
                           cfg->ec_m);
    if (cfg->size_bytes % 4096)
      return config_error (err, errlen, "size: with redundancy=ec the size"
                           " must be a multiple of 4096 (the coding block)");
    if (cfg->backup_file)
      return config_error (err, errlen, "backup: not available with"
                           " redundancy=ec yet (a stripe already survives"
                           " %u lost servers)", cfg->ec_m);
  }
  else if (!cfg->servers_file && cfg->nservers < cfg->replicas)
    return config_error (err, errlen, "replicas: %u copies need at least %u"
                         " servers, but servers= lists %u", cfg->replicas,
                         cfg->replicas, cfg->nservers);
  if (!cfg->servers_file && cfg->max_servers &&
      cfg->nservers > cfg->max_servers)
    return config_error (err, errlen, "max-servers: servers= lists %u"
                         " servers, more than max-servers=%u",
                         cfg->nservers, cfg->max_servers);
  if (cfg->is_encrypted && cfg->size_bytes % 4096)
    return config_error (err, errlen, "size: with encrypt=on the size must be"
                         " a multiple of 4096 (the encryption block)");
  if (cfg->size_bytes / cfg->extent_size > (UINT64_C (1) << 32))
    return config_error (err, errlen, "extent-size: %" PRIu32 " bytes makes"
                         " more than 2^32 extents for size=%" PRIu64
                         "; use a larger extent-size", cfg->extent_size,
                         cfg->size_bytes);
  return 0;
}

/* One key's help line into buf at *used. */
static void
config_help_line (const struct config_key *k, char *buf, size_t len,
                  size_t *used)
{
  char left[64], dflt[48] = "", range[48] = "", num[32];

  snprintf (left, sizeof left, "%s=%s", k->name, k->value);
  if (k->is_required)
    snprintf (dflt, sizeof dflt, " (required)");
  else
    switch (k->kind) {
    case CONFIG_SIZE: case CONFIG_POW2: case CONFIG_RATE:
      snprintf (dflt, sizeof dflt, " (default %s)",
                config_size_text (k->dflt, num, sizeof num));
      break;
    case CONFIG_UINT:
      if (k->dflt < k->min)
        break;                  /* worked out at open: its help says how */
      snprintf (range, sizeof range, ", %" PRIu64 "-%" PRIu64, k->min, k->max);
      snprintf (dflt, sizeof dflt, " (default %" PRIu64 ")", k->dflt);
      break;
    case CONFIG_BOOL:
      snprintf (dflt, sizeof dflt, " (default %s)", k->dflt ? "on" : "off");
      break;
    case CONFIG_SERVERS: case CONFIG_PATH:
      break;
    case CONFIG_REDUNDANCY:
      snprintf (dflt, sizeof dflt, " (default replicas)");
      break;
    }
  char text[256];
  snprintf (text, sizeof text, "%s%s%s", k->help, range, dflt);
  if (*used < len)
    *used += snprintf (buf + *used, len - *used, "%s%-22s", *used ? "\n" : "",
                       left);
  /* Words after column 23, wrapped before column 80. */
  unsigned col = 23;
  for (char *w = text, *save = NULL; (w = strtok_r (w, " ", &save));
       w = NULL) {
    size_t n = strlen (w);
    if (col + 1 + n > 79 && col > 23) {
      if (*used < len)
        *used += snprintf (buf + *used, len - *used, "\n%22s", "");
      col = 22;
    }
    if (*used < len)
      *used += snprintf (buf + *used, len - *used, " %s", w);
    col += 1 + n;
  }
}

/* Built once per front end: nbdkit wants a const string before it
 * calls into the plugin, so the plugin builds it from a constructor.
 */
static char config_help_text[3][4096];
static pthread_once_t config_help_once = PTHREAD_ONCE_INIT;

static void
config_help_build (void)
{
  for (unsigned f = 0; f < 3; f++) {
    size_t used = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
      if (config_keys[i].fronts & (1u << f))
        config_help_line (&config_keys[i], config_help_text[f],
                          sizeof config_help_text[f], &used);
  }
}

const char *
rp_config_help (unsigned front)
{
  pthread_once (&config_help_once, config_help_build);
  return config_help_text[front == RP_FRONT_FUSE ? 1
                          : front == RP_FRONT_NBD ? 2 : 0];
}
