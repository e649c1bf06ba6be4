/* rampool status --watch / --json (watch.c). */
#ifndef RP_WATCH_H
#define RP_WATCH_H

#include <stdint.h>

/* argv as cmd_status got it (argv[0] "status").  Exit status: 0 when
 * every server answered at the last refresh, 1 if not, 2 for usage.
 */
int watch_main (int argc, char **argv);

/* A server's state (enum rp_state) as status shows it: "up",
 * "shrinking", "draining", "drained".
 */
const char *watch_state_name (uint32_t state);

#endif /* RP_WATCH_H */
