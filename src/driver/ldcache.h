// Reading glibc's ld.so.cache: the soname -> path table `ldconfig` writes,
// which is how the driver's libraries are found under a driver root (its
// etc/ld.so.cache), as NVIDIA's container toolkit finds them, rather than by
// a fixed list of names.
//
// Both layouts glibc has written are read: the current one (magic
// "glibc-ld.so.cache1.1", glibc 2.32 and later) and the older one that puts
// an "ld.so-1.7.0" table first and the current one after it. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::driver {

struct LdCacheEntry {
  std::string soname;  // e.g. "libcuda.so.1"
  std::string path;    // e.g. "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
  int32_t flags = 0;   // glibc's FLAG_*: the library's type and architecture
  friend bool operator==(const LdCacheEntry&, const LdCacheEntry&) = default;
};

// glibc's flags of a library of this machine's ABI (x86-64: ELF libc6 with
// the x86-64 bit; aarch64: with the AArch64 bit).
int32_t NativeLdCacheFlags();

// Every entry of `bytes` (the content of an ld.so.cache), in file order.
// InvalidArgument, naming the offset and what is wrong, when the bytes are not
// an ld.so.cache or are cut short.
absl::StatusOr<std::vector<LdCacheEntry>> ParseLdCache(std::string_view bytes);

// The bytes of an ld.so.cache in the current layout holding `entries`
// (ordered as glibc orders them, so the loader's binary search works).
std::string WriteLdCache(std::vector<LdCacheEntry> entries);

}  // namespace gdp::driver
