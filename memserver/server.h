/* The memserver's network side: listener and connections on one libuv
 * loop thread (server.c).  What a connection's bytes mean is
 * session.h's; the settings are settings.h's.
 */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "settings.h"

/* Run the server until SIGTERM/SIGINT.  Returns the process exit
 * status (0 on clean shutdown).
 */
int server_run (const struct settings *st);

#endif /* MS_SERVER_H */
