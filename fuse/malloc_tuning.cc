// See malloc_tuning.h.
#include "fuse/malloc_tuning.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace unionfs::fuse {

void reexec_with_malloc_tunables(char** argv) {
  const char* mine = std::getenv("GLIBC_TUNABLES");
  if (mine && std::strstr(mine, "glibc.malloc.hugetlb=")) return;
  std::string value = kMallocTunables;
  if (mine && *mine) value += std::string(":") + mine;
  if (::setenv("GLIBC_TUNABLES", value.c_str(), 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  // No /proc or no exec: go on with the default heap (slower first use of wide directories).
  if (mine) {
    ::setenv("GLIBC_TUNABLES", mine, 1);
  } else {
    ::unsetenv("GLIBC_TUNABLES");
  }
}

}  // namespace unionfs::fuse
