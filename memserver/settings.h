/* The memserver's settings: what main.c reads from the config file
 * and then the command line, and every other part of the daemon reads
 * (never writes) after start.  Every field says its unit and why its
 * default was chosen; memserver(8) documents the options.
 */
#ifndef MS_SETTINGS_H
#define MS_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

/* Settings, filled from the config file and then the command line. */
struct settings {
  char *listen;            /* TCP "HOST:PORT"; port 0 = pick one (tests);
                              NULL = no TCP listener */
  char *listen_rdma;       /* RDMA (librdmacm) "ADDR:PORT": an address
                              of an RDMA device's netdev; NULL = none.
                              At least one of the two is required */
  uint64_t size_bytes;     /* donation cap; no default: the operator
                              must say how much RAM to give away.  With
                              is_size_auto, the ceiling (--max-size, or
                              the host's RAM) */
  bool is_size_auto;       /* --size auto: follow the host's free memory
                              (reclaim.c) */
  uint64_t max_size_bytes; /* --max-size, or 0 */
  uint64_t headroom_bytes; /* --headroom: with --size auto, what the host
                              keeps free; shrink below it, grow above
                              twice it (default: an eighth of the RAM,
                              Infiniswap's 8 and 16 GB on a 64 GB host) */
  uint32_t reclaim_deadline_ms; /* an owner's time to move extents asked
                              back (default 10000: migrating one 1 MiB
                              extent takes milliseconds; this covers a
                              batch at a modest recovery-rate) */
  bool reclaim_sole;       /* --reclaim-sole: reclaim may drop a client's
                              only copy (replicas=1): the operator's
                              explicit choice; off by default */
  uint32_t drain_timeout_ms; /* a drain's deadline when none is given
                              (SIGUSR2, DRAIN 0): 600000, time to move
                              a donor's worth at a few hundred MiB/s */
  uint32_t peer_copies;    /* COPYs to other memservers running at once
                              (peer.c); 0 refuses COPY and does not
                              announce it */
  bool use_mlock;          /* lock extents in RAM (default true: donated
                              memory must never itself be swapped) */
  uint32_t lease_ms;       /* keep a vanished client's extents this long;
                              30 s covers a client restart of its
                              connections without holding memory of a
                              dead client for long */
  uint32_t max_owners;     /* distinct client sessions (default 256) */
  uint32_t max_conns;      /* open connections (default 1024) */
  uint32_t max_client_conns; /* connections per client session (default
                              64: nbdkit opens connections= per server,
                              2 by default; 64 leaves room and still
                              stops one client taking every slot) */
  uint64_t max_client_bytes; /* bytes one client may hold (default 0 =
                              the whole donation: one tenant per donor
                              is the common case) */
  uint64_t max_reply_bytes; /* --max-reply-buffer: reply bytes built and
                              not yet sent, all connections together
                              (default 64 MiB, at least 8 MiB: one
                              maximal reply must always fit) */
  char *port_file;         /* write the bound TCP port here once listening */
  char *rdma_port_file;    /* the same for the RDMA port (port 0 picks
                              one there too) */
  char *pidfile;           /* write our pid here once listening */
  char *metrics_listen;    /* --metrics-listen "ADDR:PORT": serve GET
                              /metrics (Prometheus) there; NULL = none */
  char *metrics_port_file; /* write the metrics port here (port 0 picks
                              one) */
  enum log_level level;    /* --verbose / --quiet */
  char *key_file;          /* cluster key; NULL = no authentication */
  uint8_t *key;            /* loaded from key_file (locked memory) */
};

#endif /* MS_SETTINGS_H */
