/* libFuzzer target: the pool configuration parser (client/config.c),
 * which the nbdkit plugin, the FUSE front end and the rampool CLI feed
 * with KEY=VALUE strings from the command line.
 *
 * The input is lines; each line is split at its first '=' (no '=': the
 * whole line is the key, the value empty) and given to rp_config_set,
 * the way nbdkit hands the plugin its key=value arguments.  Then
 * rp_config_check, then rp_config_free.  Every key and value is copied
 * into a buffer of exactly its length, so ASan catches a read past the
 * terminating NUL, and the error buffer cycles through 1, 16 and 256
 * bytes to catch a message written past errlen.
 *
 * Besides ASan/UBSan reports, a crash is: an accepted key that leaves
 * the config outside what its help text promises (ranges, powers of
 * two, servers that parse and are unique), a config rp_config_check
 * accepts although a cross-key rule fails, a -1 without errno EINVAL
 * and a NUL-terminated message, or a config not wiped by
 * rp_config_free.
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
#include "transport.h"
#include "util.h"

static void __attribute__ ((noreturn, format (printf, 1, 2)))
fuzz_fail (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "fuzz_config: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  abort ();
}

/* A heap copy of p[0..n) with a NUL after it and nothing more. */
static char *
fuzz_strndup (const uint8_t *p, size_t n)
{
  char *s = malloc (n + 1);

  if (s == NULL)
    fuzz_fail ("out of memory");
  memcpy (s, p, n);
  s[n] = '\0';
  return s;
}

static void
fuzz_check_error (int r, int err, const char *msg, size_t errlen,
                  const char *what)
{
  if (r != -1)
    fuzz_fail ("%s returned %d, not 0 or -1", what, r);
  if (err != EINVAL)
    fuzz_fail ("%s failed with errno %d, not EINVAL", what, err);
  if (strnlen (msg, errlen) == errlen)
    fuzz_fail ("%s left an error message without its NUL", what);
  if (errlen > 1 && msg[0] == '\0')
    fuzz_fail ("%s failed without a message", what);
}

/* The server list: at most RP_MAX_SERVERS, in an array of servers_cap
 * (NULL when empty), each [SCHEME://]HOST:PORT of a known scheme, no
 * two alike.  Quadratic, so checked only when the list changed.
 */
static void
fuzz_check_servers (const struct rp_config *cfg)
{
  if (cfg->nservers > RP_MAX_SERVERS || cfg->nservers > cfg->servers_cap ||
      cfg->servers_cap > RP_MAX_SERVERS)
    fuzz_fail ("%u servers in an array of %u", cfg->nservers,
               cfg->servers_cap);
  if ((cfg->servers_cap > 0) != (cfg->servers != NULL))
    fuzz_fail ("an array of %u servers at %p", cfg->servers_cap,
               (void *) cfg->servers);
  for (unsigned i = 0; i < cfg->nservers; i++) {
    char host[256], port[16];
    const char *hostport;
    uint64_t p;

    if (cfg->servers[i] == NULL)
      fuzz_fail ("servers[%u] is NULL", i);
    if (transport_find (cfg->servers[i], &hostport, NULL) == NULL ||
        rp_split_hostport (hostport, host, sizeof host,
                           port, sizeof port) == -1 ||
        rp_parse_uint (port, 1, 65535, &p) == -1)
      fuzz_fail ("accepted server '%s' is not [SCHEME://]HOST:PORT",
                 cfg->servers[i]);
    for (unsigned j = 0; j < i; j++)
      if (strcmp (cfg->servers[i], cfg->servers[j]) == 0)
        fuzz_fail ("server '%s' accepted twice", cfg->servers[i]);
  }
}

