/* memserver: donate RAM to a rampool pool.
 *
 * This file only turns the config file and the command line into
 * struct settings (settings.h) and starts the server.  Every config error
 * names the key (and for a config file, the line) and why.  Options on
 * the command line override the config file.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rampool/protocol.h"
#include "auth.h"
#include "server.h"
#include "util.h"

static void
usage (FILE *fp)
{
  fprintf (fp,
"Usage: memserver --listen HOST:PORT --size SIZE [OPTIONS]\n"
"       memserver --listen-rdma ADDR:PORT --size SIZE [OPTIONS]\n"
"Donate RAM to a rampool pool.\n"
"\n"
"  -l, --listen HOST:PORT   TCP address to listen on (IPv6 as [ADDR]:PORT;\n"
"                           port 0 picks a free port, see --port-file)\n"
"      --listen-rdma ADDR:PORT  RDMA address to listen on (librdmacm): an\n"
"                           address of an RDMA device's network interface\n"
"  -s, --size SIZE|auto     most RAM to donate, e.g. 2G, 512M (required);\n"
"                           auto: follow the host's free memory\n"
"      --max-size SIZE      with --size auto: the most ever (the host's RAM)\n"
"      --headroom SIZE      with --size auto: memory the host keeps free;\n"
"                           shrink below it, grow above twice it (RAM/8)\n"
"      --reclaim-deadline-ms MS  a client's time to move extents asked\n"
"                           back (10000)\n"
"      --reclaim-sole       reclaim may drop a client's only copy\n"
"      --drain-timeout-ms MS  deadline of a drain (SIGUSR2) (600000)\n"
"      --peer-copies N      COPYs to other memservers at once, for clients'\n"
"                           recovery (4; 0: refuse COPY)\n"
"  -k, --key-file FILE      cluster key (from rampool keygen): clients must\n"
"                           prove they hold it (mutual challenge-response)\n"
"      --no-mlock           do not lock donated memory in RAM (for\n"
"                           unprivileged use; donated pages may be swapped)\n"
"      --lease-ms MS        keep a vanished client's extents MS ms (30000)\n"
"      --max-clients N      distinct client sessions (256)\n"
"      --max-connections N  open connections (1024)\n"
"      --max-client-connections N  connections per client session (64)\n"
"      --max-client-size SIZE      most RAM one client may hold (all)\n"
"      --max-reply-buffer SIZE     replies built but not yet sent, all\n"
"                           connections together (64M, at least 8M)\n"
"      --port-file FILE     write the listening port to FILE when ready\n"
"      --rdma-port-file FILE  the same for the RDMA listening port\n"
"      --pidfile FILE       write the pid to FILE when ready\n"
"      --metrics-listen ADDR:PORT  serve Prometheus metrics at\n"
"                           http://ADDR:PORT/metrics (no authentication)\n"
"      --metrics-port-file FILE  write the metrics port to FILE\n"
"  -c, --config FILE        read KEY = VALUE lines (same names as the long\n"
"                           options, without dashes) before the command line\n"
"  -v, --verbose            log every connection (debug level)\n"
"  -q, --quiet              log errors and warnings only\n"
"  -h, --help               this text\n"
"  -V, --version            print the version\n"
"See memserver(8).\n");
}

enum {
  OPT_NO_MLOCK = 256, OPT_LEASE_MS, OPT_MAX_CLIENTS, OPT_MAX_CONNS,
  OPT_PORT_FILE, OPT_PIDFILE, OPT_MAX_CLIENT_CONNS, OPT_MAX_CLIENT_SIZE,
  OPT_MAX_REPLY_BUFFER, OPT_LISTEN_RDMA, OPT_RDMA_PORT_FILE, OPT_MAX_SIZE,
  OPT_HEADROOM, OPT_RECLAIM_DEADLINE_MS, OPT_RECLAIM_SOLE,
  OPT_DRAIN_TIMEOUT_MS, OPT_METRICS_LISTEN, OPT_METRICS_PORT_FILE,
  OPT_PEER_COPIES,
};

static const struct option long_options[] = {
  { "listen", required_argument, NULL, 'l' },
  { "listen-rdma", required_argument, NULL, OPT_LISTEN_RDMA },
  { "size", required_argument, NULL, 's' },
  { "key-file", required_argument, NULL, 'k' },
  { "no-mlock", no_argument, NULL, OPT_NO_MLOCK },
  { "lease-ms", required_argument, NULL, OPT_LEASE_MS },
  { "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
  { "max-connections", required_argument, NULL, OPT_MAX_CONNS },
  { "max-client-connections", required_argument, NULL, OPT_MAX_CLIENT_CONNS },
  { "max-client-size", required_argument, NULL, OPT_MAX_CLIENT_SIZE },
  { "max-reply-buffer", required_argument, NULL, OPT_MAX_REPLY_BUFFER },
  { "port-file", required_argument, NULL, OPT_PORT_FILE },
  { "rdma-port-file", required_argument, NULL, OPT_RDMA_PORT_FILE },
  { "max-size", required_argument, NULL, OPT_MAX_SIZE },
  { "headroom", required_argument, NULL, OPT_HEADROOM },
  { "reclaim-deadline-ms", required_argument, NULL, OPT_RECLAIM_DEADLINE_MS },
  { "reclaim-sole", no_argument, NULL, OPT_RECLAIM_SOLE },
  { "drain-timeout-ms", required_argument, NULL, OPT_DRAIN_TIMEOUT_MS },
  { "peer-copies", required_argument, NULL, OPT_PEER_COPIES },
  { "pidfile", required_argument, NULL, OPT_PIDFILE },
  { "metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN },
  { "metrics-port-file", required_argument, NULL, OPT_METRICS_PORT_FILE },
  { "config", required_argument, NULL, 'c' },
  { "verbose", no_argument, NULL, 'v' },
  { "quiet", no_argument, NULL, 'q' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

/* Apply one setting; `where` is "--key" or "FILE:LINE: key" for the
 * error message.  Returns 0 or -1 after printing the error.
 */
