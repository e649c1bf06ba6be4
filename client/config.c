/* Pool configuration: key=value parsing shared by the nbdkit plugin,
 * the FUSE front end and the CLI.  Every error names the key and why.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rampool/client.h"
#include "rampool/protocol.h"
#include "codec.h"
#include "util.h"

const char rp_config_help[] =
"servers=HOST:PORT,...  memservers of the pool (required)\n"
"size=SIZE              virtual disk size, e.g. 64G (required)\n"
"replicas=N             copies of each extent, 1-4 (default 2)\n"
"extent-size=SIZE       unit of placement, power of two 64K-1G (default 1M)\n"
"placement-choices=D    servers sampled per placement (default 2)\n"
"connections=N          TCP connections per server, 1-16 (default 2)\n"
"inflight=N             requests in flight per connection, 1-1024 (default 64)\n"
"timeout-ms=MS          per-request deadline (default 5000)\n"
"heartbeat-ms=MS        health check / reconnect period (default 1000)\n"
"rejoin-grace-ms=MS     wait before re-replicating a down server's extents (5000)\n"
"outage-wait-ms=MS      how long a request whose only copies are on down\n"
"                       servers waits for one to return before EIO (30000)\n"
"recovery-rate=SIZE     bytes per second re-replication may copy (64M)\n"
"stats-file=PATH        write pool health to PATH every heartbeat\n"
"key-file=PATH          cluster key (rampool keygen); required by servers\n"
"                       that have one\n"
"encrypt=on|off         encrypt and authenticate every block on this host\n"
"                       (default off; costs 5 MiB of local RAM per GiB)\n"
"backup=PATH            local backup file: every write also goes there;\n"
"                       reads fall back to it when every replica is lost";

void
rp_config_init (struct rp_config *cfg)
{
  memset (cfg, 0, sizeof *cfg);
  /* 1 MiB: small enough that swap's scattered trims free memory on the
   * donors and consecutive extents stripe across servers, big enough
   * that the extent map of a 64 GiB disk is 64 Ki entries (~5 MiB).
   */
  cfg->extent_size = 1024 * 1024;
  cfg->replicas = 2;
  cfg->placement_choices = 2;
  cfg->connections = 2;
  cfg->inflight = 64;
  cfg->timeout_ms = 5000;
  cfg->heartbeat_ms = 1000;
  cfg->rejoin_grace_ms = 5000;
  /* Long enough to ride out a donor's stall or a reconnect, short
   * enough that a truly lost page ends in an error someone sees.  The
   * kernel's NBD request timeout must be longer (rampool attach: 120 s).
   */
  cfg->outage_wait_ms = 30000;
  cfg->recovery_rate = 64 * 1024 * 1024;
}

void
rp_config_free (struct rp_config *cfg)
{
  for (unsigned i = 0; i < cfg->nservers; i++)
    free (cfg->servers[i]);
  free (cfg->stats_file);
  free (cfg->key_file);
  free (cfg->backup_file);
  memset (cfg, 0, sizeof *cfg);
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
    uint64_t p;
    if (rp_split_hostport (tok, host, sizeof host, port, sizeof port) == -1 ||
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
      ret = config_error (err, errlen, "servers: more than %d servers",
                          RP_MAX_SERVERS);
      break;
    }
    cfg->servers[cfg->nservers++] = strdup (tok);
  }
 out:
  free (copy);
  return ret;
}

static int
config_uint (const char *key, const char *value, uint64_t min, uint64_t max,
             uint64_t *out, char *err, size_t errlen)
{
  if (rp_parse_uint (value, min, max, out) == -1)
    return config_error (err, errlen, "%s: '%s' is not a whole number from"
                         " %" PRIu64 " to %" PRIu64, key, value, min, max);
  return 0;
}

