// Drops this process's clean, file-backed, read-only pages (shared-library
// code and read-only data) from its page tables, so resident memory shows the
// working set rather than everything startup touched once.
//
// Why: most of the daemon's resident memory is library pages faulted in by
// one-time initialisation (gRPC's core configuration, OpenSSL's init, which
// Debian's libssl runs from its ELF constructor because libgrpc links it, the
// config parser, CLI11). Only mappings with no anonymous (copied-on-write)
// pages are touched, so no content can change: a dropped page is re-read from
// the page cache (a minor fault) the next time it is used: the same thing that
// happens when the kernel reclaims those pages under memory pressure.
//
// Thread-safe in the sense that other threads may run meanwhile (they fault
// pages back in as they need them); call it from one thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace gdp::daemon {

// How long after the start the daemon releases them: startup (registration,
// the first ListAndWatch lists) is over well before.
inline constexpr std::chrono::seconds kReleasePagesAfter{5};

struct ReleasedPages {
  int mappings = 0;      // mappings advised
  uint64_t rss_kib = 0;  // their resident size before the call
};

// Reads /proc/self/smaps and madvise(MADV_DONTNEED)s every private r-xp or
// r--p mapping of a file that has resident pages and no anonymous pages.
// Best effort: a mapping the kernel refuses is skipped.
ReleasedPages ReleaseCleanFilePages();

}  // namespace gdp::daemon