static int
apply (struct settings *st, int opt, const char *value, const char *where)
{
  uint64_t v;

  switch (opt) {
  case 'l':
    free (st->listen);
    st->listen = strdup (value);
    return 0;
  case OPT_LISTEN_RDMA:
#ifndef HAVE_RDMA
    fprintf (stderr, "memserver: %s: this memserver was built without RDMA"
             " (rdma-core was not found: configure --with-rdma)\n", where);
    return -1;
#endif
    free (st->listen_rdma);
    st->listen_rdma = strdup (value);
    return 0;
  case 's':
    if (strcmp (value, "auto") == 0) {
      st->is_size_auto = true;
      return 0;
    }
    if (rp_parse_size (value, &v) == -1 || v < 1024 * 1024) {
      fprintf (stderr, "memserver: %s: '%s' is not a size of at least 1M"
               " (e.g. 512M, 2G) or auto\n", where, value);
      return -1;
    }
    st->is_size_auto = false;
    st->size_bytes = v;
    return 0;
  case OPT_MAX_SIZE:
  case OPT_HEADROOM:
    if (rp_parse_size (value, &v) == -1 || v < 1024 * 1024) {
      fprintf (stderr, "memserver: %s: '%s' is not a size of at least 1M\n",
               where, value);
      return -1;
    }
    if (opt == OPT_MAX_SIZE)
      st->max_size_bytes = v;
    else
      st->headroom_bytes = v;
    return 0;
  case OPT_RECLAIM_DEADLINE_MS:
  case OPT_DRAIN_TIMEOUT_MS:
    if (rp_parse_uint (value, 100, 24 * 3600 * 1000, &v) == -1) {
      fprintf (stderr, "memserver: %s: '%s' is not a number of"
               " milliseconds from 100 to 86400000\n", where, value);
      return -1;
    }
    if (opt == OPT_RECLAIM_DEADLINE_MS)
      st->reclaim_deadline_ms = v;
    else
      st->drain_timeout_ms = v;
    return 0;
  case OPT_RECLAIM_SOLE:
    st->reclaim_sole = true;
    return 0;
  case OPT_PEER_COPIES:
    if (rp_parse_uint (value, 0, 64, &v) == -1) {
      fprintf (stderr, "memserver: %s: '%s' is not a number of copies from"
               " 0 (COPY refused) to 64\n", where, value);
      return -1;
    }
    st->peer_copies = v;
    return 0;
  case 'k':
    free (st->key_file);
    st->key_file = strdup (value);
    return 0;
  case OPT_NO_MLOCK:
    st->use_mlock = false;
    return 0;
  case OPT_LEASE_MS:
    if (rp_parse_uint (value, 0, 24 * 3600 * 1000, &v) == -1) {
      fprintf (stderr, "memserver: %s: '%s' is not a number of"
               " milliseconds from 0 to 86400000\n", where, value);
      return -1;
    }
    st->lease_ms = v;
    return 0;
  case OPT_MAX_CLIENT_SIZE:
    if (rp_parse_size (value, &v) == -1) {
      fprintf (stderr, "memserver: %s: '%s' is not a size (e.g. 4G)\n",
               where, value);
      return -1;
    }
    st->max_client_bytes = v;
    return 0;
  case OPT_MAX_REPLY_BUFFER:
    /* At least two maximal READ replies (4 MiB each), so one always
     * fits next to other connections' small ones.
     */
    if (rp_parse_size (value, &v) == -1 || v < 8 * 1024 * 1024 ||
        v > SIZE_MAX) {
      fprintf (stderr, "memserver: %s: '%s' is not a size of at least 8M"
               " (e.g. 64M)\n", where, value);
      return -1;
    }
    st->max_reply_bytes = v;
    return 0;
  case OPT_MAX_CLIENTS:
  case OPT_MAX_CONNS:
  case OPT_MAX_CLIENT_CONNS:
    if (rp_parse_uint (value, 1, 65536, &v) == -1) {
      fprintf (stderr, "memserver: %s: '%s' is not a number from 1 to"
               " 65536\n", where, value);
      return -1;
    }
    if (opt == OPT_MAX_CLIENTS)
      st->max_owners = v;
    else if (opt == OPT_MAX_CONNS)
      st->max_conns = v;
    else
      st->max_client_conns = v;
    return 0;
  case OPT_PORT_FILE:
    free (st->port_file);
    st->port_file = strdup (value);
    return 0;
  case OPT_RDMA_PORT_FILE:
    free (st->rdma_port_file);
    st->rdma_port_file = strdup (value);
    return 0;
  case OPT_PIDFILE:
    free (st->pidfile);
    st->pidfile = strdup (value);
    return 0;
  case OPT_METRICS_LISTEN:
    free (st->metrics_listen);
    st->metrics_listen = strdup (value);
    return 0;
  case OPT_METRICS_PORT_FILE:
    free (st->metrics_port_file);
    st->metrics_port_file = strdup (value);
    return 0;
  case 'v':
    st->level = LOG_LEVEL_DEBUG;
    return 0;
  case 'q':
    st->level = LOG_LEVEL_WARN;
    return 0;
  }
  fprintf (stderr, "memserver: %s: not a setting\n", where);
  return -1;
}