int
rp_config_set (struct rp_config *cfg, const char *key, const char *value,
               char *err, size_t errlen)
{
  uint64_t v;

  if (strcmp (key, "servers") == 0)
    return config_set_servers (cfg, value, err, errlen);
  if (strcmp (key, "size") == 0) {
    if (rp_parse_size (value, &v) == -1 || v == 0)
      return config_error (err, errlen, "size: '%s' is not a size"
                           " (e.g. 64G, 512M)", value);
    /* The NBD protocol and nbdkit take at most 2^63-1. */
    if (v > INT64_MAX)
      return config_error (err, errlen, "size: '%s' is too large", value);
    cfg->size_bytes = v;
    return 0;
  }
  if (strcmp (key, "extent-size") == 0) {
    if (rp_parse_size (value, &v) == -1 || !rp_is_power_of_2 (v) ||
        v < RP_MIN_EXTENT_SIZE || v > RP_MAX_EXTENT_SIZE)
      return config_error (err, errlen, "extent-size: '%s' is not a power of"
                           " two from 64K to 1G", value);
    cfg->extent_size = v;
    return 0;
  }
  if (strcmp (key, "replicas") == 0) {
    if (config_uint (key, value, 1, RP_MAX_REPLICAS, &v, err, errlen) == -1)
      return -1;
    cfg->replicas = v;
    return 0;
  }
  if (strcmp (key, "placement-choices") == 0) {
    if (config_uint (key, value, 1, RP_MAX_SERVERS, &v, err, errlen) == -1)
      return -1;
    cfg->placement_choices = v;
    return 0;
  }
  if (strcmp (key, "connections") == 0) {
    if (config_uint (key, value, 1, 16, &v, err, errlen) == -1)
      return -1;
    cfg->connections = v;
    return 0;
  }
  if (strcmp (key, "inflight") == 0) {
    if (config_uint (key, value, 1, 1024, &v, err, errlen) == -1)
      return -1;
    cfg->inflight = v;
    return 0;
  }
  if (strcmp (key, "timeout-ms") == 0) {
    if (config_uint (key, value, 10, 600000, &v, err, errlen) == -1)
      return -1;
    cfg->timeout_ms = v;
    return 0;
  }
  if (strcmp (key, "heartbeat-ms") == 0) {
    if (config_uint (key, value, 10, 600000, &v, err, errlen) == -1)
      return -1;
    cfg->heartbeat_ms = v;
    return 0;
  }
  if (strcmp (key, "recovery-rate") == 0) {
    if (rp_parse_size (value, &v) == -1 || v < 1024 * 1024)
      return config_error (err, errlen, "recovery-rate: '%s' is not a size"
                           " of at least 1M (bytes per second)", value);
    cfg->recovery_rate = v;
    return 0;
  }
  if (strcmp (key, "rejoin-grace-ms") == 0) {
    if (config_uint (key, value, 0, 86400000, &v, err, errlen) == -1)
      return -1;
    cfg->rejoin_grace_ms = v;
    return 0;
  }
  if (strcmp (key, "outage-wait-ms") == 0) {
    if (config_uint (key, value, 0, 86400000, &v, err, errlen) == -1)
      return -1;
    cfg->outage_wait_ms = v;
    return 0;
  }
  if (strcmp (key, "encrypt") == 0) {
    if (strcmp (value, "on") == 0 || strcmp (value, "true") == 0 ||
        strcmp (value, "1") == 0)
      cfg->is_encrypted = true;
    else if (strcmp (value, "off") == 0 || strcmp (value, "false") == 0 ||
             strcmp (value, "0") == 0)
      cfg->is_encrypted = false;
    else
      return config_error (err, errlen, "encrypt: '%s' is not on or off", value);
    return 0;
  }
  if (strcmp (key, "backup") == 0) {
    if (*value == '\0')
      return config_error (err, errlen, "backup: empty path");
    free (cfg->backup_file);
    cfg->backup_file = strdup (value);
    return 0;
  }
  if (strcmp (key, "key-file") == 0) {
    if (*value == '\0')
      return config_error (err, errlen, "key-file: empty path");
    free (cfg->key_file);
    cfg->key_file = strdup (value);
    return 0;
  }
  if (strcmp (key, "stats-file") == 0) {
    if (*value == '\0')
      return config_error (err, errlen, "stats-file: empty path");
    free (cfg->stats_file);
    cfg->stats_file = strdup (value);
    return 0;
  }
  return config_error (err, errlen, "%s: unknown key (see --help for the"
                       " keys rampool takes)", key);
}

int
rp_config_check (const struct rp_config *cfg, char *err, size_t errlen)
{
  if (cfg->nservers == 0)
    return config_error (err, errlen, "servers: required: the memservers of"
                         " the pool, e.g. servers=10.0.0.1:7070,10.0.0.2:7070");
  if (cfg->size_bytes == 0)
    return config_error (err, errlen, "size: required: the virtual disk size,"
                         " e.g. size=64G");
  if (cfg->nservers < cfg->replicas)
    return config_error (err, errlen, "replicas: %u copies need at least %u"
                         " servers, but servers= lists %u", cfg->replicas,
                         cfg->replicas, cfg->nservers);
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
