/* The memserver's counters, defined once: the struct, the per-op
 * arrays, the "stats" log lines (at shutdown and on SIGUSR1) and the
 * Prometheus metrics (metrics.c) are made from these lists.  Single-
 * threaded: bumped from the event loop only (metrics.c copies them
 * there too).
 *
 * X (name, help): counters only grow.
 */
#ifndef MS_STATS_H
#define MS_STATS_H

#include <stdint.h>

#include "rampool/protocol.h"

#define MS_COUNTERS(X) \
  X (connections,         "connections accepted") \
  X (connections_refused, "connections refused at accept (max-connections," \
                          " no memory)") \
  X (handshake_timeouts,  "connections closed for no HELLO/AUTH in time") \
  X (protocol_errors,     "connections closed for a malformed or" \
                          " out-of-order frame") \
  X (auth_refused,        "AUTH proofs refused (not the cluster key)") \
  X (fenced,              "older connections closed by a client's" \
                          " reconnect") \
  X (leases_expired,      "client sessions freed after their lease") \
  X (read_bytes,          "bytes sent in READ replies") \
  X (write_bytes,         "bytes received in WRITE requests") \
  X (writes_placed,       "WRITEs whose payload was received straight" \
                          " into the region") \
  X (writes_placed_lost,  "placed WRITEs answered ENOENT: their extent" \
                          " went while the payload arrived") \
  X (reclaim_asked,       "extents asked back in RECLAIM notices") \
  X (reclaim_dropped,     "extents dropped: not moved by their reclaim" \
                          " deadline") \
  X (copies,              "COPYs that wrote every byte to their target") \
  X (copies_failed,       "COPYs that ended without writing every byte") \
  X (copy_bytes,          "bytes written to other memservers by COPY")

struct ms_stats {
#define MS_STATS_FIELD(name, help) uint64_t name;
  MS_COUNTERS (MS_STATS_FIELD)
#undef MS_STATS_FIELD
  uint64_t requests[RP_OP_MAX + 1];  /* executed, by op */
  uint64_t errors[RP_OP_MAX + 1];    /* answered with an error, by op */
};

/* Log every counter (level info, subsystem "stats"). */
void stats_log (const struct ms_stats *st);

#endif /* MS_STATS_H */