static int
load_config (struct settings *st, const char *path)
{
  FILE *fp = fopen (path, "r");
  char line[1024];
  int lineno = 0, ret = 0;

  if (fp == NULL) {
    fprintf (stderr, "memserver: --config: %s: %s\n", path, strerror (errno));
    return -1;
  }
  while (fgets (line, sizeof line, fp)) {
    char *key, *value, *p, where[1200];
    const struct option *o;

    lineno++;
    line[strcspn (line, "\r\n#")] = '\0';
    key = line + strspn (line, " \t");
    if (*key == '\0')
      continue;
    p = key + strcspn (key, " \t=");
    value = p + strspn (p, " \t=");
    *p = '\0';
    for (p = value + strlen (value);
         p > value && (p[-1] == ' ' || p[-1] == '\t'); p--)
      p[-1] = '\0';
    snprintf (where, sizeof where, "%s:%d: %s", path, lineno, key);
    for (o = long_options; o->name; o++)
      if (strcmp (o->name, key) == 0)
        break;
    if (o->name == NULL || o->val == 'c' || o->val == 'h' || o->val == 'V') {
      fprintf (stderr, "memserver: %s: unknown key\n", where);
      ret = -1;
      continue;
    }
    if (o->has_arg == required_argument && *value == '\0') {
      fprintf (stderr, "memserver: %s: needs a value\n", where);
      ret = -1;
      continue;
    }
    if (o->has_arg == no_argument && *value != '\0' &&
        strcmp (value, "true") != 0 && strcmp (value, "yes") != 0 &&
        strcmp (value, "1") != 0) {
      fprintf (stderr, "memserver: %s: a flag: leave the value empty or"
               " write true\n", where);
      ret = -1;
      continue;
    }
    if (apply (st, o->val, value, where) == -1)
      ret = -1;
  }
  fclose (fp);
  return ret;
}

/* Locking is per extent (region.h); check up front that the limit lets
 * us lock the whole donation, so the operator learns now, not at the
 * first ALLOC under load.  Root is normally exempt (CAP_IPC_LOCK), but
 * raising the soft limit is harmless and covers the rest.
 */
static int
check_memlock (const struct settings *st)
{
  struct rlimit rl;

  if (!st->use_mlock || getrlimit (RLIMIT_MEMLOCK, &rl) == -1 ||
      rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= st->size_bytes)
    return 0;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= st->size_bytes) {
    rl.rlim_cur = st->size_bytes;
    if (setrlimit (RLIMIT_MEMLOCK, &rl) == 0)
      return 0;
  }
  if (geteuid () == 0)
    return 0;  /* CAP_IPC_LOCK ignores the limit */
  fprintf (stderr, "memserver: --size %" PRIu64 " bytes cannot be locked:"
           " RLIMIT_MEMLOCK is %llu bytes.  Raise it (ulimit -l unlimited,"
           " or LimitMEMLOCK=infinity in the systemd unit) or run with"
           " --no-mlock\n", st->size_bytes, (unsigned long long) rl.rlim_cur);
  return -1;
}

