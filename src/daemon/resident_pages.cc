#include "src/daemon/resident_pages.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace gdp::daemon {
namespace {

struct Mapping {
  uintptr_t start = 0, end = 0;
  bool candidate = false;  // private, read-only, file-backed
  uint64_t rss_kib = 0;
  uint64_t anon_kib = 0;
};

void Release(const Mapping& m, ReleasedPages* out) {
  if (!m.candidate || m.rss_kib == 0 || m.anon_kib != 0) return;
  // The address is one the kernel listed in smaps: an integer by nature.
  void* addr = reinterpret_cast<void*>(m.start);  // NOLINT(performance-no-int-to-ptr)
  if (madvise(addr, m.end - m.start, MADV_DONTNEED) == 0) {
    ++out->mappings;
    out->rss_kib += m.rss_kib;
  }
}

}  // namespace

ReleasedPages ReleaseCleanFilePages() {
  ReleasedPages out;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  Mapping cur;
  while (std::getline(smaps, line)) {
    unsigned long start = 0, end = 0, inode = 0;
    char perms[8] = {};
    // A mapping header: "start-end perms offset dev inode [path]".
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %*x %*s %lu", &start, &end, perms, &inode) == 4) {
      Release(cur, &out);
      cur = Mapping{start, end, false, 0, 0};
      const char* path = std::strchr(line.c_str(), '/');
      cur.candidate = inode != 0 && path != nullptr &&
                      (std::strcmp(perms, "r-xp") == 0 || std::strcmp(perms, "r--p") == 0);
      continue;
    }
    unsigned long kib = 0;
    if (std::sscanf(line.c_str(), "Rss: %lu kB", &kib) == 1) cur.rss_kib = kib;
    if (std::sscanf(line.c_str(), "Anonymous: %lu kB", &kib) == 1) cur.anon_kib = kib;
  }
  Release(cur, &out);
  return out;
}

}  // namespace gdp::daemon