/* What every accepted key promises, whatever came before. */
static void
fuzz_check_config (const struct rp_config *cfg, unsigned nservers_before)
{
  if (cfg->nservers != nservers_before)
    fuzz_check_servers (cfg);
  if (cfg->size_bytes > INT64_MAX)
    fuzz_fail ("size %" PRIu64 " beyond what NBD can take", cfg->size_bytes);
  if (!rp_is_power_of_2 (cfg->extent_size) ||
      cfg->extent_size < RP_MIN_EXTENT_SIZE ||
      cfg->extent_size > RP_MAX_EXTENT_SIZE)
    fuzz_fail ("extent-size %" PRIu32, cfg->extent_size);
  if (cfg->replicas < 1 || cfg->replicas > RP_MAX_REPLICAS)
    fuzz_fail ("replicas %u", cfg->replicas);
  if (cfg->placement_choices < 1 || cfg->placement_choices > RP_MAX_SERVERS)
    fuzz_fail ("placement-choices %u", cfg->placement_choices);
  if (cfg->max_servers > RP_MAX_SERVERS)  /* 0: not given */
    fuzz_fail ("max-servers %u", cfg->max_servers);
  if (cfg->connections < 1 || cfg->connections > 16)
    fuzz_fail ("connections %u", cfg->connections);
  if (cfg->inflight < 1 || cfg->inflight > 1024)
    fuzz_fail ("inflight %u", cfg->inflight);
  if (cfg->timeout_ms < 10 || cfg->timeout_ms > 600000 ||
      cfg->heartbeat_ms < 10 || cfg->heartbeat_ms > 600000)
    fuzz_fail ("timeout-ms %u / heartbeat-ms %u", cfg->timeout_ms,
               cfg->heartbeat_ms);
  if (cfg->rejoin_grace_ms > 86400000 || cfg->outage_wait_ms > 86400000)
    fuzz_fail ("rejoin-grace-ms %u / outage-wait-ms %u", cfg->rejoin_grace_ms,
               cfg->outage_wait_ms);
  if (cfg->rdma_buffer < RP_MAX_PAYLOAD || cfg->rdma_buffer > (1u << 30))
    fuzz_fail ("rdma-buffer %" PRIu64, cfg->rdma_buffer);
  if ((cfg->key_file && cfg->key_file[0] == '\0') ||
      (cfg->stats_file && cfg->stats_file[0] == '\0'))
    fuzz_fail ("an empty path accepted");
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const size_t errlens[] = { 256, 16, 1 };
  struct rp_config cfg, zero;
  size_t pos = 0, nlines = 0;
  char *err;
  int r;

  rp_config_init (&cfg);
  fuzz_check_config (&cfg, 1);
  while (pos < size) {
    const uint8_t *line = data + pos, *nl, *eq;
    size_t len, errlen = errlens[nlines++ % 3];
    char *key, *value;
    unsigned nservers = cfg.nservers;

    nl = memchr (line, '\n', size - pos);
    len = nl ? (size_t) (nl - line) : size - pos;
    pos += len + (nl != NULL);
    eq = memchr (line, '=', len);
    if (eq) {
      key = fuzz_strndup (line, eq - line);
      value = fuzz_strndup (eq + 1, len - (eq - line) - 1);
    }
    else {
      key = fuzz_strndup (line, len);
      value = fuzz_strndup (line, 0);
    }
    err = malloc (errlen);
    if (err == NULL)
      fuzz_fail ("out of memory");
    err[0] = '\0';
    errno = 0;
    r = rp_config_set (&cfg, key, value, err, errlen);
    if (r != 0)
      fuzz_check_error (r, errno, err, errlen, "rp_config_set");
    fuzz_check_config (&cfg, nservers);
    free (err);
    free (key);
    free (value);
  }

  fuzz_check_servers (&cfg);
  err = malloc (256);
  if (err == NULL)
    fuzz_fail ("out of memory");
  errno = 0;
  r = rp_config_check (&cfg, err, 256);
  if (r != 0)
    fuzz_check_error (r, errno, err, 256, "rp_config_check");
  else if (cfg.nservers == 0 || cfg.size_bytes == 0 ||
           cfg.nservers < cfg.replicas ||
           (cfg.max_servers && cfg.nservers > cfg.max_servers) ||
           (cfg.is_encrypted && cfg.size_bytes % 4096) ||
           cfg.size_bytes / cfg.extent_size > (UINT64_C (1) << 32))
    fuzz_fail ("rp_config_check accepted %u servers, size %" PRIu64
               ", replicas %u, extent-size %" PRIu32 ", encrypt %d",
               cfg.nservers, cfg.size_bytes, cfg.replicas, cfg.extent_size,
               cfg.is_encrypted);
  free (err);

  rp_config_free (&cfg);
  memset (&zero, 0, sizeof zero);
  if (memcmp (&cfg, &zero, sizeof cfg) != 0)
    fuzz_fail ("rp_config_free left the config set");
  return 0;
}
