/* The transports librampool knows, by address scheme (transport.h). */
#include <config.h>

#include <string.h>

#include "transport.h"

static const struct transport_ops *const transports[] = {
  &transport_tcp,
};

const struct transport_ops *
transport_find (const char *addr, const char **hostport)
{
  const char *sep = strstr (addr, "://");

  if (sep == NULL) {
    *hostport = addr;
    return &transport_tcp;
  }
  for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++)
    if (strlen (transports[i]->scheme) == (size_t) (sep - addr) &&
        strncmp (addr, transports[i]->scheme, sep - addr) == 0) {
      *hostport = sep + 3;
      return transports[i];
    }
  return NULL;
}