int
main (int argc, char **argv)
{
  struct settings st = {
    .use_mlock = true,
    .lease_ms = 30000,
    .max_owners = 256,
    .max_conns = 1024,
    .max_client_conns = 64,
    /* Replies waiting for slow readers: 4 connections at the 16 MiB
     * per-connection mark, about 50 ms of a 10 GbE link; a client that
     * reads keeps this moving, one that does not holds at most this.
     */
    .max_reply_bytes = 64 * 1024 * 1024,
    .reclaim_deadline_ms = 10000,
    .drain_timeout_ms = 600000,
    /* 4 COPYs at once, 4 MiB of buffers each: enough to keep a 10 GbE
     * link busy with 1 MiB extents, while a pool-wide recovery (every
     * survivor a source) spreads over many donors anyway.
     */
    .peer_copies = 4,
    .level = LOG_LEVEL_INFO,
  };
  int c, status;

  signal (SIGPIPE, SIG_IGN);
  /* The config file first, so the command line overrides it: a first
   * getopt pass loads every --config (in any spelling getopt accepts),
   * the second applies the rest.
   */
  opterr = 0;
  while ((c = getopt_long (argc, argv, "l:s:c:k:vqhV", long_options,
                           NULL)) != -1)
    if (c == 'c' && load_config (&st, optarg) == -1)
      return 2;
  opterr = 1;
  optind = 0;  /* glibc: restart scanning from argv[1] */
  while ((c = getopt_long (argc, argv, "l:s:c:k:vqhV", long_options,
                           NULL)) != -1) {
    char where[64];
    switch (c) {
    case 'h':
      usage (stdout);
      return 0;
    case 'V':
      printf ("memserver %s (rampool protocol %d)\n", PACKAGE_VERSION,
              RP_PROTOCOL_VERSION);
      return 0;
    case 'c':
      continue;
    case '?':
      usage (stderr);
      return 2;
    }
    for (const struct option *o = long_options; o->name; o++)
      if (o->val == c)
        snprintf (where, sizeof where, "--%s", o->name);
    if (apply (&st, c, optarg, where) == -1)
      return 2;
  }
  if (optind < argc) {
    fprintf (stderr, "memserver: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (st.listen == NULL && st.listen_rdma == NULL) {
    fprintf (stderr, "memserver: --listen: required (e.g. --listen"
             " 127.0.0.1:7070), or --listen-rdma, or both\n");
    return 2;
  }
  if (st.is_size_auto) {
    /* The region is a reservation of address space only: the host's RAM
     * as the ceiling costs nothing until used.
     */
    uint64_t ram = (uint64_t) sysconf (_SC_PHYS_PAGES) * sysconf (_SC_PAGESIZE);
    st.size_bytes = st.max_size_bytes ? st.max_size_bytes : ram;
    if (st.headroom_bytes == 0)
      st.headroom_bytes = ram / 8;
  }
  else if (st.max_size_bytes || st.headroom_bytes) {
    fprintf (stderr, "memserver: --max-size and --headroom go with --size"
             " auto\n");
    return 2;
  }
  if (st.size_bytes == 0) {
    fprintf (stderr, "memserver: --size: required: how much RAM to donate"
             " (e.g. --size 2G), or auto\n");
    return 2;
  }
  if (check_memlock (&st) == -1)
    return 2;
  log_max_level = st.level;
  if (rp_auth_init () == -1) {
    fprintf (stderr, "memserver: libsodium failed to initialise\n");
    return 1;
  }
  if (st.key_file) {
    char err[512], warn[512];
    st.key = rp_key_alloc ();
    if (st.key == NULL ||
        rp_key_load (st.key_file, st.key, err, sizeof err,
                     warn, sizeof warn) == -1) {
      fprintf (stderr, "memserver: --key-file: %s\n",
               st.key ? err : "cannot lock memory for the key");
      return 2;
    }
    if (warn[0])
      log_msg (LOG_LEVEL_WARN, "auth", "%s", warn);
  }
  else
    log_msg (LOG_LEVEL_WARN, "auth",
             "no --key-file: any client that can reach %s"
             " can use this server; give every host of the pool a key"
             " (rampool keygen) outside a trusted test network",
             st.listen ? st.listen : st.listen_rdma);
  status = server_run (&st);
  rp_key_free (st.key);
  free (st.key_file);
  free (st.listen);
  free (st.listen_rdma);
  free (st.port_file);
  free (st.rdma_port_file);
  free (st.pidfile);
  free (st.metrics_listen);
  free (st.metrics_port_file);
  return status;
}
