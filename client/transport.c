/* The transports librampool knows, by address scheme (transport.h).
 * RDMA is there only when configure found rdma-core (HAVE_RDMA); a
 * build without it still recognises rdma:// so that the error says
 * how to get it rather than that the scheme is unknown.
 */
#include <config.h>

#include <string.h>

#include "transport.h"

static const struct transport_ops *const transports[] = {
  &transport_tcp,
#ifdef HAVE_RDMA
  &transport_rdma,
#endif
};

const struct transport_ops *
transport_find (const char *addr, const char **hostport, const char **why)
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
  if (why == NULL)
    return NULL;
#ifdef HAVE_RDMA
  *why = "unknown transport (tcp://HOST:PORT, rdma://HOST:PORT, or"
    " HOST:PORT for tcp)";
#else
  if (sep - addr == 4 && strncmp (addr, "rdma", 4) == 0)
    *why = "this librampool was built without RDMA: configure --with-rdma"
      " (needs libibverbs-dev and librdmacm-dev)";
  else
    *why = "unknown transport (tcp://HOST:PORT, or HOST:PORT for tcp)";
#endif
  return NULL;
}
